"""Airlock: load untrusted model checkpoints in a sealed container and see what they do.

Public surface (everything else is private and may change):

    Sandbox, Policy, Runtime       run one model
    RunResult and its parts        what a run produced
    AirlockError and subclasses    what went wrong

Names are imported lazily, so `import runner.worker` inside the sandbox pulls in nothing
host-only; type checkers read the real imports under TYPE_CHECKING (keep them in step with
_EXPORTS: tests/unit/test_typing.py checks).
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:  # what type checkers see; at run time __getattr__ imports on first use
    from runner.batch.evaluation import EvalResult as EvalResult
    from runner.batch.evaluation import Observer as Observer
    from runner.batch.evaluation import evaluate as evaluate
    from runner.controller.pool import SandboxPool as SandboxPool
    from runner.controller.sandbox import Sandbox as Sandbox
    from runner.controller.zygote import Zygote as Zygote
    from runner.errors import AirlockError as AirlockError
    from runner.errors import BomError as BomError
    from runner.errors import DeadlineExceeded as DeadlineExceeded
    from runner.errors import EngineError as EngineError
    from runner.errors import ImageError as ImageError
    from runner.errors import InputError as InputError
    from runner.errors import IntegrityError as IntegrityError
    from runner.errors import LimitExceeded as LimitExceeded
    from runner.errors import ModelLoadError as ModelLoadError
    from runner.errors import SandboxError as SandboxError
    from runner.errors import UsageError as UsageError
    from runner.errors import WorkerCrashed as WorkerCrashed
    from runner.policy import Policy as Policy
    from runner.policy import Runtime as Runtime
    from runner.report import ModelInfo as ModelInfo
    from runner.report import Report as Report
    from runner.report import SandboxInfo as SandboxInfo
    from runner.report import Signature as Signature
    from runner.report import TensorSummary as TensorSummary
    from runner.rules.catalog import Finding as Finding
    from runner.rules.catalog import Severity as Severity
    from runner.rules.catalog import Verdict as Verdict
    from runner.serve.app import Server as Server
    from runner.telemetry.events import Event as Event

__version__ = "0.1.0"

_EXPORTS = {
    "AirlockError": "errors",
    "BomError": "errors",
    "DeadlineExceeded": "errors",
    "EngineError": "errors",
    "ImageError": "errors",
    "InputError": "errors",
    "IntegrityError": "errors",
    "LimitExceeded": "errors",
    "ModelLoadError": "errors",
    "SandboxError": "errors",
    "UsageError": "errors",
    "WorkerCrashed": "errors",
    "Policy": "policy",
    "Runtime": "policy",
    "Report": "report",
    "ModelInfo": "report",
    "SandboxInfo": "report",
    "Signature": "report",
    "TensorSummary": "report",
    "Finding": "rules.catalog",
    "Severity": "rules.catalog",
    "Verdict": "rules.catalog",
    "Event": "telemetry.events",
    "Sandbox": "controller.sandbox",
    "SandboxPool": "controller.pool",
    "Zygote": "controller.zygote",
    "Server": "serve.app",
    "evaluate": "batch.evaluation",
    "EvalResult": "batch.evaluation",
    "Observer": "batch.evaluation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> _typing.Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'runner' has no attribute {name!r}")
    value = getattr(_importlib.import_module(f"runner.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
