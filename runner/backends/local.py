"""The local backend: threads on this machine, each driving a sandbox on the local engine."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from runner.backends.base import Job, Outcome
from runner.batch import evaluation
from runner.controller import engine as _docker
from runner.controller import framework_images
from runner.policy import Policy


class LocalBackend:
    """`jobs` sandboxes at once (default: from CPUs and memory), each driven by a thread."""

    name = "local"

    def __init__(self, policy: Policy, jobs: int | None = None) -> None:
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
        framework_images.prepare(framework_images.formats_of(j.path for j in jobs))

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


def cancel_running(running: evaluation._Running) -> None:
    running.cancelled.set()
    with running.lock:
        boxes = list(running.sandboxes.values())
    for sb in boxes:
        sb.kill()
