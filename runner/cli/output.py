"""Where the commands' results go: stdout for results, stderr for progress and notes; files
written where asked; a report shown, and the exit code it earns.

Both consoles show every string they print as plain, neutralised text (SafeConsole): no markup,
no highlighting, no control character or bidi override, whatever a command passes them. A
command that puts text from a model into a line neutralises that text itself too (`shown`), so
a newline in it cannot start a line of its own; tables are made of neutralised Text.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from rich.console import Console
from rich.text import Text

from runner.errors import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    EXIT_OK,
    AirlockError,
    UsageError,
    visible_text,
)
from runner.rules.catalog import Severity, Verdict

if TYPE_CHECKING:
    from runner.report import Report


def shown(text: object, limit: int = 2000) -> str:
    """Text from a model (a name, a path, an error) as it may be put in a line: every character
    that is not printable, newlines included, written as an escape."""
    return visible_text(str(text), limit)


def json_text(model: BaseModel) -> str:
    """A model as indented JSON, every non-ASCII character escaped (safe on a terminal)."""
    return json.dumps(json.loads(model.model_dump_json()), indent=2, ensure_ascii=True) + "\n"


def json_line(model: BaseModel) -> str:
    """A model as one line of JSON, every non-ASCII character escaped (a results.jsonl line)."""
    return (
        json.dumps(json.loads(model.model_dump_json()), ensure_ascii=True, separators=(",", ":"))
        + "\n"
    )


class SafeConsole(Console):
    """A console that prints every string it is given as plain text, line by line neutralised:
    markup and highlighting never apply to a string, and no control character reaches the
    terminal. Rich's own renderables (tables, Text) are printed as they are."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        safe = [
            Text("\n".join(visible_text(line, 100_000) for line in o.split("\n")))
            if isinstance(o, str)
            else o
            for o in objects
        ]
        kwargs["markup"], kwargs["highlight"] = False, False
        super().print(*safe, **kwargs)


out = SafeConsole(soft_wrap=True)
err = SafeConsole(stderr=True, soft_wrap=True)


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


def save_report_or_error(report: Report, path: Path | None) -> UsageError | None:
    """Write the JSON report where asked; the error, when it could not be written (raised by
    the caller once it has shown the report)."""
    if path is None:
        return None
    try:
        save_report(report, path)
    except UsageError as e:
        return e
    return None


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
