"""Batch evaluation: many untrusted checkpoints, a fresh sandbox each.

    for result in runner.evaluate(["models/"], probes="probes.npz", jobs=2):
        print(result.path, result.verdict)

A failed model is a value (a result with `error` set and verdict `error`), never an exception:
the batch goes on. Results are yielded as models finish.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil
from pydantic import BaseModel, ConfigDict, Field

from runner.backends.base import Backend, Job, Outcome
from runner.batch.discovery import digest, discover
from runner.behaviour.probes import ProbeSet, feed_for, from_arrays
from runner.behaviour.probes import load as load_probe_file
from runner.behaviour.probes import run as run_probes
from runner.errors import AirlockError, InputError, UsageError, untrusted_text
from runner.policy import Policy
from runner.report import Report
from runner.rules.catalog import Severity, Verdict
from runner.static import preflight

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from runner.controller.sandbox import Sandbox


class EvalResult(BaseModel):
    """One line of results.jsonl."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    repo_id: str | None = Field(
        default=None, description="the Hugging Face repository, for a model from the cache"
    )
    revision: str | None = Field(default=None, description="its snapshot's commit hash")
    sha256: str = Field(description="of the file; of the per-file digests for a directory")
    format: str
    verdict: Verdict
    findings: dict[str, int] = Field(description="counts by severity")
    top_findings: list[str] = Field(default_factory=list, description="rule ids, worst first")
    probed: bool = Field(description="whether the probes were fed to the model")
    probe_note: str = ""
    seconds: float
    load_seconds: float | None = None
    infer_seconds: float | None = None
    error: str | None = None
    report: str | None = Field(default=None, description="the report's file, relative to --out")
    bom: str | None = Field(
        default=None, description="the CycloneDX ML-BOM's file, relative to --out"
    )
    baseline: str | None = Field(
        default=None,
        description="'drift' or 'no drift' when the model "
        "had a baseline for these probes (--baseline)",
    )


# --- which paths are models --------------------------------------------------------------------


