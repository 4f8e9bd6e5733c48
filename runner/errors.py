"""Airlock's errors: one tree, printed in one place (the CLI's main).

    AirlockError                 exit 3 unless said otherwise
    ├── UsageError               exit 2: the caller's mistake (path, input, option)
    │   └── InputError           inputs that do not fit the model
    ├── IntegrityError           exit 1: a required signature is missing or fails (nothing ran)
    ├── EngineError              the Docker engine cannot be reached or refused a request
    ├── ImageError               the sandbox image is missing or stale
    ├── BomError                 a BOM Airlock made does not fit the CycloneDX schema (a bug)
    └── SandboxError             the sandbox ran, but the model could not be evaluated
        ├── ModelLoadError       the worker could not load the file
        ├── WorkerCrashed        the worker died (exit code and last log lines attached)
        ├── LimitExceeded        a resource limit was hit: memory, pids, reply size
        └── DeadlineExceeded     startup, load, call or wall-time deadline passed

    (any other exception)        exit 4: an internal error, a bug in Airlock

Each error carries a one-line message naming what went wrong, and a `hint` saying what to do.
Text that came from inside the sandbox is sanitised before it is put in a message.
"""

from __future__ import annotations

import unicodedata
from typing import ClassVar

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_ERROR = 3
EXIT_INTERNAL = 4


class AirlockError(Exception):
    exit_code: ClassVar[int] = EXIT_ERROR

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """One line for a person: what happened, then what to do."""
        return f"{self.message}; {self.hint}" if self.hint else self.message


class UsageError(AirlockError):
    exit_code = EXIT_USAGE


class InputError(UsageError):
    pass


class IntegrityError(AirlockError):
    exit_code = EXIT_FINDINGS


class EngineError(AirlockError):
    pass


class ImageError(AirlockError):
    pass


class BomError(AirlockError):
    """A BOM that does not fit the CycloneDX schema."""


class SandboxError(AirlockError):
    pass


class ModelLoadError(SandboxError):
    pass


class WorkerCrashed(SandboxError):
    def __init__(
        self, message: str, hint: str = "", exit_code: int | None = None, log_tail: str = ""
    ) -> None:
        super().__init__(message, hint)
        self.worker_exit_code = exit_code
        self.log_tail = log_tail


class LimitExceeded(SandboxError):
    def __init__(self, message: str, hint: str = "", limit: str = "") -> None:
        super().__init__(message, hint)
        self.limit = limit


class DeadlineExceeded(SandboxError):
    def __init__(self, message: str, hint: str = "", deadline: str = "") -> None:
        super().__init__(message, hint)
        self.deadline = deadline


# Characters that reorder what a reader sees: bidi embeddings, overrides and isolates (the
# "Trojan Source" set). The weaker marks (LRM, RLM, ALM), which right-to-left names use, are not
# counted as deceptive; like every format character, they are still neutralised when shown.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
MAX_MARKS = 2  # combining marks kept on one character ("zalgo" text spills over other lines)


def _marks_cut(text: str) -> str:
    """text with every run of combining marks cut to MAX_MARKS."""
    out, run = [], 0
    for c in text:
        run = run + 1 if unicodedata.combining(c) else 0
        if run <= MAX_MARKS:
            out.append(c)
    return "".join(out)


def untrusted_text(text: str, limit: int = 300) -> str:
    """Make text from the sandbox or the model's files safe to show: printable, one line,
    bounded (in time too: only the first few times `limit` characters are read). Every character
    that is not printable becomes a space: C0 and C1 controls (so ESC, and with it every ANSI,
    CSI and OSC sequence, has no effect), DEL, carriage return, backspace, bidi embeddings,
    overrides and isolates, zero-width and other format characters, line and paragraph
    separators, surrogates, private use and unassigned code points; runs of combining marks
    are cut to MAX_MARKS. A newline becomes ' | '."""
    text = text if isinstance(text, str) else str(text)
    limit = max(limit, 1)
    read = 8 * limit + 64
    cut = len(text) > read
    text = text[:read].replace("\n", " | ")
    cleaned = _marks_cut("".join(c if c.isprintable() else " " for c in text))
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > limit:
        return cleaned[: limit - 1] + "…"
    return cleaned + "…" if cut else cleaned


def deceptive_chars(text: str) -> list[str]:
    """The characters in text that steer a terminal or reorder what a reader sees (C0 and C1
    controls, ESC included, DEL, bidi controls, line separators), each named once, in order of
    first appearance: [] for ordinary text."""
    found: dict[str, None] = {}
    for c in text[:100_000]:
        if c in BIDI_CONTROLS or c in "\u2028\u2029" or unicodedata.category(c) == "Cc":
            found["ESC" if c == "\x1b" else f"U+{ord(c):04X}"] = None
            if len(found) >= 8:
                break
    return list(found)


def visible_text(text: str, limit: int = 4000) -> str:
    """text with every character that is not printable written as an escape (\\x1b, \\u202e,
    \\n), so a reader sees that it was there and no terminal or page acts on it; runs of combining
    marks cut to MAX_MARKS; bounded."""
    text = text if isinstance(text, str) else str(text)
    cut = len(text) > limit
    out = []
    for c in text[:limit]:
        if c.isprintable():
            out.append(c)
        elif c in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[c])
        else:
            n = ord(c)
            out.append(
                f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"
            )
    shown = _marks_cut("".join(out))
    return shown + "…" if cut else shown
