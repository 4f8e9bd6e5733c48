"""The local backend: threads on this machine, each driving a sandbox on the local engine."""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from runner.backends.base import Job, Outcome
from runner.batch import evaluation
from runner.controller import engine as _docker
from runner.controller import framework_images, zygote
from runner.errors import AirlockError
from runner.policy import Policy

log = logging.getLogger(__name__)


class LocalBackend:
    """`jobs` sandboxes at once (default: from CPUs and memory), each driven by a thread."""

    name = "local"

    def __init__(self, policy: Policy, jobs: int | None = None, warm: bool = True) -> None:
        self.warm = warm  # fork each worker from a zygote under runc (runner.controller.zygote)
        self._jobs = jobs or evaluation.default_jobs(policy)
        evaluation.check_jobs(self._jobs, policy)
        self._pool = ThreadPoolExecutor(max_workers=self._jobs, thread_name_prefix="airlock-eval")
        self._pending: dict[Future[Outcome], Job] = {}
        self._lock = threading.Lock()
        self.running = evaluation._Running()

    @property
    def capacity(self) -> int:
        return self._jobs

    def prepare(self, jobs: Sequence[Job]) -> None:
        _docker.client()  # fail fast, once, when the engine is not reachable
        # the framework images the models need: built once, before any sandbox starts
        formats = framework_images.formats_of(j.path for j in jobs)
        framework_images.prepare(formats)
        policies = {j.policy for j in jobs}
        warms = zygote.TORCH_FAMILY.intersection(formats)
        if self.warm and len(jobs) > 1 and warms and all(zygote.usable(p) for p in policies):
            self._start_zygote(jobs[0].policy, zygote.warm_formats([j.path for j in jobs]))

    def _start_zygote(self, policy: Policy, formats: tuple[str, ...]) -> None:
        """One zygote for the batch (runner.controller.zygote): each sandbox is still fresh,
        but its worker is forked warm instead of importing torch and transformers again. A
        zygote that cannot start leaves the batch cold, with a warning."""
        # while the zygote warms, the host imports its BOM validator (jsonschema builds an IRI
        # grammar on import: about 1.5 s of CPU the first report would otherwise wait for)
        threading.Thread(
            target=importlib.import_module, args=("runner.integrity.bom",), daemon=True
        ).start()
        try:
            self.running.zygote = zygote.Zygote(policy, formats=formats)
            self.running.zygote.start()
        except AirlockError as e:
            log.warning("warm starts are off for this batch: %s", e)
            self.running.zygote = None

    def submit(self, job: Job) -> None:
        if self.running.cancelled.is_set():
            return
        fut = self._pool.submit(evaluation.run_job, job, self.running)
        with self._lock:
            self._pending[fut] = job

    def wait(self, timeout: float) -> list[tuple[Job, Outcome]]:
        with self._lock:
            pending = list(self._pending)
        if not pending:
            return []
        done, _ = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
        finished = []
        for fut in done:
            with self._lock:
                job = self._pending.pop(fut)
            finished.append((job, fut.result()))
        return finished

    def cancel(self) -> None:
        """No new models, and the running sandboxes are killed (each worker thread then tears
        its own sandbox down)."""
        self.running.cancelled.set()
        with self._lock:
            for fut in self._pending:
                fut.cancel()
        cancel_running(self.running)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        z, self.running.zygote = self.running.zygote, None
        if z is not None:
            z.close()


def cancel_running(running: evaluation._Running) -> None:
    running.cancelled.set()
    with running.lock:
        boxes = list(running.sandboxes.values())
    for sb in boxes:
        sb.kill()
