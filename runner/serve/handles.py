"""A replica and the handle on its sandbox: what runner.serve.replicas needs of a sandbox, so
its logic is tested with fakes and run with runner.Sandbox."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from runner.channel.client import WorkerRejected
from runner.controller import watch
from runner.controller.sandbox import Sandbox
from runner.errors import AirlockError, SandboxError, untrusted_text
from runner.policy import Policy
from runner.report import Report, Signature
from runner.rules.catalog import Finding
from runner.serve.backend import BadRequest, ModelMeta, TensorMeta


class Handle(Protocol):
    """One sandbox, opened once, closed once."""

    container: str

    def open(self) -> None: ...

    def describe(self) -> Signature: ...

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def check(self, full: bool) -> Report | None:
        """The evidence so far judged: None when the new evidence is proved quiet (and `full`
        is not asked), else the report judged in full."""
        ...

    def spent(self) -> tuple[int, int, int, int]:
        """Trace bytes and calls, audit bytes and lines so far: the recycling budget's."""
        ...

    def running(self) -> bool: ...

    def kill(self) -> None: ...

    def close(self) -> None: ...

    def report(self) -> Report: ...

    def killed_from_outside(self) -> bool: ...


class SandboxHandle:
    """A runner.Sandbox as a replica's handle."""

    def __init__(self, model: Path, policy: Policy, kwargs: Mapping[str, Any]) -> None:
        self.sandbox = Sandbox(model, policy, **kwargs)
        self.evidence = watch.Evidence(self.sandbox)
        self.container = ""

    def open(self) -> None:
        self.sandbox.open()
        self.container = watch.container(self.sandbox)

    def describe(self) -> Signature:
        return self.sandbox.describe()

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.sandbox.infer(inputs)

    def check(self, full: bool) -> Report | None:
        if not full and self.evidence.quiet():
            return None
        return self.evidence.full()

    def spent(self) -> tuple[int, int, int, int]:
        return self.evidence.spent()

    def running(self) -> bool:
        return watch.running(self.sandbox)

    def kill(self) -> None:
        with contextlib.suppress(AirlockError):  # gone already: teardown records it
            self.sandbox.kill()

    def close(self) -> None:
        with contextlib.suppress(AirlockError):  # teardown's failures are in the report
            self.sandbox.close()

    def report(self) -> Report:
        return self.sandbox.report()

    def killed_from_outside(self) -> bool:
        """SIGKILLed (exit 137), not by the host, not for memory: docker kill, say."""
        c = self.sandbox._c
        st = c.final_state
        return st is not None and st.exit_code == 137 and not st.oom_killed and not c.killed_by_host


# what a failed replica's own report says of the failure: the restart event, not quarantine
FAILURE_RULES = frozenset({"AL501", "AL502", "AL503", "AL504", "AL505", "AL506", "AL507", "AL907"})
# what a container killed from outside (SIGKILL of its first process) leaves in the trace
_CUT_BY_KILL = (
    "the worker's exit record is missing",
    "the tracer exited with",
    "the tracer's log ends mid-line",
)


def excused(f: Finding, outside: bool) -> bool:
    """A failed replica's finding that is the failure itself: a limit, the crash, and for a
    container killed from outside, the trace it cut (AL404 with only those problems; the
    model cannot SIGKILL its container's first process from inside)."""
    if f.rule_id in FAILURE_RULES:
        return True
    return (
        outside
        and f.rule_id in ("AL404", "AL905")
        and bool(f.evidence)
        and all(e.startswith(_CUT_BY_KILL) for e in f.evidence)
    )


def model_raised(e: AirlockError) -> bool:
    """The model's own raise during inference (the worker answered ABORTED): the replica is
    well, the request failed."""
    cause = e.__cause__
    return (
        isinstance(e, SandboxError)
        and isinstance(cause, WorkerRejected)
        and cause.code == "ABORTED"
    )


