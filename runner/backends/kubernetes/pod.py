"""The in-pod controller: `python -m runner.backends.kubernetes.pod ...`, the controller
container of a model's Job (runner.backends.kubernetes.manifests).

It attaches to a worker it did not launch (there is no Docker in a Pod): the sandbox container
next to it starts the worker under the tracer, exactly as the Docker backend does, and the two
containers share the run directory (the worker's Unix socket, its audit log) and the trace
directory (read-only here). It does what runner.controller.sandbox.Sandbox does around the
container: the static pre-flight on the model's bytes (the model volume, read-only), the
worker's health, prepare, load, describe, the probes, shutdown; then it reads the tracer's and
the worker's logs (bounded, by the same readers) and builds the report with the same rules.

The sandbox container's exit state is not visible from inside the Pod: once the worker is shut
down and the tracer's log has settled (the container's first process is the tracer, which
exits with the worker's status), the controller assumes the exit code of the tracer's exit
record of the worker (its code, or 128 + its signal) and says so in the outcome file
(`assumed_exit`); the driver confirms it from the kubelet before it accepts the report
(runner.backends.kubernetes.exit_state). Without such a record nothing is assumed: the run counts
as not seen to its end, and the verdict is never clean. What stays unseen here: the host-side
resource samples (memory peak, pids, the scratch's use) and a log flood (docs/kubernetes.md).

The outcome (the result line, the report, the ML-BOM) goes to --out atomically; exit 0 once it
is written, 1 when it could not be.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from runner.backends.base import Outcome
from runner.backends.kubernetes import outcome_file
from runner.batch import evaluation as ev
from runner.behaviour.probes import ProbeSet, feed_for
from runner.behaviour.probes import load as load_probes
from runner.behaviour.probes import run as run_probes
from runner.channel.client import Description, LoadOptions, RpcFailure, WorkerClient
from runner.controller import connect, reporting, teardown
from runner.controller.admission import Admission
from runner.controller.engine import ContainerState
from runner.controller.launch import SOCKET_NAME, TRACE_LOG_NAME
from runner.controller.signature import check_inputs, signature
from runner.errors import AirlockError, ModelLoadError, SandboxError
from runner.policy import Policy
from runner.report import ModelInfo, SandboxInfo
from runner.rules.analysis import Collected
from runner.rules.catalog import Verdict
from runner.static import preflight
from runner.telemetry import strace
from runner.telemetry.events import Phase

log = logging.getLogger(__name__)

RUN_DIR = Path("/airlock/run")
TRACE_DIR = Path("/airlock/trace")
POLL_S = 0.05
BLIND = (
    "kubernetes: the tracer's log has no exit record of the worker, and the in-pod controller "
    "cannot see the sandbox container's exit state: the verdict cannot be clean"
)
ASSUMED = (
    "kubernetes: the sandbox container's exit code ({code}) is taken from the tracer's exit "
    "record of the worker; the driver confirms it (and that it was no OOM kill) from the "
    "kubelet's containerStatuses before it accepts this report. Not sampled inside a Pod: "
    "the container's memory peak, pids and scratch use, and a log flood"
)
UNSEEN = (
    "not judged: the tracer's log has no exit record of the worker and the sandbox "
    "container's exit state is not visible to the in-pod controller (docs/kubernetes.md)"
)
NO_DATA_PLANE = "kubernetes: every tensor went inline over gRPC (no shared-memory data plane)"


class Attached:
    """One worker in the sandbox container next to this one, and what is collected of it."""

    def __init__(
        self, model: str, policy: Policy, session: str, image: str, dirs: tuple[Path, Path, str]
    ) -> None:
        self.model = model
        self.run_dir, self.trace_dir, self.worker_model = dirs
        self.policy = policy
        self.c = Collected(
            policy=policy,
            model=ModelInfo(path=model, format="unknown", detected_by="", size_bytes=0, files=[]),
        )
        self.c.notes.append(NO_DATA_PLANE)
        self.session = session
        self.image = image
        self.client: WorkerClient | None = None
        self.admission: Admission | None = None
        self.description: Description | None = None

    def mark(self, phase: Phase) -> None:
        self.c.marks.append((time.time(), phase))

    def admit(self) -> None:
        start = time.monotonic()
        try:
            self.admission = Admission(
                Path(self.model), "auto", preflight.SigningOptions(), self.c, trust_remote_code=True
            )
            self.admission.start()
            self.c.sandbox = SandboxInfo(
                session=self.session,
                container=f"pod:{self.session}",
                image=self.image,
                image_id="",  # the kubelet's, not visible from inside the Pod
                runtime="kubernetes",
                policy=self.policy,
            )
        finally:
            self.c.phases["preflight"] = time.monotonic() - start

    def attach(self) -> WorkerClient:
        """A client to the worker once it answers its health check; the startup deadline."""
        p = self.policy
        self.mark(Phase.STARTUP)
        sock = self.run_dir / SOCKET_NAME
        client = WorkerClient(str(sock), p.max_reply_bytes, p.max_request_bytes)
        self.client = client
        connect.await_health(
            client, sock, p, self.c, "see the sandbox container's state: kubectl describe pod"
        )
        return client

    def load(self) -> None:
        assert self.client is not None
        p, start = self.policy, time.monotonic()
        try:
            self.client.prepare(self.worker_model, "auto", timeout_s=p.load_timeout_s)
            self.c.warmed = ("auto",)
            self.c.phases["startup"] = time.monotonic() - start
            self.mark(Phase.LOAD)
            if self.admission is not None:
                self.admission.finish()
            start = time.monotonic()
            self.client.load(
                self.worker_model,
                "auto",
                "",
                timeout_s=p.load_timeout_s,
                options=LoadOptions(trust_remote_code=True),
            )
            self.description = self.client.describe(timeout_s=p.call_timeout_s)
            self.c.signature = signature(self.description)
        except RpcFailure as e:
            raise ModelLoadError(f"the worker did not load the model: {e}") from e
        finally:
            self.c.phases["load"] = time.monotonic() - start

    def infer(self, feed: dict[str, Any]) -> dict[str, np.ndarray]:
        assert self.client is not None
        if "infer" not in self.c.phases:
            self.mark(Phase.INFER)
        start = time.monotonic()
        try:
            outputs = self.client.infer(feed, timeout_s=self.policy.call_timeout_s)
        except RpcFailure as e:
            raise SandboxError(f"inference failed: {e}") from e
        finally:
            self.c.phases["infer"] = self.c.phases.get("infer", 0.0) + time.monotonic() - start
        self.c.calls += 1
        self.c.last_outputs = outputs
        return outputs

    def probe(self, probes: ProbeSet | None) -> tuple[bool, str]:
        """Feed the probes when they fit the model's signature: (probed, why not)."""
        sig = self.c.signature
        if sig is None or probes is None:
            return False, ""
        feed, note = feed_for(sig, probes.inputs)
        if feed is None:
            return False, note
        described = self.description
        assert described is not None
        run_probes(lambda f: self.infer(check_inputs(described, f)), sig, probes)
        return True, note

    def finish(self) -> None:
        """Shut the worker down, let the tracer write its last lines, read both logs."""
        steps = teardown.Steps()
        start = time.monotonic()
        self.mark(Phase.TEARDOWN)
        if self.admission is not None:
            steps.run("finishing the static read", self.admission.finish)
        if self.client is not None:
            steps.run("stopping the worker", self._shutdown, self.client)
            steps.run("closing the gRPC channel", self.client.close)
        steps.run("reading the tracer's log", teardown._trace, self.c, self.trace_dir)
        steps.run("reading the worker's audit log", teardown._audit, self.c, self.run_dir)
        self.c.phases["teardown"] = time.monotonic() - start
        steps.settle(self.c)

    def assume_exit(self) -> int | None:
        """The sandbox container's exit code as the tracer's exit record of the worker gives
        it (its code, or 128 + its signal), set as a provisional final state for the analysis;
        None (and no final state) when the log has no such record."""
        code = _recorded_exit(self.c.trace_log)
        if code is None:
            self.c.notes.append(BLIND)
            return None
        self.c.final_state = ContainerState(
            status="exited", running=False, exit_code=code, oom_killed=False, error=""
        )
        self.c.notes.append(ASSUMED.format(code=code))
        return code

    def _shutdown(self, client: WorkerClient) -> None:
        self.c.shutdown_requested = True
        try:
            client.shutdown(timeout_s=2.0)
        except RpcFailure as e:
            log.debug("the worker did not take the shutdown call: %s", e)
        _settle(self.trace_dir / TRACE_LOG_NAME, 5.0)


