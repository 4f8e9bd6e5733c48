"""What a batch backend is: something that evaluates one model per job, somewhere, and gives
back each model's outcome as values.

The driver (runner.batch.evaluation.evaluate) owns everything else: discovery, resume, the
results file, the reports and BOMs on disk, progress. A backend only runs jobs:

    backend.prepare(jobs)            # refuse what can never run, before anything is submitted
    backend.submit(job)              # up to backend.capacity at once
    for job, outcome in backend.wait(0.5): ...   # those finished meanwhile (maybe none)
    backend.cancel()                 # on Ctrl-C or an error: stop all, leave nothing behind
    backend.close()                  # always, last

A job never raises out of a backend: a model that could not be evaluated, for whatever reason
(its sandbox failed, its worker or node died past the retries), comes back as an outcome whose
result says so (verdict error), so the batch goes on and the model has its line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from runner.batch.evaluation import EvalResult
    from runner.behaviour.probes import ProbeSet
    from runner.policy import Policy

BACKENDS = ("local", "ray", "kubernetes")


@dataclass(frozen=True)
class Job:
    """One model to evaluate and everything its evaluation needs. Picklable: a remote backend
    ships it to the node that runs it (the model's path must be readable there)."""

    index: int  # its place in the batch: unique within one run
    path: Path
    sha256: str  # '' when the driver did not hash it (the pre-flight then does)
    policy: Policy
    probes: ProbeSet | None = None
    baselines: Any = None  # a runner.behaviour.baseline.Registry, or None
    signing: Any = None  # runner.static.preflight.SigningOptions, or None


@dataclass(frozen=True)
class Outcome:
    """What one job gives back, as values: its result line (with `report` and `bom` unset: the
    driver names them when it writes them), the report as JSON and the ML-BOM as JSON (None
    when there is nothing to write), and the stem their file names take."""

    result: EvalResult
    stem: str
    report_json: str | None = None
    bom_json: str | None = None


@runtime_checkable
class Backend(Protocol):
    """Runs jobs. See the module's docstring for the order of calls."""

    name: str

    @property
    def capacity(self) -> int:
        """How many jobs the driver keeps submitted at once."""
        ...

    def prepare(self, jobs: Sequence[Job]) -> None:
        """Check, before any job is submitted, that the jobs can run at all (an engine, the
        images, somewhere with room for a sandbox); a UsageError or AirlockError otherwise."""
        ...

    def submit(self, job: Job) -> None: ...

    def wait(self, timeout: float) -> list[tuple[Job, Outcome]]:
        """The jobs finished since the last call, waiting up to `timeout` seconds for one."""
        ...

    def cancel(self) -> None:
        """Stop everything submitted: no container, mount or temp dir may be left. Idempotent."""
        ...

    def close(self) -> None:
        """Release what the backend holds (threads, a cluster connection). Always called."""
        ...
