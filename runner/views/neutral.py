"""Neutralisation: the one place every view makes a report's text safe to show.

Any string in a report may come from the model or its files (file names, tensor names,
evidence, paths, notes, error messages, the worker's log tail). Each view (terminal, HTML,
SARIF) passes the report through `neutralised` before it reads a field: every string in it,
at any depth, dictionary keys included, has each character that is not printable written as
a visible escape (runner.errors.visible_text): C0 and C1 controls (ESC, so no ANSI, CSI or OSC
sequence), DEL, carriage return, backspace, bidi overrides and isolates, zero-width and other
format characters, line separators. Each view then adds its own escaping: the terminal never
reads markup from a string (rich Text only), the HTML template autoescapes, SARIF is JSON
with every non-ASCII character escaped.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel

from runner.errors import visible_text

T = TypeVar("T")

MAX_CHARS = 4000  # of one string, as shown


def text(value: str) -> str:
    return visible_text(value, MAX_CHARS)


def _walk(value: Any) -> Any:
    if isinstance(value, Enum):  # a StrEnum is a str: its members are Airlock's own
        return value
    if isinstance(value, str):
        return text(value)
    if isinstance(value, BaseModel):
        update = {}
        for name in type(value).model_fields:
            old = getattr(value, name)
            new = _walk(old)
            if new is not old:
                update[name] = new
        return value.model_copy(update=update) if update else value
    if isinstance(value, list):
        return [_walk(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_walk(v) for v in value)
    if isinstance(value, dict):
        return {_walk(k): _walk(v) for k, v in value.items()}
    return value


def neutralised(model: T) -> T:
    """A copy of model (a report, or any part of one) with every string neutralised."""
    return _walk(model)  # type: ignore[no-any-return]
