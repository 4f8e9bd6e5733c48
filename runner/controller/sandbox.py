"""The controller: one sealed container, one model, inference over gRPC.

    with Sandbox("model.onnx") as sb:
        outputs = sb.infer({"x": array})
    report = sb.report()

Entering launches the container, waits for the worker's health with a deadline and loads the
model; leaving always tears everything down (container and host directories), on success, on
error and on Ctrl-C. While it runs, the host samples the container's resources; at teardown it
collects the tracer's log and the container's exit state, and the report is assembled from them.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import stat
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from runner.channel.client import (
    BadReply,
    CallDeadline,
    Description,
    ReplyTooLarge,
    RpcFailure,
    WorkerClient,
    WorkerRejected,
    WorkerUnavailable,
)
from runner.channel.dataplane import DataPlane
from runner.controller import engine as _docker
from runner.controller import images as _image
from runner.controller import sessions as _session
from runner.errors import (
    AirlockError,
    DeadlineExceeded,
    InputError,
    IntegrityError,
    LimitExceeded,
    ModelLoadError,
    SandboxError,
    UsageError,
    WorkerCrashed,
    untrusted_text,
)
from runner.integrity.provenance import ProvenanceInfo, provenance_for
from runner.integrity.signing import SignatureCheck
from runner.policy import Policy
from runner.report import (
    Integrity,
    ModelInfo,
    Report,
    SandboxInfo,
    Signature,
    StaticInfo,
    TensorSpecInfo,
    anomalies,
    file_digests,
    root_digest,
    shown,
)
from runner.rules import analysis as _analysis
from runner.static import preflight
from runner.telemetry import tracer as _tracer
from runner.telemetry.events import Phase
from runner.telemetry.resources import Sampler
from runner.worker.shared import tensors
from runner.worker.shared.formats import Format

SOCKET_NAME = "worker.sock"
CONTAINER_SOCKET = f"/airlock/run/{SOCKET_NAME}"
DATA_SOCKET = "/airlock/run/data.sock"
AUDIT_LOG_NAME = "audit.jsonl"
CONTAINER_AUDIT_LOG = f"/airlock/run/{AUDIT_LOG_NAME}"
SECCOMP_DIR = _image.IMAGES_DIR / "seccomp"
TRACER_CAPS = ["SYS_PTRACE", "SETUID", "SETGID"]
_SAFE_NAME = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _container_name(path: Path) -> str:
    name = path.name if path.name and set(path.name) <= _SAFE_NAME else "model"
    return name if not name.startswith(".") else "model" + name


class Sandbox:
    """A sealed container that loads one untrusted model and serves inference from it."""

    def __init__(self, model_path: str | Path | None, policy: Policy | None = None, *,
                 architecture: str | Path | None = None, format: str = "auto",
                 signing: preflight.SigningOptions | None = None) -> None:
        self.policy = policy or Policy()
        self.signing = signing or preflight.SigningOptions()
        self._static: preflight.Pending | None = None
        self._signature: SignatureCheck | None = None
        self._provenance: ProvenanceInfo | None = None
        self.model_path = Path(model_path).expanduser() if model_path is not None else Path()
        self.architecture = Path(architecture).expanduser() if architecture else None
        self.format = format
        self.session = _session.new_session_id()
        self._dirs: _session.SessionDirs | None = None
        self._container: str | None = None
        self._client: WorkerClient | None = None
        self._description: Description | None = None
        self._image: tuple[str, str] | None = None
        self._sampler: Sampler | None = None
        self._data: DataPlane | None = None
        self._wall_timer: threading.Timer | None = None
        self._wall_expired = threading.Event()
        self._closed = False
        self._arch_target = ""
        self._model_target = ""
        self._warm = False  # pre-started by a pool: launched and warmed, no model yet
        self._c = _analysis.Collected(
            policy=self.policy, model=ModelInfo(path=str(self.model_path), format="unknown",
                                                detected_by="", size_bytes=0, files=[]))

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

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def open(self) -> None:
        """Preflight, launch, connect and load. On any failure, tear down and raise."""
        try:
            self._preflight()
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
            elif self._static is not None:  # Ctrl-C: do not wait for the static read
                self._static.cancel()
            self.close()
            raise

    def close(self) -> None:
        """Stop the worker, collect what the host needs, remove the container and directories."""
        if self._closed:
            return
        self._closed = True
        if self._static is not None:  # a failure before the static read was collected
            self._finish_static()
        self._mark(Phase.TEARDOWN)
        start = time.monotonic()
        if self._wall_timer is not None:
            self._wall_timer.cancel()
        if self._sampler is not None:
            self._sampler.sample_once()  # while the container is still there to be measured
        if self._data is not None:
            self._data.close()
        try:
            if self._client is not None and self._container is not None:
                with contextlib.suppress(RpcFailure):
                    self._c.shutdown_requested = True
                    self._client.shutdown(timeout_s=2.0)
                _docker.wait(self._container, timeout_s=5.0)
        finally:
            if self._client is not None:
                self._client.close()
            if self._container is not None:
                self._finish_container(self._container)
            if self._dirs is not None:
                _session.remove_dirs(self._dirs.root)
            self._c.phases["teardown"] = time.monotonic() - start

    def _finish_container(self, container: str) -> None:
        st = _docker.state(container)
        if st is not None and st.running:
            self._c.killed_by_host = True
            _docker.kill(container)
            st = _docker.wait(container, timeout_s=5.0)
        self._c.final_state = st
        if self._sampler is not None:
            self._sampler.stop()
            self._c.samples = list(self._sampler.samples)
            self._c.memory_peak_bytes = self._sampler.memory_peak_bytes
            self._c.pids_limit_hits = self._sampler.pids_limit_hits
            self._c.scratch_full = self._sampler.scratch_used_max >= 0.95
        self._c.output_flood = st is not None and _docker.log_rotated(st)
        self._collect_trace()
        self._collect_audit_log()
        _docker.remove(container)

    # --- the steps -----------------------------------------------------------------------------

    def _mark(self, phase: Phase) -> None:
        self._c.marks.append((time.time(), phase))

    def _preflight(self, static_only: bool = False) -> None:
        start = time.monotonic()
        try:
            self._preflight_steps(static_only)
        finally:
            self._c.phases["preflight"] = time.monotonic() - start

    def _preflight_steps(self, static_only: bool) -> None:
        path = self.model_path
        if not path.exists():
            raise UsageError(f"{path}: no such file or directory", "check the model path")
        if self.architecture is not None and not self.architecture.is_file():
            raise UsageError(f"{self.architecture}: architecture file not found",
                             "pass a Python file that defines build_model()")
        if self.format != "auto":
            try:
                Format(self.format)
            except ValueError as e:
                raise UsageError(f"unknown format {self.format!r}",
                                 f"use one of: auto, {', '.join(f.value for f in Format)}") from e
        self._static = preflight.Pending(path)  # the bounded static read, while we go on
        try:
            ident = preflight.identify(path)
        except OSError as e:
            raise UsageError(f"{path}: cannot be read ({e.strerror})") from e
        fmt, reason, format_error = ident.format, ident.reason, ident.error
        digests = file_digests(path)
        odd = anomalies(path)
        if odd:
            self._c.notes.append(f"the model directory holds {len(odd)} unusual file(s): "
                                 + "; ".join(odd[:5]))
        root = root_digest(digests)
        self._c.model = ModelInfo(
            path=shown(path.resolve()), format=self.format if self.format != "auto" else fmt,
            detected_by=reason, size_bytes=sum(d.size_bytes for d in digests), files=digests,
            root_digest=root, anomalies=odd)
        self._signature, notes = preflight.check_signature(path, root, self.signing)
        self._c.notes += notes
        self._provenance = provenance_for(path, root, files=digests)
        sig = self._signature
        if self.signing.require and (sig is None or not sig.verified):
            self._finish_static()
            why = "missing" if sig is None else f"not verified: {sig.reason}"
            raise IntegrityError(f"a signature is required and it is {why}",
                                 "nothing was run; sign the model or drop --require-signature")
        # Damage that points to tampering is a finding, and the run goes on to record what
        # loading it does; anything else is the caller's mistake.
        if format_error:
            static = self._finish_static()
            assert static is not None
            if not static.tamper and not static.aborted:
                raise UsageError(format_error, "pass an ONNX, TorchScript, torch.save, "
                                 "safetensors or pickle file, or a model directory")
        if static_only:
            self._finish_static()
            return
        if not self._warm:
            self._image = _image.require_current()
        assert self._image is not None
        self._c.sandbox = SandboxInfo(session=self.session, container=f"airlock-{self.session}",
                                      image=self._image[0], image_id=self._image[1],
                                      runtime=self.policy.runtime.value, policy=self.policy)

    def _finish_static(self) -> preflight.StaticResult | None:
        """Wait for the static read (bounded) and put what it found in the collection."""
        pending, self._static = self._static, None
        if pending is None:
            return None
        static = pending.result()
        if static.aborted == "cancelled":  # interrupted: nothing was learned, nothing to say
            return static
        self._c.tamper = static.tamper
        self._c.static_imports = [(i.module, i.name, f" ({i.member})" if i.member else "")
                                  for i in static.imports]
        if static.aborted:
            self._c.notes.append(f"the static pre-flight did not finish: {static.aborted}")
        self._c.integrity = Integrity(
            static=StaticInfo(seconds=round(static.seconds, 6), bounds=static.bounds,
                              aborted=static.aborted,
                              imports=[f"{i.module}.{i.name}" for i in static.imports]),
            signature=self._signature, signature_required=self.signing.require,
            provenance=self._provenance)
        return static

    def _launch(self, warm: bool = False) -> None:
        start = time.monotonic()
        self._mark(Phase.STARTUP)
        with contextlib.suppress(AirlockError):
            _session.reap()
        assert self._image is not None
        self._dirs = dirs = _session.make_dirs(self.session)
        if warm:  # no model yet: an empty directory, filled when the sandbox is claimed
            staging = dirs.root / "model"
            staging.mkdir(mode=0o755)
            model_mount = _docker.BindMount(staging, "/model", read_only=True)
            model_target = ""
        else:
            resolved = self._readable_model(self.model_path.resolve(), dirs)
            model_target = f"/model/{_container_name(resolved)}"
            model_mount = _docker.BindMount(resolved, model_target, read_only=True)
        mounts = [
            model_mount,
            _docker.BindMount(dirs.run, "/airlock/run", read_only=False),
            _docker.BindMount(dirs.trace, "/airlock/trace", read_only=False),
        ]
        if self.architecture is not None:
            arch_copy = dirs.arch / "architecture.py"
            arch_copy.write_bytes(self.architecture.read_bytes())
            mounts.append(_docker.BindMount(dirs.arch, "/airlock/arch", read_only=True))
            self._arch_target = "/airlock/arch/architecture.py"
        self._model_target = model_target
        p = self.policy
        profile = "airlock-traced.json" if p.trace else "airlock-strict.json"
        spec = _docker.ContainerSpec(
            image=self._image[0],
            name=f"airlock-{self.session}",
            command=["--socket", CONTAINER_SOCKET, "--audit-log", CONTAINER_AUDIT_LOG,
                     "--data-socket", DATA_SOCKET, "--threads", str(p.threads),
                     "--max-message-bytes", str(max(p.max_reply_bytes, p.max_request_bytes))],
            labels=_session.owner_labels(self.session, dirs.root),
            runtime=p.runtime.value,
            mounts=mounts,
            environment=_tracer.environment(p.trace),
            memory_bytes=p.memory_bytes,
            nano_cpus=int(p.cpus * 1e9),
            pids=p.effective_pids,
            open_files=p.open_files,
            tmpfs={"/tmp": f"rw,nosuid,nodev,noexec,size={p.tmpfs_bytes},mode=1777"},  # noqa: S108
            seccomp_json=_docker.seccomp_json(SECCOMP_DIR / profile),
            cap_add=TRACER_CAPS if p.trace else ["SETUID", "SETGID"],
        )
        self._container = _docker.create_and_start(spec)
        self._sampler = Sampler(self._container, self._c.marks)
        self._sampler.start(_docker.host_pid(self._container))
        if not warm:
            self._start_wall_timer()
        self._c.phases["launch"] = time.monotonic() - start

    def _start_wall_timer(self) -> None:
        self._wall_timer = threading.Timer(self.policy.wall_timeout_s, self._wall_time_up)
        self._wall_timer.daemon = True
        self._wall_timer.start()

    # --- pre-started sandboxes (see runner.controller.pool) -----------------------------

    @classmethod
    def prestart(cls, policy: Policy, formats: tuple[str, ...]) -> Sandbox:
        """Launch a sandbox with no model, warm the given formats' libraries, and return it,
        ready to be claimed once. It has seen no model; it is never reused after one."""
        sb = cls(None, policy)
        try:
            sb._image = _image.require_current()
            sb._launch(warm=True)
            sb._connect(prepare=formats)
        except BaseException:
            sb.close()
            raise
        sb._warm = True
        return sb

    def _claim(self) -> None:
        """Put the model into the pre-started sandbox's (read-only) /model directory."""
        assert self._dirs is not None
        start = time.monotonic()
        staged = self._stage(self.model_path.resolve(), self._dirs.root / "model")
        self._model_target = f"/model/{staged.name}"
        if self.architecture is not None:
            raise UsageError("a pooled sandbox takes no architecture file",
                             "use runner.Sandbox for state dicts with an architecture")
        if self._sampler is not None:  # idle time in the pool is not part of this run
            del self._sampler.samples[:-1]
        self._c.notes.append("pre-started sandbox: launched and warmed before the model was "
                             "chosen, so startup is the library baseline only")
        self._start_wall_timer()
        self._c.phases["claim"] = time.monotonic() - start

    def _stage(self, path: Path, into: Path) -> Path:
        """Hard links when possible (same filesystem, world-readable); copies otherwise."""
        target = into / _container_name(path)
        files = [path] if path.is_file() else [p for p in path.rglob("*")]
        linkable = (all(_world_readable(p) for p in files)
                    and path.stat().st_dev == into.stat().st_dev)
        if path.is_file():
            if linkable:
                os.link(path, target)
            else:
                shutil.copyfile(path, target)
                target.chmod(0o644)
        else:
            shutil.copytree(path, target, symlinks=True,
                            copy_function=os.link if linkable else shutil.copyfile)
            if not linkable:
                for p in [target, *target.rglob("*")]:
                    if not p.is_symlink():
                        p.chmod(0o755 if p.is_dir() else 0o644)
        return target

    def _readable_model(self, path: Path, dirs: _session.SessionDirs) -> Path:
        """The model's uid must be able to read the files: when some are not world-readable
        (safetensors writes 0600 files), mount a private copy instead, and say so."""
        files = [path] if path.is_file() else list(path.rglob("*"))
        if all(_world_readable(p) for p in files):
            return path
        into = dirs.root / "model"
        into.mkdir(mode=0o755)
        staged = self._stage(path, into)  # not world-readable: always a copy
        self._c.notes.append(f"{path.name} is not readable by the sandbox's uid; a private "
                             "read-only copy was mounted (make it world-readable to avoid this)")
        return staged

    def _wall_time_up(self) -> None:
        self._wall_expired.set()
        if self._container is not None:
            self._c.killed_by_host = True
            _docker.kill(self._container)

    def _connect(self, prepare: tuple[str, ...] = ()) -> None:
        assert self._dirs is not None and self._container is not None
        start = time.monotonic()
        p = self.policy
        socket_path = self._dirs.run / SOCKET_NAME
        self._client = WorkerClient(str(socket_path), p.max_reply_bytes, p.max_request_bytes)
        deadline = start + p.startup_timeout_s
        while True:
            if socket_path.exists():
                try:
                    self._client.health(timeout_s=1.0)
                    break
                except RpcFailure:
                    pass
            st = _docker.state(self._container)
            if st is None or not st.running:
                raise self._diagnose("the worker exited during startup")
            if time.monotonic() > deadline:
                self._c.deadline = "startup"
                raise DeadlineExceeded(
                    f"the worker did not answer within startup_timeout_s={p.startup_timeout_s}",
                    "raise the startup timeout, or check 'airlock doctor'", deadline="startup")
            time.sleep(0.02)
        try:  # library start-up happens here, in the baseline phase, before the model is read
            if prepare:
                for fmt in prepare:
                    self._client.prepare("", fmt, timeout_s=p.load_timeout_s)
            else:
                self._client.prepare(self._model_target, self.format,
                                     timeout_s=p.load_timeout_s)
        except RpcFailure as e:
            raise self._translate(e, "load") from e
        self._c.phases["startup"] = time.monotonic() - start

    def _load(self) -> None:
        assert self._client is not None
        start = time.monotonic()
        self._mark(Phase.LOAD)
        p = self.policy
        try:
            self._client.load(self._model_target, self.format, self._arch_target,
                              timeout_s=p.load_timeout_s)
            self._description = self._client.describe(timeout_s=p.call_timeout_s)
            self._c.signature = _signature(self._description)
        except RpcFailure as e:
            raise self._translate(e, "load") from e
        finally:
            self._c.phases["load"] = time.monotonic() - start
        assert self._dirs is not None
        container = self._container
        assert container is not None
        try:
            data = DataPlane(self._dirs.run / "data.sock", p.shm_bytes, p.max_reply_bytes,
                             p.max_request_bytes)
        except OSError as e:  # no memory for it, an address-space limit: go without
            self._c.notes.append(f"no shared memory for tensors ({e.strerror}): every tensor "
                                 "went inline")
            data = DataPlane(self._dirs.run / "data.sock", 0, p.max_reply_bytes,
                             p.max_request_bytes)
        def peer_ok(pid: int) -> bool:
            if _docker.pid_in_container(pid, container):
                return True
            self._c.notes.append(f"the data socket led to a process outside the sandbox (pid "
                                 f"{pid}): nothing was sent to it; inference went over gRPC")
            return False

        connected = False
        try:
            connected = data.connect(timeout_s=2.0, peer_ok=peer_ok)
        finally:
            if connected:
                self._data = data
            else:
                data.close()  # inference falls back to gRPC

    # --- public calls --------------------------------------------------------------------------

    def preflight_report(self) -> Report:
        """The static pre-flight alone: manifest, static findings, signature and provenance,
        with no container started (no Docker needed)."""
        self._c.static_only = True
        try:
            self._preflight(static_only=True)
        except IntegrityError as e:
            self._c.error = e
        return self.report()

    def describe(self) -> Signature:
        """The model's inputs and outputs, as the worker reported them."""
        return _signature(self._require_open())

    def shared_array(self, shape: tuple[int, ...] | int, dtype: Any = "float32") -> np.ndarray:
        """An uninitialised array (like numpy.empty) in this sandbox's shared memory: fill
        it and pass it to infer, and it reaches the model without a copy. The model can read
        and write it at any time while the sandbox is open, so never trust what it holds after
        a call. Its space is taken until the array is dropped."""
        self._require_open()
        dims = (shape,) if isinstance(shape, int) else tuple(int(d) for d in shape)
        dt = np.dtype(dtype)
        if dt.name not in tensors.ALLOWED_DTYPES or any(d < 0 for d in dims):
            raise UsageError(f"cannot make a shared {dt.name} array of shape {list(dims)}",
                             f"use one of {', '.join(sorted(tensors.ALLOWED_DTYPES))} and sizes "
                             ">= 0")
        if self._data is None or not self._data.connected or not self.policy.shm_bytes:
            raise UsageError("this sandbox has no shared-memory data path",
                             "give it one with Policy(shm_bytes=...) (the default is 256 MiB)")
        arr = self._data.shared_array(dims, dt)
        if arr is None:
            free = max((g[1] for g in self._data.regions.gaps()), default=0)
            raise UsageError(f"no room for a shared array of {math.prod(dims) * dt.itemsize}"
                             f" bytes (the largest free range is {free} bytes)",
                             "drop shared arrays and output views you no longer need, or raise "
                             "Policy.shm_bytes")
        return arr

    def infer(self, inputs: Mapping[str, Any] | np.ndarray, *, copy: bool = True
              ) -> dict[str, np.ndarray]:
        """One inference call. A single array is accepted for a single-input model.

        Outputs are the host's own read-only copies. With copy=False, large outputs are instead
        read-only views of the shared memory, which costs no copy: the model can still
        change them while the sandbox is open (they are frozen once it is closed), and each
        keeps its space until it is dropped. Use it for throughput, never for outputs you check
        and then act on while the sandbox runs."""
        d = self._require_open()
        if not d.can_infer:
            raise UsageError(f"this model cannot run inference: {d.note}",
                             "use scan (load only) or describe")
        feed = self._check_inputs(d, inputs)
        assert self._client is not None
        if "infer" not in self._c.phases:
            self._mark(Phase.INFER)
        start = time.monotonic()
        try:
            if self._data is not None and self._data.connected:
                outputs = self._data.infer(feed, timeout_s=self.policy.call_timeout_s,
                                           copy=copy)
            else:
                outputs = self._client.infer(feed, timeout_s=self.policy.call_timeout_s)
        except RpcFailure as e:
            err = self._translate(e, "infer")
            if not isinstance(err, InputError):
                self._c.error = err
            raise err from e
        finally:
            self._c.phases["infer"] = self._c.phases.get("infer", 0.0) + (
                time.monotonic() - start)
        self._c.calls += 1
        # summarised (hashed) only when a report is made; views only while the caller keeps
        # them (holding them here would keep their shared memory from being used again)
        self._c.last_outputs = outputs if copy else {k: weakref.ref(v) for k, v in
                                                     outputs.items()}
        return outputs

    def report(self) -> Report:
        """What this sandbox did, judged: complete once the sandbox is closed."""
        return _analysis.build(self._c)

    # --- helpers -------------------------------------------------------------------------------

    def _require_open(self) -> Description:
        if self._closed or self._description is None:
            raise UsageError("the sandbox is not open", "use it inside a 'with Sandbox(...)' block")
        return self._description

    @staticmethod
    def _check_inputs(d: Description, inputs: Mapping[str, Any] | np.ndarray
                      ) -> dict[str, np.ndarray]:
        if not isinstance(inputs, Mapping):
            if len(d.inputs) != 1:
                names = [s.name for s in d.inputs]
                raise InputError(f"the model takes {len(d.inputs)} inputs {names}; a single "
                                 "array was given", "pass a mapping of input name to array")
            inputs = {d.inputs[0].name: inputs}
        feed = {str(k): np.asarray(v) for k, v in inputs.items()}
        try:  # the same check the worker makes, made here first for a clear, local error
            tensors.check_inputs(d.inputs, feed)
        except tensors.InputError as e:
            raise InputError(str(e), "see the model's inputs with 'airlock describe'") from e
        return feed

    def _translate(self, e: RpcFailure, call: str) -> AirlockError:
        p = self.policy
        if isinstance(e, WorkerRejected):
            if e.code == "INVALID_ARGUMENT" and call == "infer":
                return InputError(f"the worker rejected the inputs: {e}")
            if e.code == "ABORTED" and call == "infer":
                return SandboxError(f"the model failed during inference: {e}",
                                    "see the report's findings for what it did")
            if call == "load":
                return ModelLoadError(f"the model could not be loaded: {e}",
                                      "check that the file is a complete, supported model")
            return SandboxError(f"the worker refused the {call} call: {e}")
        if isinstance(e, CallDeadline):
            if self._container is not None:
                self._c.killed_by_host = True
                _docker.kill(self._container)
            if self._wall_expired.is_set():
                return self._wall_error()
            self._c.deadline = call if call == "load" else "call"
            limit = p.load_timeout_s if call == "load" else p.call_timeout_s
            name = "load_timeout_s" if call == "load" else "call_timeout_s"
            return DeadlineExceeded(
                f"the {call} call ran past {name}={limit}; the sandbox was killed",
                f"raise --{call if call == 'load' else 'call'}-timeout if the model is just slow",
                deadline=call)
        if isinstance(e, ReplyTooLarge):
            self._c.reply_too_large = True
            return LimitExceeded(
                f"the worker's reply exceeded max_reply_bytes={p.max_reply_bytes}",
                "raise the reply limit only if the model's outputs are really that large",
                limit="reply")
        if isinstance(e, BadReply):
            return SandboxError(f"the worker sent a malformed reply: {e}")
        assert isinstance(e, WorkerUnavailable)
        return self._diagnose(f"the worker stopped answering during {call}")

    def _wall_error(self) -> DeadlineExceeded:
        self._c.deadline = "wall"
        return DeadlineExceeded(
            f"the sandbox ran past wall_timeout_s={self.policy.wall_timeout_s}",
            "raise the wall-time limit", deadline="wall")

    def _diagnose(self, what: str) -> AirlockError:
        """Explain why the worker is gone, from the host's own evidence."""
        assert self._container is not None
        st = _docker.wait(self._container, timeout_s=3.0)
        p = self.policy
        if self._wall_expired.is_set():
            return self._wall_error()
        if st is not None and st.oom_killed:
            return LimitExceeded(
                f"{what}: killed for exceeding the memory limit of "
                f"{p.memory_bytes // (1 << 20)} MiB", "raise --memory if the model needs more",
                limit="memory")
        if self._sampler is not None:
            self._sampler.sample_once()
            if self._sampler.pids_limit_hits:
                return LimitExceeded(
                    f"{what}: the model hit the limit of {p.effective_pids} processes",
                    "a model has no need to start processes; inspect the report",
                    limit="pids")
        tail = untrusted_text(_docker.logs_tail(self._container, lines=8), 600)
        if st is None or st.running:
            self._c.worker_crash = "the worker closed its connection"
            return WorkerCrashed(f"{what}: the worker closed its connection",
                                 "see the log tail in the report", None, tail)
        code = st.exit_code
        self._c.worker_crash = f"the worker exited with code {code}"
        detail = f" ({st.error})" if st.error else ""
        return WorkerCrashed(f"{what}: the worker exited with code {code}{detail}; log: {tail}"
                             if tail else f"{what}: the worker exited with code {code}{detail}",
                             "see the report for the full log tail", code, tail)

    def _collect_audit_log(self) -> None:
        """The worker's self-reported events: hostile data, parsed defensively."""
        if self._dirs is None:
            return
        events, bad = _analysis.parse_audit_log(self._dirs.run / AUDIT_LOG_NAME)
        self._c.worker_events = events
        self._c.worker_events_dropped = bad

    def _collect_trace(self) -> None:
        if self._dirs is None:
            return
        log = self._dirs.trace / "strace.log"
        with contextlib.suppress(OSError), log.open("rb") as f:
            self._c.trace_log = f.read(256 << 20)


def _signature(d: Description) -> Signature:
    return Signature(
        format=d.format,
        inputs=[TensorSpecInfo(name=s.name, dtype=s.dtype, shape=list(s.shape))
                for s in d.inputs],
        outputs=[TensorSpecInfo(name=s.name, dtype=s.dtype, shape=list(s.shape))
                 for s in d.outputs],
        can_infer=d.can_infer, note=d.note)


def _world_readable(p: Path) -> bool:
    mode = p.lstat().st_mode
    if stat.S_ISLNK(mode):
        return True
    need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
    return (mode & need) == need
