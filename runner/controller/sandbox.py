"""The controller: one sealed container, one model, inference over gRPC.

    with Sandbox("model.onnx") as sb:
        outputs = sb.infer({"x": array})
    report = sb.report()

Entering admits the model (runner.controller.admission), launches the container
(runner.controller.launch), waits for the worker's health (runner.controller.connect) and loads
the model; leaving always tears everything down (runner.controller.teardown), on success, on
error and on Ctrl-C. This class is the lifecycle only: each step is delegated, and what the
steps gather goes into one collection (runner.rules.analysis.Collected) the report is built from.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from runner.channel import text
from runner.channel.client import (
    Description,
    LoadOptions,
    RpcFailure,
    WorkerClient,
    WorkerRejected,
)
from runner.channel.dataplane import DataPlane
from runner.channel.text import TextResult
from runner.controller import (
    connect,
    exercise,
    framework_images,
    launch,
    reporting,
    sessions,
    staging,
    teardown,
    watch,
)
from runner.controller.admission import Admission, check_request
from runner.controller.exercise import CALLS, SECONDS
from runner.controller.failures import translate
from runner.controller.launch import Running
from runner.controller.signature import check_inputs, exercise_plans, signature
from runner.controller.zygote import Zygote
from runner.errors import AirlockError, InputError, IntegrityError, UsageError
from runner.hf import base as hf_base
from runner.hf import snapshot as hf_snapshot
from runner.policy import Policy
from runner.report import ModelInfo, Report, SandboxInfo, Signature
from runner.rules import analysis
from runner.static import preflight
from runner.telemetry.events import Phase
from runner.worker.shared.formats import Format

log = logging.getLogger(__name__)


class Sandbox:
    """A sealed container that loads one untrusted model and serves inference from it."""

    def __init__(
        self,
        model_path: str | Path | None,
        policy: Policy | None = None,
        *,
        architecture: str | Path | None = None,
        format: str = "auto",
        signing: preflight.SigningOptions | None = None,
        trust_remote_code: bool = False,
        state_key: str = "",
        strict: bool = True,
        base: str | Path | None = None,
        zygote: Zygote | None = None,
    ) -> None:
        self.policy = policy or Policy()
        self.zygote = zygote  # a warm start under runc (runner.controller.zygote), if it serves
        # how to load: a repository's own code may run (a scan runs it anyway: see
        # runner.cli.models); a checkpoint's weights key; a non-strict state dict load; the
        # base model an adapter applies to
        self.trust_remote_code = trust_remote_code
        self.state_key = state_key
        self.strict = strict
        self.base = Path(base).expanduser() if base is not None else None
        self.signing = signing or preflight.SigningOptions()
        self.model_path = Path(model_path).expanduser() if model_path is not None else Path()
        self.architecture = Path(architecture).expanduser() if architecture else None
        self.format = format
        self.session = sessions.new_session_id()
        self._c = analysis.Collected(
            policy=self.policy,
            model=ModelInfo(
                path=str(self.model_path), format="unknown", detected_by="", size_bytes=0, files=[]
            ),
        )
        self._admission: Admission | None = None
        self._image: tuple[str, str] | None = None
        self._dirs: sessions.SessionDirs | None = None
        self._run: Running | None = None
        self._client: WorkerClient | None = None
        self._data: DataPlane | None = None
        self._description: Description | None = None
        self._targets = launch.Mounts([], "")
        self._warm = False  # pre-started by a pool: launched and warmed, no model yet
        self._closed = False
        self._hf: hf_snapshot.Prepared | None = None  # a cache snapshot, made a plain directory

    @property
    def notes(self) -> list[str]:
        return self._c.notes

    @property
    def trace_log(self) -> bytes:
        return self._c.trace_log or b""

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Sandbox:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Admit, launch, connect and load. On any failure, tear down and raise."""
        try:
            self._admit()
            if self._warm:
                self._claim()
            else:
                self._launch()
                self._connect()
            self._finish_static()  # known before the model's bytes reach the worker
            self._load()
        except BaseException as e:
            if isinstance(e, AirlockError):
                self._c.error = e
            elif self._admission is not None:  # Ctrl-C: do not wait for the static read
                self._admission.cancel()
            self.close()
            raise

    def close(self) -> None:
        """Stop the worker, collect what the host needs, remove the container and directories.
        Every step runs whatever happened to the others (runner.controller.teardown.Steps);
        what failed is in the report, whose verdict is then error at best."""
        if self._closed:
            return
        self._closed = True
        steps = teardown.Steps()
        start = time.monotonic()
        steps.run("finishing the static read", self._finish_static)
        self._mark(Phase.TEARDOWN)
        run, dirs = self._run, self._dirs
        if run is not None:
            steps.run("stopping the wall-time timer", run.stop_wall_timer)
            # while the container is still there to be measured
            steps.run("sampling the resources", run.sampler.sample_once)
        if self._data is not None:
            steps.run("closing the data plane", self._data.close)
        if self._client is not None and run is not None:
            steps.run("stopping the worker", self._shutdown, self._client, run)
        if self._client is not None:
            steps.run("closing the gRPC channel", self._client.close)
        if run is not None:
            teardown.finish_container(
                run, dirs.run if dirs else None, dirs.trace if dirs else None, steps
            )
        root = dirs.root if dirs else sessions.tmp_base() / f"{sessions.DIR_PREFIX}{self.session}"
        if dirs is not None or root.exists():  # made, even if making them did not finish
            steps.run("removing the session's directories", sessions.remove_dirs, root)
        steps.run("removing the snapshot's directory", hf_snapshot.remove_work_dir, self.session)
        self._c.phases["teardown"] = time.monotonic() - start
        steps.settle(self._c)

    def _shutdown(self, client: WorkerClient, run: Running) -> None:
        self._c.shutdown_requested = True
        try:
            client.shutdown(timeout_s=2.0)
        except RpcFailure as e:  # it is killed in teardown if it still runs
            log.debug("the worker did not take the shutdown call: %s", e)
        run.worker_exited(timeout_s=5.0)

    # --- the steps -----------------------------------------------------------------------------

    def _mark(self, phase: Phase) -> None:
        self._c.marks.append((time.time(), phase))

    def _admit(self, static_only: bool = False) -> None:
        start = time.monotonic()
        try:
            check_request(self.model_path, self.architecture, self.format)
            self._hf = hf_snapshot.prepare(self.model_path, self.session, self._c.notes)
            self.model_path = self._hf.path if self._hf else self.model_path
            self._admission = Admission(
                self.model_path,
                self.format,
                self.signing,
                self._c,
                trust_remote_code=self.trust_remote_code or static_only,
            )
            self._admission.start()
            if static_only:
                self._finish_static()
                return
            pooled = self._image if self._warm else None  # a pooled sandbox's is checked
            self._image = framework_images.image_for(self._c.model.format, pooled, self.notes)
            if not self._warm:  # a pooled sandbox takes no base (see _claim)
                self.base = hf_base.resolve(self.base, self.model_path, self.session, self.notes)
            assert self._image is not None
            self._c.sandbox = SandboxInfo(
                session=self.session,
                container=f"airlock-{self.session}",
                image=self._image[0],
                image_id=self._image[1],
                runtime=self.policy.runtime.value,
                policy=self.policy,
            )
        finally:
            self._c.phases["preflight"] = time.monotonic() - start

    def _finish_static(self) -> None:
        if self._admission is not None:
            self._admission.finish()

    def _launch(self, warm: bool = False) -> None:
        start = time.monotonic()
        self._mark(Phase.STARTUP)
        try:
            sessions.reap()
        except AirlockError as e:  # orphans are best-effort; this sandbox does not need it
            log.debug("reaping orphaned sandboxes failed: %s", e)
        assert self._image is not None
        self._dirs = dirs = sessions.make_dirs(self.session)
        model = None if warm else self.model_path.resolve()
        self._targets = launch.mounts(dirs, model, self.architecture, self._c.notes, self.base)
        zygote = None if warm else self.zygote  # a pooled sandbox starts cold
        args = (self.policy, self._image[0], self.session, dirs, self._targets.binds)
        self._run = launch.start_running(*args, zygote, self._c)
        self._run.watch()
        if not warm:
            self._run.start_wall_timer(self.policy.wall_timeout_s)
        self._c.phases["launch"] = time.monotonic() - start

    def _connect(self, prepare: tuple[str, ...] = ()) -> None:
        assert self._dirs is not None and self._run is not None
        start = time.monotonic()
        p = self.policy
        self._client = connect.wait_for_worker(self._dirs.run, p, self._run)
        self._c.warmed = prepare or (self.format,)  # what the host asked (rules.allowances)
        try:  # library start-up happens here, in the baseline phase, before the model is read
            if prepare:
                for fmt in prepare:
                    self._client.prepare("", fmt, timeout_s=p.load_timeout_s)
            else:
                self._client.prepare(
                    self._targets.model_target, self.format, timeout_s=p.load_timeout_s
                )
        except RpcFailure as e:
            raise translate(e, "load", p, self._run) from e
        self._c.phases["startup"] = time.monotonic() - start

    def _load(self) -> None:
        assert self._client is not None and self._run is not None and self._dirs is not None
        start = time.monotonic()
        self._mark(Phase.LOAD)
        p = self.policy
        try:
            self._client.load(
                self._targets.model_target,
                self.format,
                self._targets.arch_target,
                timeout_s=p.load_timeout_s,
                options=LoadOptions(
                    trust_remote_code=self.trust_remote_code,
                    state_key=self.state_key,
                    non_strict=not self.strict,
                    base_path=self._targets.base_target,
                ),
            )
            self._description = self._client.describe(timeout_s=p.call_timeout_s)
            self._c.signature = signature(self._description)
        except RpcFailure as e:
            raise translate(e, "load", p, self._run, self.architecture) from e
        finally:
            self._c.phases["load"] = time.monotonic() - start
        self._data = connect.open_data_plane(self._dirs.run, p, self._run)

    # --- pre-started sandboxes (see runner.controller.pool) -----------------------------

    @classmethod
    def prestart(cls, policy: Policy, formats: tuple[str, ...]) -> Sandbox:
        """Launch a sandbox with no model, warm the given formats' libraries, and return it,
        ready to be claimed once. It has seen no model; it is never reused after one."""
        sb = cls(None, policy)
        try:
            sb._image = framework_images.image_for_formats(formats)
            sb._launch(warm=True)
            sb._connect(prepare=formats)
        except BaseException:
            sb.close()
            raise
        sb._warm = True
        return sb

    def _claim(self) -> None:
        """Put the model into the pre-started sandbox's (read-only) /model directory."""
        assert self._dirs is not None and self._run is not None
        start = time.monotonic()
        if self.architecture is not None:
            raise UsageError(
                "a pooled sandbox takes no architecture file",
                "use runner.Sandbox for state dicts with an architecture",
            )
        staged = staging.stage(self.model_path.resolve(), self._dirs.root / "model")
        self._targets = launch.Mounts(self._targets.binds, f"/model/{staged.name}")
        del self._run.sampler.samples[:-1]  # idle time in the pool is not part of this run
        self._c.notes.append(
            "pre-started sandbox: launched and warmed before the model was "
            "chosen, so startup is the library baseline only"
        )
        self._run.start_wall_timer(self.policy.wall_timeout_s)
        self._c.phases["claim"] = time.monotonic() - start

    # --- public calls --------------------------------------------------------------------------

    def preflight_report(self) -> Report:
        """The static pre-flight alone: manifest, static findings, signature and provenance,
        with no container started (no Docker needed)."""
        self._c.static_only = True
        try:
            self._admit(static_only=True)
        except IntegrityError as e:
            self._c.error = e
        finally:  # the static read is done with a materialised snapshot
            hf_snapshot.remove_work_dir(self.session)
        return self.report()

    def describe(self) -> Signature:
        """The model's inputs and outputs, as the worker reported them."""
        return signature(self._require_open())

    def shared_array(self, shape: tuple[int, ...] | int, dtype: Any = "float32") -> np.ndarray:
        """An uninitialised array (like numpy.empty) in this sandbox's shared memory: fill
        it and pass it to infer, and it reaches the model without a copy. The model can read
        and write it at any time while the sandbox is open, so never trust what it holds after
        a call. Its space is taken until the array is dropped."""
        self._require_open()
        return connect.shared_array(self._data, self.policy, shape, dtype)

    def infer(
        self, inputs: Mapping[str, Any] | np.ndarray, *, copy: bool = True
    ) -> dict[str, np.ndarray]:
        """One inference call. A single array is accepted for a single-input model.

        Outputs are the host's own read-only copies. With copy=False, large outputs are instead
        read-only views of the shared memory, which costs no copy: the model can still
        change them while the sandbox is open (they are frozen once it is closed), and each
        keeps its space until it is dropped. Use it for throughput, never for outputs you check
        and then act on while the sandbox runs."""
        d = self._require_open()
        if not d.can_infer:
            raise UsageError(
                f"this model cannot run inference: {d.note}", "use scan (load only) or describe"
            )
        return self._call(check_inputs(d, inputs), copy=copy, guessed=False)

    def _call(
        self, feed: dict[str, np.ndarray], *, copy: bool, guessed: bool
    ) -> dict[str, np.ndarray]:
        assert self._client is not None
        if "infer" not in self._c.phases:
            self._mark(Phase.INFER)
        start = time.monotonic()
        try:
            if self._data is not None and self._data.connected:
                outputs = self._data.infer(feed, timeout_s=self.policy.call_timeout_s, copy=copy)
            else:
                outputs = self._client.infer(feed, timeout_s=self.policy.call_timeout_s)
        except RpcFailure as e:
            assert self._run is not None
            err = translate(e, "infer", self.policy, self._run)
            # on inputs Airlock guessed, the model raising is no failure of the run
            raised = guessed and isinstance(e, WorkerRejected) and e.code == "ABORTED"
            if not isinstance(err, InputError) and not raised:
                self._c.error = err
            raise err from e
        finally:
            self._c.phases["infer"] = self._c.phases.get("infer", 0.0) + (time.monotonic() - start)
        self._c.calls += 1
        # summarised (hashed) only when a report is made; views only while the caller keeps
        # them (holding them here would keep their shared memory from being used again)
        self._c.last_outputs = outputs if copy else {k: weakref.ref(v) for k, v in outputs.items()}
        return outputs

    def infer_text(self, texts: Sequence[str]) -> TextResult:
        """Texts in: the worker tokenises them with the repository's own tokenizer and runs the
        model (a Hugging Face repository). The result holds, by task, embeddings, labels with
        scores, or next-token log-probabilities (runner.channel.text.TextResult)."""
        return self._text(list(texts), 0)

    def generate(self, prompt: str, max_new_tokens: int = 32) -> str:
        """The text a causal language model generates after `prompt` (greedy, at most
        max_new_tokens tokens, within the call timeout). It is the model's: show it only
        through runner.errors.untrusted_text."""
        return self._text([prompt], max_new_tokens).generated[0]

    def _text(self, texts: list[str], max_new_tokens: int, guessed: bool = False) -> TextResult:
        self._require_open()
        assert self._client is not None and self._run is not None
        try:
            text.check_request(texts, max_new_tokens)
        except ValueError as e:
            raise InputError(str(e), "pass fewer or shorter texts") from e
        if "infer" not in self._c.phases:
            self._mark(Phase.INFER)
        start, p = time.monotonic(), self.policy
        try:
            result = self._client.text(
                texts, max_new_tokens, 0.8 * p.call_timeout_s, timeout_s=p.call_timeout_s
            )
        except RpcFailure as e:
            err = translate(e, "infer", p, self._run)
            raised = guessed and isinstance(e, WorkerRejected) and e.code == "ABORTED"
            if not isinstance(err, InputError) and not raised:
                self._c.error = err
            raise err from e
        finally:
            self._c.phases["infer"] = self._c.phases.get("infer", 0.0) + (time.monotonic() - start)
        self._c.calls += 1
        self._c.last_outputs = dict(result.outputs)
        return result

    def exercise(self, calls: int = CALLS, seconds: float = SECONDS) -> int:
        """Call the model with inputs built from its declared signature (see
        runner.controller.exercise), or with a few sentences for a Hugging Face repository, so
        code that waits for inference runs while it is watched. Returns the number of calls the
        model answered; a note in the report says what was done."""
        d = self._require_open()
        if not d.can_infer or calls <= 0:
            self._c.notes.append(f"not exercised: {d.note or 'no calls asked for'}")
            return 0
        if d.format in (Format.HUGGINGFACE.value, Format.GGUF.value):  # texts, as text models
            return exercise.with_texts(self._text, self._c.notes, self._c, calls)
        planned = exercise_plans(d, self._client.faults if self._client else None, calls, seconds)
        if planned is None:
            self._c.notes.append("not exercised: inputs of the declared sizes cannot be built")
            return 0

        def call(inputs: dict[str, np.ndarray]) -> None:
            self._call(check_inputs(d, inputs), copy=True, guessed=True)

        answered, raised = exercise.run_plans(planned, call, self._c)
        self._c.notes.append(
            f"exercised after loading: {answered} call(s) answered, {raised} raised, with inputs "
            f"built from the declared signature over up to {seconds:g} s"
        )
        return answered

    def kill(self) -> None:
        """Kill the container now, from any thread (Ctrl-C in a batch): the call in progress
        fails, and the sandbox's own teardown still runs where it is used."""
        if self._run is not None:
            self._run.kill()

    def report(self) -> Report:
        """What this sandbox did, judged: complete once the sandbox is closed. Never raises:
        when the report cannot be built, a minimal one with verdict error says why."""
        faults = [x.faults for x in (self._client, self._data) if x is not None]
        if self._hf is not None:  # the caller's path, and the repository it came from
            self._c.model = self._hf.shown(self._c.model)
        return reporting.build(self._c, faults)

    def live_report(self) -> Report:
        """The report so far while open, the sandbox left running (runner.controller.watch)."""
        return watch.live_report(self)

    # --- helpers -------------------------------------------------------------------------------

    def _require_open(self) -> Description:
        if self._closed or self._description is None:
            raise UsageError("the sandbox is not open", "use it inside a 'with Sandbox(...)' block")
        return self._description
