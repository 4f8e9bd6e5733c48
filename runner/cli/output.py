"""Where the commands' results go: stdout for results, stderr for progress and notes; files
written where asked; a report shown, and the exit code it earns."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from runner.errors import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, AirlockError, UsageError
from runner.rules.catalog import Severity, Verdict

if TYPE_CHECKING:
    from runner.report import Report

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class ErrorAfterReport(Exception):
    """Raised by a command that has shown its report and still has an error to tell: the
    boundary (runner.cli.app.main) prints `error` as its one error line and exits with
    `exit_code`. It never leaves the command line."""

    def __init__(self, error: AirlockError, exit_code: int) -> None:
        super().__init__(error.diagnostics())
        self.error = error
        self.exit_code = exit_code


def note(text: str) -> None:
    """A line for the person at the terminal (progress, a remark), on stderr."""
    err.print(text, markup=False, highlight=False)


def write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror}", "choose a writable path") from e


def emit(text: str, output: Path | None) -> None:
    """Text to stdout, or to a file when one was named."""
    if output is None:
        sys.stdout.write(text)
    else:
        write(output, text)
        note(f"wrote {output}")


def save_report(report: Report, path: Path) -> None:
    from runner.views import View, render

    write(path, render(report, View.JSON))


def write_bom(report: Report, path: Path, properties: dict[str, str] | None = None) -> None:
    from runner.integrity.bom import checked_bom

    write(path, checked_bom(report, properties))


def show(
    report: Report, as_json: bool, report_path: Path | None = None, bom: Path | None = None
) -> None:
    """Write the JSON report and the BOM where asked, then print the report (as JSON with
    --json, else the terminal summary)."""
    from runner.views import View, render
    from runner.views.terminal import print_report

    if report_path is not None:
        write(report_path, render(report, View.JSON))
    if bom is not None:
        write_bom(report, bom)
    if as_json:
        sys.stdout.write(render(report, View.JSON))
    else:
        print_report(report, out)


def exit_code(report: Report, fail_on: Severity) -> int:
    """1 for findings at or above fail_on, else 3 when the model could not be evaluated."""
    if any(f.severity.rank >= fail_on.rank for f in report.findings):
        return EXIT_FINDINGS
    if report.verdict is Verdict.ERROR:
        return EXIT_ERROR
    return EXIT_OK