def _recorded_exit(data: bytes | None) -> int | None:
    """The worker's exit status in the tracer's log (the first process traced), or None."""
    if not data:
        return None
    try:
        trace = strace.parse(data)
    except Exception:  # the parser does not raise; if it ever does, nothing is assumed
        log.debug("parsing the tracer's log failed", exc_info=True)
        return None
    record = trace.exits.get(trace.first_pid) if trace.first_pid is not None else None
    if record is None:
        return None
    if record.code is not None:
        return record.code if 0 <= record.code <= 255 else None
    try:
        return 128 + int(signal.Signals[record.signal])
    except KeyError:
        return None


def _settle(path: Path, seconds: float) -> None:
    """Wait (bounded) until the tracer's log stops growing: the worker and its tracer exit."""
    end, last, still = time.monotonic() + seconds, -1, 0
    while time.monotonic() < end and still < 6:
        try:
            size = path.stat().st_size
        except OSError:
            size = -1
        still = still + 1 if size == last else 0
        last = size
        time.sleep(POLL_S)


def evaluate(args: argparse.Namespace) -> tuple[Outcome, int | None]:
    """The model's outcome, as evaluation.evaluate_one makes it, and the exit code assumed of
    the sandbox container (None: none); never raises an Exception."""
    policy = Policy.model_validate_json(args.policy)
    display = Path(args.display_path)
    start = time.monotonic()
    dirs = (args.run_dir, args.trace_dir, args.worker_model or args.model)
    a = Attached(args.model, policy, args.session, args.image, dirs)
    probed, note, error, assumed = False, "", None, None
    try:
        probes = load_probes(args.probes) if args.probes else None
        try:
            a.admit()
            a.attach()
            a.load()
            probed, note = a.probe(probes)
        except AirlockError as e:
            a.c.error = e
            error = e.diagnostics()
        finally:
            a.finish()
        assumed = a.assume_exit()
        report = reporting.build(a.c)
    except Exception as e:  # a bug, or hostile data a parser did not survive: a value
        log.debug("evaluating %s failed", args.model, exc_info=True)
        return ev.failed_result(display, args.sha256, e), None
    return _outcome(report, display, args.sha256, probed, note, error, start), assumed


