"""The Ray backend: one Ray task per model, each evaluating it in a fresh sandbox on its node's
own Docker engine and returning the outcome as a value; the driver writes everything.

Scheduling is Ray's: a task asks for the sandbox's CPUs and memory and one `airlock_sandbox`
slot, and a label selector sends it only to nodes with a Docker engine and the policy's runtime
(see runner.backends.ray_nodes). Ray itself is imported only here (an optional extra)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from runner.backends import ray_nodes, ray_tasks
from runner.backends.base import Job, Outcome
from runner.batch import evaluation
from runner.controller import framework_images
from runner.errors import AirlockError, UsageError
from runner.policy import Policy

log = logging.getLogger(__name__)

MAX_RETRIES = 2  # a task whose worker or node died runs again this many times at most
SOFT_CANCEL_SECONDS = 30.0  # how long cancelled tasks get to tear their sandboxes down
CHECK_SECONDS = 1800.0  # a node's check may build a framework image (minutes)
REAP_SECONDS = 60.0


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError(
            "the ray backend needs Ray: pip install 'airlock[ray]'", "or pass --backend local"
        ) from None
    return ray


class RayBackend:
    """Models as tasks on the Ray cluster at `address` (auto, HOST:PORT, ray://HOST:PORT;
    default RAY_ADDRESS, else auto); `jobs` tasks at once, default every sandbox slot."""

    name = "ray"

    def __init__(self, policy: Policy, address: str | None = None, jobs: int | None = None):
        if jobs is not None and jobs < 1:
            raise UsageError(f"--jobs {jobs}: must be at least 1")
        self._ray = _ray()
        self.policy = policy
        self.address = ray_nodes.resolve_address(address)
        self.request = ray_nodes.Request.of(policy)
        self._jobs = jobs
        self._slots = 1
        self._connected = False
        self._cancelled = False
        self._pending: dict[Any, Job] = {}
        self._nodes: list[str] = []  # the eligible nodes at prepare
        self.placements: dict[int, str] = {}  # job index -> the node its outcome came from
        self._evaluate: Any = None
        self._lost = False  # a task failed in Ray (a worker or node died)

    @property
    def capacity(self) -> int:
        return self._jobs or self._slots

    # --- before the batch --------------------------------------------------------------------

    def _connect(self) -> None:
        ray = self._ray
        if ray.is_initialized():
            return  # the caller's own connection: used, and left to the caller
        ray_nodes.check_reachable(self.address)
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            ray.init(
                address=self.address,
                log_to_driver=False,
                include_dashboard=False,
                logging_level=logging.WARNING,
                configure_logging=False,
            )
        except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
            said = " ".join(str(e).split(" Traceback ")[0].split())[:200].rstrip(": ")  # no trace
            raise UsageError(
                f"no Ray cluster at {self.address}: {said}",
                ray_nodes.START_HINT,
            ) from None
        self._connected = True

    def prepare(self, jobs: Sequence[Job]) -> None:
        self._connect()
        ray = self._ray
        nodes = ray_nodes.eligible(ray.nodes(), self.request, self.address)
        self._slots = ray_nodes.slots(nodes, self.request)
        self._nodes = [str(n["NodeID"]) for n in nodes]
        paths = [j.path for j in jobs]
        self._check_nodes(nodes, framework_images.formats_of(paths), ray_tasks.readable(paths))
        self._evaluate = ray.remote(ray_tasks.evaluate).options(
            num_cpus=self.request.cpus,
            memory=self.request.memory,
            resources={ray_nodes.SANDBOX_RESOURCE: 1},
            label_selector=dict(self.request.labels),
            scheduling_strategy="SPREAD",
            max_retries=MAX_RETRIES,
            retry_exceptions=False,
        )

    def _on_node(self, fn: Any, node: str) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return self._ray.remote(fn).options(
            num_cpus=0,
            max_retries=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
        )

    def _check_nodes(self, nodes: list[Any], formats: list[str], paths: list[str]) -> None:
        """One small task per eligible node: its engine, runtime and images (see check_node);
        an AirlockError naming each node that failed."""
        ray = self._ray
        refs = {
            self._on_node(ray_tasks.check_node, str(n["NodeID"])).remote(
                self.policy.runtime.value, formats, paths
            ): n
            for n in nodes
        }
        ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=CHECK_SECONDS)
        problems = []
        for ref in ready:
            try:
                said = ray.get(ref)
            except Exception as e:  # the node died under its check
                said = ray_nodes.failure_line(e, 0)
            if said:
                problems.append(f"{ray_nodes.describe_node(refs[ref])}: {said}")
        for ref in late:
            ray.cancel(ref, force=True)
            problems.append(f"{ray_nodes.describe_node(refs[ref])}: its check did not finish")
        if problems:
            raise AirlockError(
                f"{len(problems)} Ray node(s) cannot run sandboxes: " + "; ".join(problems),
                "run 'airlock doctor' and 'airlock image build' on each node",
            )

    # --- the batch ---------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        if self._cancelled:
            return
        self._pending[self._evaluate.remote(job)] = job

    def wait(self, timeout: float) -> list[tuple[Job, Outcome]]:
        ray = self._ray
        refs = list(self._pending)
        if not refs:
            return []
        ready, rest = ray.wait(refs, num_returns=1, timeout=timeout, fetch_local=True)
        if ready and rest:
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0, fetch_local=True)
            ready += more
        return [self._finished(ref) for ref in ready]

    def _finished(self, ref: Any) -> tuple[Job, Outcome]:
        job = self._pending.pop(ref)
        try:
            node, outcome = self._ray.get(ref)
        except Exception as e:  # Ray's system failures, past their retries
            self._lost = True  # its sandbox may be left on a node: close() reaps
            line = ray_nodes.failure_line(e, MAX_RETRIES, self._gone())
            log.debug("model %s: %s", job.path, line)
            return job, evaluation.error_outcome(job.path, job.sha256, line)
        self.placements[job.index] = node
        log.debug("model %s ran on Ray node %s", job.path, node)
        return job, outcome

    def _gone(self) -> list[str]:
        """The eligible nodes of prepare no longer alive."""
        try:
            up = {str(n["NodeID"]) for n in ray_nodes.alive(self._ray.nodes())}
        except Exception:  # asking the cluster failed too: no names, the line says the rest
            return []
        return [n for n in self._nodes if n not in up]

    # --- stopping ----------------------------------------------------------------------------

    def cancel(self) -> None:
        """Soft cancel (each task's own teardown runs), a bounded wait, force-cancel what is
        left, then Airlock's reaper on every alive node and on this machine."""
        if self._cancelled:
            return
        self._cancelled = True
        if not self._ray.is_initialized():  # never connected: only this machine to clean
            self._reap_here()
            return
        ray = self._ray
        refs = list(self._pending)
        self._pending.clear()
        for ref in refs:
            _quietly(ray.cancel, ref, force=False)
        if refs:
            _, left = ray.wait(refs, num_returns=len(refs), timeout=SOFT_CANCEL_SECONDS)
            for ref in left:
                _quietly(ray.cancel, ref, force=True)
            if left:
                ray.wait(left, num_returns=len(left), timeout=10)
        self._reap_nodes()
        self._reap_here()

    def _reap_nodes(self) -> None:
        ray = self._ray
        try:
            nodes = [str(n["NodeID"]) for n in ray_nodes.alive(ray.nodes())]
            refs = [self._on_node(ray_tasks.reap_node, n).remote() for n in nodes]
            ready, late = ray.wait(refs, num_returns=len(refs), timeout=REAP_SECONDS)
            for ref in ready:
                log.debug("reaper: %s", _quietly(ray.get, ref))
            if late:
                log.warning("the reaper did not finish on %d Ray node(s)", len(late))
        except Exception as e:  # the cluster is going away: this machine's reaper still runs
            log.warning("could not run the reaper on the Ray nodes: %s", e)

    @staticmethod
    def _reap_here() -> None:
        log.debug("reaper here: %s", ray_tasks.reap_node())

    def close(self) -> None:
        if self._lost and not self._cancelled:
            self._reap_nodes()  # a dead worker's sandbox outlives it: its node's reaper
            self._reap_here()
        if self._connected:
            self._connected = False
            _quietly(self._ray.shutdown)


def _quietly(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # cancelling or reading a task that is already gone
        log.debug("%s: %r", getattr(fn, "__name__", fn), e)
        return None