@dataclass
class Replica:
    """One slot of the service: its current sandbox (replaced after a failure), its state
    (starting, idle, busy, dead), what its evidence showed so far."""

    index: int
    generation: int = 0
    handle: Handle | None = None
    state: str = "dead"
    requests: int = 0  # served by every sandbox the slot had
    served: int = 0  # served by the current sandbox (the recycling budget's)
    judged_at: float = 0.0  # the last full judgement (monotonic; 0: none yet)
    draining: bool = False  # a fresh sandbox waits to take over: no new request here
    recycles: int = 0
    findings: list[dict[str, Any]] = field(default_factory=list)
    failure: str = ""
    started: float = 0.0
    pending: bool = False  # a fresh sandbox is on its way
    refused: bool = False  # the restart budget was spent (said once)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def summary(self) -> dict[str, Any]:
        return {
            "replica": self.index,
            "generation": self.generation,
            "state": self.state,
            "container": self.handle.container if self.handle is not None else "",
            "requests": self.requests,
            "served_by_this_sandbox": self.served,
            "recycles": self.recycles,
            "up_seconds": round(time.time() - self.started, 3) if self.handle else 0.0,
            "verdict_so_far": _so_far(self.findings),
            "findings": list(self.findings),
            "last_failure": self.failure,
        }


def _so_far(findings: list[dict[str, Any]]) -> str:
    """The verdict the findings so far give (the run is not over: never 'clean', 'pending')."""
    severities = {f.get("severity") for f in findings}
    if severities & {"critical", "high"}:
        return "malicious"
    if severities & {"medium"}:
        return "suspicious"
    return "pending"


V2_DATATYPES = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "bfloat16": "BF16",
    "object": "BYTES",
    "str": "BYTES",
    "bytes": "BYTES",
}


def model_meta(sig: Signature, name: str, version: str) -> ModelMeta:
    """The v2 model metadata from the sandbox's description (a dtype v2 has no name for: the
    numpy name in capitals; unknown: empty, and not checked)."""

    def meta(specs: Any) -> list[TensorMeta]:
        return [
            TensorMeta(s.name, V2_DATATYPES.get(s.dtype, s.dtype.upper()), list(s.shape))
            for s in specs
        ]

    return ModelMeta(name, version, f"airlock_{sig.format}", meta(sig.inputs), meta(sig.outputs))


def check_inputs(meta: ModelMeta, inputs: Mapping[str, np.ndarray]) -> None:
    """BadRequest unless the inputs are the model's by name, datatype, rank and fixed sizes."""
    want = {t.name: t for t in meta.inputs}
    if not want:  # the description names none: the sandbox's own check decides
        return
    if set(inputs) != set(want):
        missing, unknown = sorted(set(want) - set(inputs)), sorted(set(inputs) - set(want))
        raise BadRequest(
            f"the model takes inputs {sorted(want)}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unknown {[untrusted_text(n, 80) for n in unknown]}" if unknown else "")
        )
    for name, array in inputs.items():
        t = want[name]
        got = V2_DATATYPES.get(np.asarray(array).dtype.name, "?")
        if t.datatype and got != t.datatype:
            raise BadRequest(f"input {name}: datatype {got}, the model takes {t.datatype}")
        shape = list(np.shape(array))
        if t.shape and (
            len(shape) != len(t.shape)
            or any(w >= 0 and w != g for w, g in zip(t.shape, shape, strict=True))
        ):
            raise BadRequest(f"input {name}: shape {shape}, the model takes {t.shape}")


def finding_json(f: Finding) -> dict[str, Any]:
    return f.model_dump(mode="json", include={"rule_id", "rule", "title", "severity", "message"})


def learn_outputs(meta: ModelMeta | None, outputs: Mapping[str, np.ndarray]) -> ModelMeta | None:
    """The metadata with the outputs a first answer shows, when the description named none."""
    if meta is None or meta.outputs or not outputs:
        return None
    learned = [
        TensorMeta(n, V2_DATATYPES.get(a.dtype.name, a.dtype.name.upper()), [-1] * a.ndim)
        for n, a in outputs.items()
    ]
    return dataclasses.replace(meta, outputs=learned)