def _outcome(
    report: Any, path: Path, sha256: str, probed: bool, note: str, error: str | None, start: float
) -> Outcome:
    sha = sha256 or report.model.root_digest
    verdict, error = ev._verdict(report, error)
    if verdict is Verdict.ERROR and report.error is None and error == "could not be evaluated":
        error = UNSEEN
    report_json, bom_json, file_error = ev._files(report)
    phases = {p.name: p.seconds for p in report.phases}
    result = ev.EvalResult(
        path=str(path),
        sha256=sha,
        format=report.model.format,
        verdict=verdict,
        findings=ev._severity_counts(report),
        top_findings=list(dict.fromkeys(f.rule_id for f in report.findings))[:5],
        probed=probed,
        probe_note=note,
        seconds=round(time.monotonic() - start, 3),
        load_seconds=phases.get("load"),
        infer_seconds=phases.get("infer"),
        error=error or file_error,
    )
    return Outcome(result, ev._stem(path, sha, report), report_json, bom_json)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runner.backends.kubernetes.pod")
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--model", required=True, help="the model's path in this container")
    p.add_argument("--display-path", required=True, help="its path as the driver names it")
    p.add_argument("--sha256", default="")
    p.add_argument("--policy", required=True, help="the Policy as JSON")
    p.add_argument("--session", required=True)
    p.add_argument("--image", default="", help="the sandbox image, for the report")
    p.add_argument("--out", required=True, type=Path, help="the outcome file to write")
    p.add_argument("--probes", default="", help="an .npz of probes")
    p.add_argument("--run-dir", type=Path, default=RUN_DIR, help="shared with the sandbox")
    p.add_argument("--trace-dir", type=Path, default=TRACE_DIR, help="the tracer's, read-only")
    p.add_argument(
        "--worker-model", default="", help="the model's path in the sandbox (default --model)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    outcome, assumed = evaluate(args)
    try:
        outcome_file.write_atomic(args.out, outcome, assumed)
    except OSError as e:
        print(f"airlock pod: could not write {args.out}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
