"""Views of a report. The JSON report is the source of truth; each view is made from it alone.

One interface, chosen by an enum that a test walks exhaustively. Each view neutralises every
string of the report in one place (runner.views.neutral) before it reads a field.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import StrEnum

from runner.report import Report


class View(StrEnum):
    JSON = "json"
    TEXT = "text"
    HTML = "html"
    SARIF = "sarif"


def render(report: Report, view: View, *, width: int = 100) -> str:
    return _RENDERERS[view](report, width)


def _json(report: Report, width: int) -> str:
    """The report as it is (the source of truth), every non-ASCII character escaped, so even
    printed to a terminal no C1 control or bidi override in it acts."""
    return json.dumps(json.loads(report.model_dump_json()), indent=2, ensure_ascii=True) + "\n"


def _text(report: Report, width: int) -> str:
    from runner.views.terminal import render_text

    return render_text(report, width)


def _html(report: Report, width: int) -> str:
    from runner.views.html import render_html

    return render_html(report)


def _sarif(report: Report, width: int) -> str:
    from runner.views.sarif import render_sarif

    return render_sarif(report)


_RENDERERS: dict[View, Callable[[Report, int], str]] = {
    View.JSON: _json,
    View.TEXT: _text,
    View.HTML: _html,
    View.SARIF: _sarif,
}
