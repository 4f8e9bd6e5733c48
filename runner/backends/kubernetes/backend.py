"""The driver side of the Kubernetes backend: the NetworkPolicy and a Job per model through
the API server, each model's outcome read back from the results volume.

The `kubernetes` library is imported only when the backend connects (prepare); a missing
library is one clear line. The API objects are reached through `self._api` (an _Api), which
the unit tests replace with fakes: what they show is the logic, not a cluster.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runner.backends.base import Job, Outcome
from runner.backends.kubernetes import exit_state, outcome_file, policy_overlap
from runner.backends.kubernetes import manifests as m
from runner.backends.kubernetes.settings import settings_from
from runner.batch.evaluation import _safe, error_outcome
from runner.behaviour import probes as _probes
from runner.controller import sessions
from runner.errors import AirlockError, UsageError, untrusted_text
from runner.policy import Policy

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'airlock[kubernetes]'"
REQUEST_TIMEOUT_S = 15
DEFAULT_PARALLELISM = 8
DRIVER_GRACE_S = 300  # past the Job's own deadline, the driver gives up on it
MAX_STEM = 200


@dataclass
class _Api:
    """The API groups the backend uses (the kubernetes client's, or fakes)."""

    client: Any  # the ApiClient, closed by close()
    core: Any  # CoreV1Api: namespaces
    batch: Any  # BatchV1Api: Jobs
    networking: Any  # NetworkingV1Api: the NetworkPolicy
    node: Any  # NodeV1Api: RuntimeClasses


def connect() -> _Api:
    """The API, from the in-cluster service account or ~/.kube/config (KUBECONFIG)."""
    try:
        import kubernetes
    except ImportError:
        raise UsageError(
            "the kubernetes backend needs the kubernetes library", INSTALL_HINT
        ) from None
    from kubernetes.config.config_exception import ConfigException

    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except ConfigException:
        try:
            kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
        except (ConfigException, OSError) as e:
            raise UsageError(
                f"no Kubernetes cluster configured: {e}",
                "run inside the cluster, or set KUBECONFIG / ~/.kube/config",
            ) from e
    c = kubernetes.client.ApiClient()
    k = kubernetes.client
    return _Api(c, k.CoreV1Api(c), k.BatchV1Api(c), k.NetworkingV1Api(c), k.NodeV1Api(c))


def _status(e: BaseException) -> int | None:
    status = getattr(e, "status", None)
    return status if isinstance(status, int) else None


def _api_errors() -> tuple[type[BaseException], ...]:
    try:
        from kubernetes.client.exceptions import ApiException
    except ImportError:  # the fakes of the tests raise OSError-like errors only
        return (OSError,)
    from urllib3.exceptions import HTTPError

    return (ApiException, HTTPError, OSError)


def _reason(e: BaseException) -> str:
    status = _status(e)
    what = getattr(e, "reason", None) or type(e).__name__
    return untrusted_text(f"{status} {what}" if status else f"{what}: {e}", 200)


class KubernetesBackend:
    """One Job per model in `settings.namespace`; at most `parallelism` submitted at once."""

    name = "kubernetes"

    def __init__(
        self, policy: Policy, *, jobs: int | None = None, api: Any = None, **fields: Any
    ) -> None:
        self.settings = settings_from(fields)
        if jobs is not None and jobs < 1:
            raise UsageError(f"--jobs {jobs}: must be at least 1")
        self.policy = policy
        self.session = sessions.new_session_id()
        self._parallelism = jobs or DEFAULT_PARALLELISM
        self._api: _Api | None = api
        self._manifests: dict[int, dict[str, Any]] = {}
        self._pending: dict[str, Job] = {}  # Job name -> job
        self._give_up: dict[str, float] = {}  # Job name -> when the driver stops waiting
        self._done: list[tuple[Job, Outcome]] = []
        self._policy_made = False
        self._cancelled = False
        self._last_poll = 0.0

    @property
    def capacity(self) -> int:
        return self._parallelism

    @property
    def results_dir(self) -> Path:
        """This session's directory on the results volume, as the driver sees it."""
        return self.settings.results_root.expanduser() / self.session

    # --- before anything is submitted ----------------------------------------------------------

    def prepare(self, jobs: Sequence[Job]) -> None:
        if self.settings.dry_run:
            raise UsageError(
                "a dry run creates nothing", "print the manifests with airlock eval --dry-run"
            )
        for job in jobs:
            if job.baselines is not None or job.signing is not None:
                raise UsageError(
                    "--baseline and the signing options are not supported by the kubernetes "
                    "backend yet",
                    "run those models with --backend local",
                )
            self._manifests[job.index] = m.job_manifest(job, self.session, self.settings)
        self._check_results_root()
        api = self._api = self._api or connect()
        ns, rc = self.settings.namespace, self.settings.runtime_class
        self._call(f"reading the namespace {ns}", api.core.read_namespace, ns)
        self._call(f"reading the RuntimeClass {rc}", api.node.read_runtime_class, rc)
        self._check_other_policies()
        self.results_dir.joinpath(m.OUTCOMES_DIR).mkdir(parents=True, exist_ok=True)
        probes = next((j.probes for j in jobs if j.probes is not None), None)
        if probes is not None:
            self._write_probes(probes)
        body = m.network_policy(self.session, self.settings)
        self._call(
            "creating the NetworkPolicy", api.networking.create_namespaced_network_policy, ns, body
        )
        self._policy_made = True

    def _check_other_policies(self) -> None:
        """Refuse a namespace where another NetworkPolicy may open the session's Pods (policies
        are additive: one allowing egress undoes the deny-all)."""
        assert self._api is not None
        ns = self.settings.namespace
        listed = self._call(
            "listing the NetworkPolicies", self._api.networking.list_namespaced_network_policy, ns
        )
        varying = frozenset({m.INDEX_LABEL, m.MODEL_LABEL})
        own = m.network_policy_name(self.session)
        found = policy_overlap.opening(listed, own, m.common_labels(self.session), varying)
        if found:
            raise UsageError(
                f"the namespace {ns} has NetworkPolicies that may allow traffic to or from the "
                f"sandboxes' Pods: {', '.join(found[:5])}",
                "use a namespace of Airlock's own, without other NetworkPolicies "
                "(docs/kubernetes.md)",
            )

    def _check_results_root(self) -> None:
        root = self.settings.results_root.expanduser()
        if not root.is_dir():
            raise UsageError(
                f"the results volume is not visible at {root}",
                "mount the results volume here and pass --results-root",
            )
        probe = root / f".airlock-{self.session}.check"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise UsageError(f"the results volume at {root} is not writable here: {e}") from e

    def _write_probes(self, probes: _probes.ProbeSet) -> None:
        arrays: dict[str, np.ndarray] = dict(probes.inputs)
        arrays[_probes.CATEGORY] = probes.categories
        if probes.labels is not None:
            arrays[_probes.LABEL] = probes.labels
        tmp = self.results_dir / f".{m.PROBES_FILE}.tmp"
        with tmp.open("wb") as f:
            np.savez(f, allow_pickle=False, **arrays)
        tmp.replace(self.results_dir / m.PROBES_FILE)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs, _request_timeout=REQUEST_TIMEOUT_S)
        except _api_errors() as e:
            if _status(e) == 404:
                raise UsageError(
                    f"{what}: not found in the cluster", "see docs/kubernetes.md"
                ) from e
            raise AirlockError(f"{what}: {_reason(e)}", "see docs/kubernetes.md") from e

    # --- running -------------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        if self._cancelled:
            return
        assert self._api is not None, "prepare() first"
        body = self._manifests.get(job.index) or m.job_manifest(job, self.session, self.settings)
        name = body["metadata"]["name"]
        try:  # its own directory, the one its Pod mounts (the kubelet would make it as root)
            self.results_dir.joinpath(m.outcome_dir(job.index)).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            self._done.append((job, self._error(job, f"its results directory: {e}")))
            return
        try:
            self._call(
                f"creating the Job {name}",
                self._api.batch.create_namespaced_job,
                self.settings.namespace,
                body,
            )
        except AirlockError as e:
            self._done.append((job, self._error(job, f"the Job was not created: {e.message}")))
            return
        self._pending[name] = job
        limit = m.deadline_seconds(job.policy, self.settings) + DRIVER_GRACE_S
        self._give_up[name] = time.monotonic() + limit

    def wait(self, timeout: float) -> list[tuple[Job, Outcome]]:
        if self._done:
            done, self._done = self._done, []
            return done
        if not self._pending:
            return []
        pause = self._last_poll + self.settings.poll_s - time.monotonic()
        if pause > 0:
            time.sleep(min(pause, timeout))
            if pause > timeout:
                return []
        self._last_poll = time.monotonic()
        return self._poll()

    def _poll(self) -> list[tuple[Job, Outcome]]:
        assert self._api is not None
        finished: list[tuple[Job, Outcome]] = []
        # the outcome files first: a written outcome is the model's, whatever its Pod did next
        for name, job in list(self._pending.items()):
            path = self.results_dir / m.outcome_name(job.index)
            if path.exists():
                finished.append((job, self._read(job, path, name)))
                self._forget(name)
        if not self._pending:
            return finished
        try:
            listed = self._call(
                "listing the Jobs",
                self._api.batch.list_namespaced_job,
                self.settings.namespace,
                label_selector=f"{m.SESSION_LABEL}={self.session}",
            )
        except AirlockError as e:  # the API server is away: try again at the next poll
            log.warning("%s", e.message)
            listed = None
        states = _by_name(listed)
        now = time.monotonic()
        for name, job in list(self._pending.items()):
            why = self._failed(states.get(name)) if states is not None else None
            if why is None and now > self._give_up.get(name, now + 1):
                why = (
                    "its Job did not end within its deadline and the driver's grace "
                    f"({DRIVER_GRACE_S} s): the driver stopped waiting for it"
                )
            if why is None:
                continue
            path = self.results_dir / m.outcome_name(job.index)  # written just before it ended
            outcome = self._read(job, path, name) if path.exists() else self._error(job, why)
            finished.append((job, outcome))
            self._forget(name)
        return finished

    def _failed(self, state: Any) -> str | None:
        """Why the Job ended without an outcome, or None while it may still give one."""
        if state is None:
            return "its Job is gone from the cluster (deleted by someone else?)"
        status = getattr(state, "status", None)
        conditions = getattr(status, "conditions", None)
        for cond in conditions[:64] if isinstance(conditions, list | tuple) else []:
            if getattr(cond, "status", None) != "True":
                continue
            kind, reason = getattr(cond, "type", None), getattr(cond, "reason", None)
            message = getattr(cond, "message", None)
            reason = reason if isinstance(reason, str) else ""
            message = message if isinstance(message, str) else ""
            if kind == "Failed":
                if reason == "DeadlineExceeded":
                    deadline = m.deadline_seconds(self.policy, self.settings)
                    return f"its Job hit its deadline (activeDeadlineSeconds={deadline})"
                detail = untrusted_text(f"{reason} {message}".strip(), 300)
                return f"its Job failed ({detail or 'no reason given'}) before it wrote an outcome"
            if kind == "Complete":
                return "its Job completed without writing an outcome to the results volume"
        return None

    def _read(self, job: Job, path: Path, name: str) -> Outcome:
        """The outcome written for `job`, its report standing as written only when the
        kubelet confirms the sandbox container's exit (exit_state); before its Job goes."""
        try:
            read = outcome_file.read_file(path, self.settings.max_outcome_bytes)
        except (OSError, ValueError) as e:
            return self._error(
                job, f"its outcome file is unreadable: {untrusted_text(str(e), 300)}"
            )
        outcome = exit_state.confirm(read.outcome(), read.assumed_code, self._observe(name))
        sha = job.sha256 or outcome.result.sha256
        result = outcome.result.model_copy(
            update={"path": str(job.path), "sha256": sha, "report": None, "bom": None}
        )
        # the stem names files under the driver's --out: never a path, whoever wrote the file
        stem = outcome.stem if _plain(outcome.stem) else f"{_safe(job.path.name)}-{sha[:12]}"
        return Outcome(result, stem, outcome.report_json, outcome.bom_json)

    def _observe(self, name: str) -> exit_state.Observed:
        """The sandbox container's state in the Job's Pod, as the kubelet reports it (a bounded
        wait while it has not terminated)."""
        assert self._api is not None
        core = self._api.core

        def pods(label: str) -> Any:
            return core.list_namespaced_pod(
                self.settings.namespace,
                label_selector=f"{label}={name}",
                _request_timeout=REQUEST_TIMEOUT_S,
            )

        interval = min(self.settings.poll_s, 1.0)
        return exit_state.read(pods, self.settings.confirm_wait_s, interval, _api_errors())

    def _error(self, job: Job, message: str) -> Outcome:
        return error_outcome(job.path, job.sha256, f"kubernetes: {message}")

    def _forget(self, name: str) -> None:
        """The model is done: its Job (and Pod) go now, not at its TTL."""
        self._pending.pop(name, None)
        self._give_up.pop(name, None)
        assert self._api is not None
        try:
            self._call(
                f"deleting the Job {name}",
                self._api.batch.delete_namespaced_job,
                name,
                self.settings.namespace,
                propagation_policy="Background",
            )
        except AirlockError as e:
            log.debug("%s (its TTL removes it)", e.message)

    # --- the end -------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Every Job of the session deleted (Foreground: its Pods first), and the policy."""
        self._cancelled = True
        if self._api is None:
            return
        try:
            self._call(
                "deleting the session's Jobs",
                self._api.batch.delete_collection_namespaced_job,
                self.settings.namespace,
                label_selector=f"{m.SESSION_LABEL}={self.session}",
                propagation_policy="Foreground",
            )
        except (AirlockError, UsageError) as e:
            log.warning("%s", e.message)
        self._pending.clear()
        self._delete_policy()

    def _delete_policy(self) -> None:
        if not self._policy_made or self._api is None:
            return
        try:
            self._call(
                "deleting the NetworkPolicy",
                self._api.networking.delete_namespaced_network_policy,
                m.network_policy_name(self.session),
                self.settings.namespace,
            )
        except UsageError:
            pass  # already gone
        except AirlockError as e:
            log.warning("%s", e.message)
        self._policy_made = False

    def close(self) -> None:
        if self._pending:  # closed before every model came back: nothing may stay running
            self.cancel()
        self._delete_policy()
        shutil.rmtree(self.results_dir, ignore_errors=True)
        if self._api is not None:
            closer = getattr(self._api.client, "close", None)
            if closer is not None:
                closer()
            self._api = None


def _by_name(listed: Any) -> dict[str, Any] | None:
    """The listed Jobs by name; None when the answer is not a listing (as if the API were
    away: asked again at the next poll). Never raises."""
    items = getattr(listed, "items", None)
    if not isinstance(items, list | tuple):
        return None
    out = {}
    for j in items:
        name = getattr(getattr(j, "metadata", None), "name", None)
        if isinstance(name, str):
            out[name] = j
    return out


def _plain(stem: str) -> bool:
    """A stem as evaluation._stem makes them: one plain file name, never a path."""
    return (
        0 < len(stem) <= MAX_STEM
        and stem not in (".", "..")
        and all(c.isalnum() or c in "._-@" for c in stem)
    )