@dataclass
class _Running:
    sandboxes: dict[int, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    cancelled: threading.Event = field(default_factory=threading.Event)
    zygote: Any = None  # runner.controller.zygote.Zygote: the batch's warm starts, when it has one


def _severity_counts(report: Report) -> dict[str, int]:
    counts = {s.value: 0 for s in Severity}
    for f in report.findings:
        counts[f.severity.value] += 1
    return {k: v for k, v in counts.items() if v}


@dataclass(frozen=True)
class _Run:
    """What the sandbox gave: the probes' outputs, why they were not fed, or what stopped it."""

    outputs: dict[str, np.ndarray] | None = None
    probed: bool = False
    note: str = ""
    error: str | None = None


def _run(sb: Sandbox, probes: ProbeSet | None, running: _Running | None) -> _Run:
    """Load the model in its sandbox and feed it the probes when they fit its signature. While
    it runs, the sandbox is listed in `running`, so that a cancelled batch can kill it."""
    if running is not None:
        with running.lock:
            running.sandboxes[id(sb)] = sb
    probed, note, error = False, "", None
    outputs: dict[str, np.ndarray] | None = None
    try:
        with sb:
            signature = sb.describe()
            feed, note = feed_for(signature, probes.inputs if probes else {})
            if feed is not None and probes is not None:
                try:
                    outputs = run_probes(sb.infer, signature, probes)
                    probed = True
                except InputError as e:
                    note = f"the model rejected the probes ({e.message}): load-only"
    except AirlockError as e:
        error = e.diagnostics()
    finally:
        if running is not None:
            with running.lock:
                running.sandboxes.pop(id(sb), None)
    return _Run(outputs, probed, note, error)


def _model_sha(path: Path, report: Report, sha256: str | None) -> str:
    """The digest given, else the pre-flight's, else (it did not get that far) hashed now."""
    m = report.model
    return sha256 or (
        digest(path) if not m.files else m.files[0].sha256 if path.is_file() else m.root_digest
    )


def _check_baseline(
    path: Path,
    report: Report,
    probes: ProbeSet | None,
    outputs: dict[str, np.ndarray] | None,
    baselines: Any,
) -> tuple[Report, str | None]:
    """The report checked against the model's baseline for these probes, when it has one, and
    'drift' or 'no drift' (None when it was not checked)."""
    from runner.behaviour import baseline as _baseline

    if baselines is None or probes is None or outputs is None:
        return report, None
    entry = baselines.find(
        probes.digest, root=report.model.root_digest, name=_baseline.default_name(path)
    )
    if entry is None:
        return report, None
    try:
        checked = _baseline.compare(
            entry, baselines.rows(entry), outputs, report, probes, baselines.path
        )
    except (AirlockError, ValueError) as e:
        return report.amended(notes=[f"baseline not checked: {e}"]), None
    assert checked.baseline is not None
    return checked, "drift" if checked.baseline.drift else "no drift"


def _verdict(report: Report, error: str | None) -> tuple[Verdict, str | None]:
    """The model's verdict, and its error (one is given to every verdict of error)."""
    if error is not None and report.sandbox is None and report.error is None:
        verdict = Verdict.ERROR  # a usage problem with this one file: no sandbox ran
    else:
        verdict = report.verdict
    if verdict is Verdict.ERROR and error is None:
        error = report.error.message if report.error else "could not be evaluated"
    return verdict, error


def _stem(path: Path, sha: str, report: Report) -> str:
    """The name a model's report and BOM files take: its repository and revision, when it came
    from the Hugging Face cache, else its file's name; then its digest's first digits."""
    hf = report.model.huggingface
    name = f"{hf.repo_id.replace('/', '--')}@{hf.revision[:12]}" if hf and hf.repo_id else path.name
    return f"{_safe(name)}-{sha[:12]}"


def _files(report: Report) -> tuple[str | None, str | None, str | None]:
    """The report's JSON and the ML-BOM's (None when nothing ran), and the first error in
    making them."""
    from runner.integrity.bom import checked_bom

    if report.sandbox is None and report.integrity is None:
        return None, None, None
    report_json = report.model_dump_json(indent=2) + "\n"
    try:
        return report_json, checked_bom(report), None
    except (AirlockError, ValueError) as e:
        return report_json, None, f"could not make the ML-BOM: {e}"


def store(outcome: Outcome, out_dir: Path | None) -> EvalResult:
    """The result line of an outcome, once its report and BOM are written under `out_dir`;
    one model's unwritable files are its own error, never the batch's."""
    result = outcome.result
    if out_dir is None:
        return result
    names: dict[str, str] = {}
    error: str | None = None
    for key, name, text in (
        ("report", f"reports/{outcome.stem}.json", outcome.report_json),
        ("bom", f"boms/{outcome.stem}.cdx.json", outcome.bom_json),
    ):
        if text is None:
            continue
        try:
            target = out_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            names[key] = name
        except OSError as e:
            error = error or f"could not write {name}: {e}"
    update: dict[str, Any] = dict(names)
    if error and not result.error:
        update["error"] = error
    return result.model_copy(update=update) if update else result


def run_job(job: Job, running: _Running | None = None) -> Outcome:
    """Evaluate one job's model in its own fresh sandbox: what every backend runs, wherever
    it runs it. Never raises an Exception: a failure is the outcome's error."""
    try:
        return evaluate_one(
            job.path,
            job.policy,
            job.probes,
            running,
            job.sha256 or None,
            job.baselines,
            job.signing,
        )
    except Exception as e:  # a bug, or hostile data a parser did not survive: a value
        log.debug("evaluating %s failed", job.path, exc_info=True)
        return failed_result(job.path, job.sha256, e)


def evaluate_one(
    path: Path,
    policy: Policy,
    probes: ProbeSet | None,
    running: _Running | None = None,
    sha256: str | None = None,
    baselines: Any = None,
    signing: Any = None,
) -> Outcome:
    from runner.controller.sandbox import Sandbox

    start = time.monotonic()
    # like scan: a repository's own code runs in the sandbox, which is what is being evaluated
    zygote = running.zygote if running is not None else None
    sb = Sandbox(path, policy, signing=signing, trust_remote_code=True, zygote=zygote)
    try:
        return _evaluated(sb, path, probes, running, sha256, baselines, start)
    except Exception as e:  # a bug, or hostile data a parser did not survive: its report too
        log.debug("evaluating %s failed", path, exc_info=True)
        return failed_result(path, sha256 or "", e, sb.report())


def _evaluated(
    sb: Sandbox,
    path: Path,
    probes: ProbeSet | None,
    running: _Running | None,
    sha256: str | None,
    baselines: Any,
    start: float,
) -> Outcome:
    run = _run(sb, probes, running)
    report = sb.report()
    sha = _model_sha(path, report, sha256)
    report, checked = _check_baseline(path, report, probes, run.outputs, baselines)
    verdict, error = _verdict(report, run.error)
    report_json, bom_json, file_error = _files(report)
    phases = {p.name: p.seconds for p in report.phases}
    hf = report.model.huggingface
    result = EvalResult(
        path=str(path),
        repo_id=hf.repo_id or None if hf else None,
        revision=hf.revision or None if hf else None,
        sha256=sha,
        format=report.model.format,
        verdict=verdict,
        findings=_severity_counts(report),
        top_findings=list(dict.fromkeys(f.rule_id for f in report.findings))[:5],
        probed=run.probed,
        probe_note=run.note,
        seconds=round(time.monotonic() - start, 3),
        load_seconds=phases.get("load"),
        infer_seconds=phases.get("infer"),
        error=error or file_error,
        baseline=checked,
    )
    return Outcome(result, _stem(path, sha, report), report_json, bom_json)


def failed_result(
    path: Path,
    sha256: str,
    e: BaseException,
    report: Report | None = None,
) -> Outcome:
    """The outcome of a model whose evaluation raised something other than an AirlockError
    (or whose task died). Its report is written all the same: the sandbox's (verdict error at
    best), or, when there is none, a minimal one that says why."""
    from runner.controller import reporting

    error = f"internal error: {type(e).__name__}: {untrusted_text(str(e), 300)}"
    return error_outcome(
        path, sha256, error, reporting.with_error(report, "InternalError", error, str(path))
    )


def error_outcome(path: Path, sha256: str, error: str, report: Report | None = None) -> Outcome:
    """A model's error line, with a report saying `error` (a minimal one when none is given)."""
    from runner.controller import reporting

    if report is None:
        report = reporting.with_error(None, "InternalError", error, str(path))
    try:
        sha = sha256 or (digest(path) if path.exists() else "")
    except OSError:
        sha = ""
    result = EvalResult(
        path=str(path),
        sha256=sha256,
        format=report.model.format,
        verdict=report.verdict,
        findings=_severity_counts(report),
        top_findings=list(dict.fromkeys(f.rule_id for f in report.findings))[:5],
        probed=False,
        seconds=0.0,
        error=error,
    )
    return Outcome(
        result, f"{_safe(path.name)}-{sha[:12]}", report.model_dump_json(indent=2) + "\n"
    )


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:80] or "model"


