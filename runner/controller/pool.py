"""A pool of pre-started sandboxes, for when many models are opened one after another.

    with runner.SandboxPool(size=2) as pool:
        with pool.sandbox("model.onnx") as sb:
            sb.infer({"x": x})

Each pooled sandbox is launched, connected and warmed (its libraries imported and run once on a
model of Airlock's) before any model is chosen. Claiming one puts the model in its read-only
/model directory and loads it; a claimed sandbox is used for that one model and torn down, and a
fresh one is started to replace it. A pre-started sandbox has seen no model, and none is ever
reused after a model was loaded into it.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import TracebackType

from runner.controller.sandbox import Sandbox
from runner.errors import AirlockError, UsageError
from runner.policy import Policy
from runner.static import preflight

log = logging.getLogger(__name__)


class SandboxPool:
    def __init__(
        self, policy: Policy | None = None, *, size: int = 1, formats: tuple[str, ...] = ("onnx",)
    ) -> None:
        if size < 1:
            raise UsageError(f"pool size {size}: must be at least 1")
        self.policy = policy or Policy()
        self.size = size
        self.formats = formats
        self._ready: list[Sandbox] = []
        self._cond = threading.Condition()
        self._closed = False
        self._starting = 0
        self._error: AirlockError | None = None
        preflight.keep_spare()  # claims should not wait for a static reader to start
        for _ in range(size):
            self._start_one()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _start_one(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._starting += 1
        threading.Thread(target=self._prestart, name="airlock-pool", daemon=True).start()

    def _prestart(self) -> None:
        sb: Sandbox | None = None
        error: AirlockError | None = None
        try:
            sb = Sandbox.prestart(self.policy, self.formats)
        except AirlockError as e:
            log.debug("pre-starting a sandbox: %s", e.diagnostics())
            error = e
        with self._cond:
            if sb is not None and not self._closed:
                self._ready.append(sb)
                sb = None
            if error is not None:
                self._error = error
        if sb is not None:  # the pool closed while it started
            _close(sb)
        with self._cond:
            self._starting -= 1
            self._cond.notify_all()

    def sandbox(
        self, model_path: str | Path, *, format: str = "auto", timeout_s: float = 120.0
    ) -> Sandbox:
        """A pre-started sandbox bound to this model (open it with `with`). A replacement is
        started at once."""
        with self._cond:
            if self._closed:
                raise UsageError("the pool is closed")
            ok = self._cond.wait_for(
                lambda: self._ready or (self._error and not self._starting), timeout=timeout_s
            )
            if not self._ready:
                if self._error is not None:
                    raise self._error
                raise AirlockError(
                    f"no pre-started sandbox within {timeout_s} s"
                    if not ok
                    else "no pre-started sandbox"
                )
            sb = self._ready.pop(0)
        self._start_one()
        sb.model_path = Path(model_path).expanduser()
        sb.format = format
        return sb

    def close(self) -> None:
        """Remove the idle sandboxes, and wait for those still starting to be removed too."""
        with self._cond:
            if not self._closed:
                preflight.keep_spare(False)
            self._closed = True
            idle, self._ready = self._ready, []
        for sb in idle:
            _close(sb)
        with self._cond:
            self._cond.wait_for(
                lambda: self._starting == 0, timeout=self.policy.startup_timeout_s + 30
            )


def _close(sb: Sandbox) -> None:
    """Close a sandbox no model was given; what fails is only logged (the pool is closing)."""
    try:
        sb.close()
    except AirlockError as e:
        log.debug("closing a pre-started sandbox: %s", e.diagnostics())
