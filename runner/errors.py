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


def untrusted_text(text: str, limit: int = 300) -> str:
    """Make worker-supplied text safe to show: printable, one line, bounded."""
    cleaned = "".join(c if c.isprintable() else " " for c in text.replace("\n", " | "))
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
