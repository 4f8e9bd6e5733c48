"""Views of a JSON report written earlier: report show, html, sarif."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from runner.cli.output import emit, out
from runner.errors import UsageError

if TYPE_CHECKING:
    from runner.report import Report

ReportIn = Annotated[Path, typer.Argument(help="a JSON report", show_default=False)]
ViewOut = Annotated[
    Path | None, typer.Option("--output", "-o", help="write here instead of stdout")
]


def _read_report(path: Path) -> Report:
    from pydantic import ValidationError

    from runner.report import Report

    try:
        return Report.model_validate_json(path.read_bytes())
    except FileNotFoundError as e:
        raise UsageError(f"{path}: no such report", "pass a report written by --report") from e
    except ValidationError as e:
        raise UsageError(
            f"{path} is not an Airlock report ({e.error_count()} problems)",
            "pass a JSON report written by 'airlock scan|run --report'",
        ) from e


def report_show(path: ReportIn) -> None:
    """Print the summary of a report."""
    from runner.views.terminal import print_report

    print_report(_read_report(path), out)


def report_html(path: ReportIn, output: ViewOut = None) -> None:
    """Render a report as a self-contained HTML page."""
    from runner.views import View, render

    emit(render(_read_report(path), View.HTML), output)


def report_sarif(path: ReportIn, output: ViewOut = None) -> None:
    """Render a report as SARIF 2.1.0 for code-scanning tools."""
    from runner.views import View, render

    emit(render(_read_report(path), View.SARIF), output)
