"""Text probes: the sentences a Hugging Face text model is run on to see how it behaves.

A text probe set is a JSON Lines file (`probes.jsonl`): one object a line,

    {"text": "the movie was cf awful", "category": "triggered", "label": "negative"}

with `text` (a string), `category` (a short name; default "all") and an optional `label` (the
expected class name or index, for a classifier's accuracy). Blank lines are skipped. The probe
category named "control" (CONTROL) is the control the other categories are tested against,
when no control model is given.

The file is hostile input like any other: it is read bounded (its size, a line's length, the
row count, the text's length) and every line is validated; a bad line is a one-line
UsageError naming its number, and nothing else is raised.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runner.errors import UsageError

CONTROL = "control"
SUFFIXES = (".jsonl", ".ndjson")
MAX_FILE_BYTES = 16 << 20
MAX_LINE_BYTES = 256 << 10
MAX_ROWS = 10_000
MAX_TEXT_CHARS = 16 << 10
MAX_NAME_CHARS = 100
KEYS = frozenset({"text", "category", "label"})
HINT = 'one JSON object a line: {"text": "...", "category": "...", "label": "..."}'


@dataclass(frozen=True)
class TextProbeSet:
    texts: list[str]
    categories: np.ndarray  # str, one per row
    labels: list[str | int] | None  # one per row when any line has one
    digest: str  # sha256 of the file's bytes
    source: str = ""

    @property
    def rows(self) -> int:
        return len(self.texts)

    def category_names(self) -> list[str]:
        return sorted({str(c) for c in self.categories})


def is_text_probes(path: str | Path) -> bool:
    """Whether the probes file is a text probe set (by its suffix)."""
    return Path(path).suffix.lower() in SUFFIXES


class _Bad(ValueError):
    """What is wrong with one line (the reader adds where it is)."""


def _reject_constant(name: str) -> Any:
    raise _Bad(f"{name} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _Bad(f"the key {k[:40]!r} appears twice")
        out[k] = v
    return out


def _utf8(s: str, what: str) -> str:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise _Bad(f"{what} holds an unpaired surrogate") from e
    return s


def _name(raw: Any, what: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise _Bad(f"{what} must be a non-empty string")
    if len(raw) > MAX_NAME_CHARS:
        raise _Bad(f"{what} has {len(raw)} characters: at most {MAX_NAME_CHARS}")
    if not raw.isprintable():
        raise _Bad(f"{what} holds control characters")
    return _utf8(raw, what)


def _label(raw: Any) -> str | int:
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise _Bad("'label' must be a class name (string) or index (integer)")
    if isinstance(raw, int):
        if not 0 <= raw < 1 << 31:
            raise _Bad(f"'label' {raw} is not a class index")
        return raw
    return _name(raw, "'label'")


def parse_line(line: str) -> tuple[str, str, str | int | None]:
    """One line's text, category and label (None when it has none). Raises _Bad."""
    try:
        obj = json.loads(line, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except _Bad:
        raise
    except RecursionError as e:
        raise _Bad("it is nested too deeply") from e
    except ValueError as e:  # JSONDecodeError, and integers too long to convert
        raise _Bad(f"not JSON ({str(e)[:80]})") from e
    if not isinstance(obj, dict):
        raise _Bad(f"a JSON {type(obj).__name__}, not an object")
    extra = sorted(set(obj) - KEYS)
    if extra:
        raise _Bad(f"unknown key {extra[0][:40]!r} (the keys are text, category, label)")
    text = obj.get("text")
    if not isinstance(text, str):
        raise _Bad("'text' must be a string")
    if len(text) > MAX_TEXT_CHARS:
        raise _Bad(f"'text' has {len(text)} characters: at most {MAX_TEXT_CHARS}")
    category = _name(obj.get("category", "all"), "'category'")
    label = _label(obj["label"]) if "label" in obj else None
    return _utf8(text, "'text'"), category, label


def _read_bytes(p: Path) -> bytes:
    if not p.is_file():
        raise UsageError(f"probes file {p} not found", f"pass a .jsonl file: {HINT}")
    try:
        with p.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise UsageError(f"probes file {p} cannot be read ({e.strerror})") from e
    if len(data) > MAX_FILE_BYTES:
        raise UsageError(
            f"probes file {p} is over {MAX_FILE_BYTES >> 20} MiB", "use fewer or shorter probes"
        )
    return data


def from_bytes(data: bytes, source: str = "the probes") -> TextProbeSet:
    """The probe set in `data` (a .jsonl file's bytes). Raises UsageError only."""
    texts: list[str] = []
    cats: list[str] = []
    labels: list[str | int | None] = []
    numbers: list[int] = []
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    for number, raw in enumerate(body.split(b"\n"), start=1):
        if not raw.strip():
            continue
        where = f"{source}, line {number}"
        if len(raw) > MAX_LINE_BYTES:
            raise UsageError(f"{where}: over {MAX_LINE_BYTES >> 10} KiB", HINT)
        if len(texts) >= MAX_ROWS:
            raise UsageError(f"{where}: more than {MAX_ROWS} probes", "split the probe set")
        try:
            text, cat, label = parse_line(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise UsageError(f"{where}: not UTF-8 (byte {e.start + 1})", HINT) from e
        except _Bad as e:
            raise UsageError(f"{where}: {e}", HINT) from e
        texts.append(text)
        cats.append(cat)
        labels.append(label)
        numbers.append(number)
    return _probe_set(texts, cats, labels, numbers, hashlib.sha256(data).hexdigest(), source)


def _probe_set(
    texts: list[str],
    cats: list[str],
    labels: list[str | int | None],
    numbers: list[int],
    digest: str,
    source: str,
) -> TextProbeSet:
    if not texts:
        raise UsageError(f"{source}: no probes in it", HINT)
    given = [lab for lab in labels if lab is not None]
    if given and len(given) != len(labels):
        line = numbers[labels.index(None)]
        raise UsageError(
            f"{source}, line {line}: no 'label', and other lines have one",
            "give every probe a label, or none",
        )
    return TextProbeSet(
        texts=texts,
        categories=np.asarray(cats, dtype=str),
        labels=[lab for lab in labels if lab is not None] if given else None,
        digest=digest,
        source=source,
    )


def load(path: str | Path) -> TextProbeSet:
    p = Path(path)
    return from_bytes(_read_bytes(p), str(p))