# --- the batch ---------------------------------------------------------------------------------


def default_jobs(policy: Policy) -> int:
    """As many sandboxes as there are CPUs, no more than the memory limits allow together."""
    available = psutil.virtual_memory().available
    by_memory = max(1, int(available * 0.8) // policy.memory_bytes)
    return max(1, min(os.cpu_count() or 1, by_memory))


def check_jobs(jobs: int, policy: Policy) -> None:
    total = psutil.virtual_memory().total
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: must be at least 1")
    if jobs * policy.memory_bytes > total:
        raise UsageError(
            f"--jobs {jobs} sandboxes of {policy.memory_bytes >> 20} MiB each need more memory "
            f"than the machine has ({total >> 20} MiB)",
            "lower --jobs or --memory",
        )


class Observer:
    """Progress callbacks; the library itself never prints."""

    def started(self, total: int, skipped: int) -> None: ...
    def passed_over(self, skipped: list[tuple[str, str]], more: int) -> None:
        """The paths discovery passed over, (path, why), and how many more past its cap."""

    def model_started(self, path: Path) -> None: ...
    def model_finished(self, result: EvalResult) -> None: ...


def _probe_set(probes: str | Path | dict[str, np.ndarray] | None) -> ProbeSet | None:
    """The probes, from arrays or a probes file; None for none (or no arrays)."""
    if isinstance(probes, dict):
        return from_arrays(probes) if probes else None
    return load_probe_file(probes) if probes is not None else None


def _registry(baselines: str | Path | Any | None, probes: ProbeSet | None) -> Any:
    """The baseline registry to check against (given, or opened at a path), or None."""
    from runner.behaviour.baseline import Registry

    if baselines is None:
        return None
    if probes is None:
        raise UsageError(
            "checking baselines needs the probes they were recorded with", "pass --probes"
        )
    return baselines if isinstance(baselines, Registry) else Registry(baselines)


def _to_do(models: list[Path], skip: set[str]) -> list[tuple[Path, str]]:
    """The models not skipped, each with its digest when it was hashed here, else ''."""
    # hashed here only to skip what a resumed batch has done; else the pre-flight does it
    shas = [digest(m) if skip and m.exists() else "" for m in models]
    return [(m, sha) for m, sha in zip(models, shas, strict=True) if not (sha and sha in skip)]


def drive(
    backend: Backend, jobs: list[Job], obs: Observer, out_dir: Path | None
) -> Iterator[EvalResult]:
    """Run `jobs` on a prepared `backend`, `backend.capacity` at a time, in order; results are
    yielded as they complete, their reports and BOMs written under `out_dir`. Anything raised
    meanwhile (KeyboardInterrupt, the iterator closed) cancels the rest on the backend, which
    leaves nothing behind, before it propagates; the backend is closed at the end."""
    queue = list(reversed(jobs))
    in_flight = 0
    preflight.keep_spare()

    def submit_next() -> None:
        nonlocal in_flight
        if queue:
            job = queue.pop()
            obs.model_started(job.path)
            backend.submit(job)
            in_flight += 1

    try:
        for _ in range(backend.capacity):
            submit_next()
        while in_flight:
            for _job, outcome in backend.wait(0.5):
                in_flight -= 1
                result = store(outcome, out_dir)
                obs.model_finished(result)
                yield result
                submit_next()
    except BaseException:
        backend.cancel()
        raise
    finally:
        backend.close()
        preflight.keep_spare(False)


def evaluate(
    paths: Sequence[str | Path],
    *,
    probes: str | Path | dict[str, np.ndarray] | None = None,
    jobs: int | None = None,
    policy: Policy | None = None,
    out_dir: str | Path | None = None,
    skip_sha256: Iterable[str] = (),
    observer: Observer | None = None,
    baselines: str | Path | Any | None = None,
    signing: Any = None,
    backend: str | Backend | None = None,
    address: str | None = None,
    backend_options: dict[str, Any] | None = None,
) -> Iterator[EvalResult]:
    """Evaluate every model named by `paths` in its own fresh sandbox; yield results as they
    complete. With `baselines` (a registry or its path), a model that has a baseline for
    these probes is checked against it. `backend`: 'local' (the default; threads driving this
    machine's engine, `jobs` at a time), 'ray' (a task per model on a Ray cluster at
    `address`), 'kubernetes' (a Job per model; `backend_options` are its settings,
    runner.backends.kubernetes.KubernetesSettings), or a Backend; also from AIRLOCK_BACKEND.
    On KeyboardInterrupt, everything running is torn down before it propagates."""
    from runner.backends import make

    policy = policy or Policy()
    chosen = make(backend, policy=policy, jobs=jobs, address=address, **(backend_options or {}))
    probe_set = _probe_set(probes)
    registry = _registry(baselines, probe_set)
    found = discover(paths)
    models = found.paths
    out = Path(out_dir) if out_dir is not None else None
    todo = _to_do(models, set(skip_sha256))
    work = [
        Job(i, path, sha, policy, probe_set, registry, signing)
        for i, (path, sha) in enumerate(todo)
    ]
    try:  # what can never run is refused before the batch starts (engine, images, nodes)
        chosen.prepare(work)
    except BaseException:
        chosen.close()
        raise
    obs = observer or Observer()
    obs.passed_over(found.skipped, found.more_skipped)
    obs.started(len(todo), len(models) - len(todo))
    yield from drive(chosen, work, obs, out)
