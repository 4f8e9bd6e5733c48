"""Airlock: load untrusted model checkpoints in a sealed container and see what they do.

Public surface (everything else is private and may change):

    Sandbox, Policy, Runtime       run one model
    RunResult and its parts        what a run produced
    AirlockError and subclasses    what went wrong

Names are imported lazily, so `import runner.worker` inside the sandbox pulls in nothing
host-only.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "AirlockError": "errors", "DeadlineExceeded": "errors", "EngineError": "errors",
    "ImageError": "errors", "InputError": "errors", "LimitExceeded": "errors",
    "ModelLoadError": "errors", "SandboxError": "errors", "UsageError": "errors",
    "WorkerCrashed": "errors",
    "Policy": "policy", "Runtime": "policy",
    "Report": "report", "ModelInfo": "report", "SandboxInfo": "report",
    "Signature": "report", "TensorSummary": "report",
    "Finding": "rules.catalog", "Severity": "rules.catalog", "Verdict": "rules.catalog",
    "Event": "telemetry.events",
    "Sandbox": "controller.sandbox", "SandboxPool": "controller.pool",
    "evaluate": "batch.evaluation", "EvalResult": "batch.evaluation",
    "Observer": "batch.evaluation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'runner' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"runner.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
