"""The Kubernetes objects of one batch, as plain dicts: a deny-all NetworkPolicy selecting the
session's Pods, then one Job per model. Nothing here talks to a cluster or imports the
`kubernetes` library, so --dry-run works without it.

Each Job's Pod holds two containers that share two memory emptyDirs, run and trace:

  sandbox     the sandbox image, started exactly as runner.controller.launch.container_spec
              starts it (the entrypoint runs the worker as uid 10001 under strace, with only
              the tracer's capabilities), the model read-only from the model volume (subPath)
  controller  an image with Airlock installed (runner.backends.kubernetes.pod): attaches to
              the worker over the Unix socket in run, reads the trace, and writes the model's
              outcome to the results volume (atomically), the only container that mounts it

An init container (the sandbox image, no capabilities) makes the trace directory root's only,
as the Docker backend's host does, so that the model's uid cannot touch the tracer's log.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from runner.backends.base import Job
from runner.backends.kubernetes.names import dns_label, label_value
from runner.backends.kubernetes.settings import KubernetesSettings
from runner.controller import launch, sessions, staging
from runner.errors import UsageError
from runner.policy import Policy

SESSION_LABEL = "airlock.session"
INDEX_LABEL = "airlock.model-index"
MODEL_LABEL = "airlock.model"
RESULTS_MOUNT = "/airlock/results"
OUTCOMES_DIR = "outcomes"
PROBES_FILE = "probes.npz"
CONTROLLER_TMP_BYTES = 64 << 20


PROBES_MOUNT = "/airlock/probes.npz"
OUTCOME_FILE = "outcome.json"


def outcome_dir(index: int) -> str:
    """Model `index`'s own directory, relative to the session's results directory: the only
    part of the results volume its Pod can write (no Pod can write another model's outcome)."""
    return f"{OUTCOMES_DIR}/{index}"


def outcome_name(index: int) -> str:
    """The outcome file of model `index`, relative to the session's results directory."""
    return f"{outcome_dir(index)}/{OUTCOME_FILE}"


def common_labels(session: str) -> dict[str, str]:
    return {
        SESSION_LABEL: label_value(session),
        "app.kubernetes.io/name": "airlock",
        "app.kubernetes.io/instance": label_value(f"airlock-{session}"),
        "app.kubernetes.io/component": "sandbox",
        "app.kubernetes.io/managed-by": "airlock",
    }


def network_policy_name(session: str) -> str:
    return dns_label(f"airlock-{session}-deny-all")


def job_name(session: str, job: Job) -> str:
    """airlock-SESSION-INDEX-NAME: a DNS-1123 label (at most 63 characters) whatever the
    model's file name; unique in the batch by session and index."""
    head = f"airlock-{dns_label(session, 20)}-{job.index}"
    room = 63 - len(head) - 1
    tail = dns_label(job.path.name, room, "") if room > 0 else ""
    return f"{head}-{tail}" if tail else head


def model_subpath(path: Path, model_root: Path) -> str:
    """The model's path inside the model volume; a UsageError when it is not under it."""
    root = model_root.expanduser().resolve()
    resolved = path.expanduser().resolve()
    try:
        rel = resolved.relative_to(root)
    except ValueError:
        raise UsageError(
            f"{path}: not under the model volume's root {root}",
            "put the models on the volume, or pass --model-root where it is mounted here",
        ) from None
    if not rel.parts:
        raise UsageError(
            f"{path}: is the model volume's root itself", "name the model's file or directory"
        )
    return PurePosixPath(*rel.parts).as_posix()


def deadline_seconds(policy: Policy, settings: KubernetesSettings) -> int:
    """The Job's activeDeadlineSeconds: the sandbox's wall limit, the worker's start-up, and a
    grace for scheduling, pulling and the controller's pre-flight."""
    return math.ceil(policy.wall_timeout_s + policy.startup_timeout_s) + settings.startup_grace_s


def network_policy(session: str, settings: KubernetesSettings) -> dict[str, Any]:
    """Selects exactly the session's Pods; no ingress and no egress rule: both denied."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": network_policy_name(session),
            "namespace": settings.namespace,
            "labels": common_labels(session),
        },
        "spec": {
            "podSelector": {"matchLabels": {SESSION_LABEL: label_value(session)}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [],
        },
    }


def _seccomp(settings: KubernetesSettings, policy: Policy) -> dict[str, str]:
    if not settings.seccomp_profile:
        return {"type": "RuntimeDefault"}
    profile = "airlock-traced.json" if policy.trace else "airlock-strict.json"
    return {"type": "Localhost", "localhostProfile": f"{settings.seccomp_profile}/{profile}"}


def _memory_dir(name: str, size: int) -> dict[str, Any]:
    return {"name": name, "emptyDir": {"medium": "Memory", "sizeLimit": str(size)}}


def _hardened(caps: list[str], seccomp: dict[str, str], user: int = 0) -> dict[str, Any]:
    return {
        "runAsUser": user,
        "runAsGroup": user,
        "runAsNonRoot": user != 0,
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"], **({"add": caps} if caps else {})},
        "seccompProfile": seccomp,
        "procMount": "Default",
    }


@functools.lru_cache(maxsize=64)  # a Job's three containers ask for the same model
def _format_of(path: Path) -> str | None:
    from runner.controller import framework_images

    formats = framework_images.formats_of([path])
    return formats[0] if formats else None


def sandbox_image(job: Job, settings: KubernetesSettings) -> str:
    """The image the model's sandbox runs: by its format, read from its bytes as the local
    backend does (a model whose format cannot be read gets the default image, and its own
    Pod says why it does not load)."""
    fmt = _format_of(job.path)
    return settings.image_for(fmt) if fmt else settings.image


def _sandbox_container(
    job: Job, settings: KubernetesSettings, model_target: str, subpath: str
) -> dict[str, Any]:
    p = job.policy
    image = sandbox_image(job, settings)
    spec = launch.container_spec(
        p, image, "k8s", _NO_DIRS, []
    )  # the Docker backend's command line, environment and capabilities, word for word
    limits = {
        "cpu": f"{math.ceil(p.cpus * 1000)}m",
        "memory": str(p.memory_bytes),
        "ephemeral-storage": str(p.tmpfs_bytes),
    }
    return {
        "name": "sandbox",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": spec.command,
        "env": [{"name": k, "value": v} for k, v in sorted(spec.environment.items())],
        "resources": {"requests": dict(limits), "limits": limits},
        "securityContext": _hardened(spec.cap_add, _seccomp(settings, p)),
        "volumeMounts": [
            {"name": "model", "mountPath": model_target, "subPath": subpath, "readOnly": True},
            {"name": "run", "mountPath": "/airlock/run"},
            {"name": "trace", "mountPath": "/airlock/trace"},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
        ],
        "terminationMessagePolicy": "File",
    }


def _controller_container(
    job: Job, settings: KubernetesSettings, session: str, model_target: str, subpath: str
) -> dict[str, Any]:
    args = [
        "--index",
        str(job.index),
        "--model",
        model_target,
        "--display-path",
        str(job.path),
        "--sha256",
        job.sha256,
        "--policy",
        job.policy.model_dump_json(),
        "--session",
        session,
        "--image",
        sandbox_image(job, settings),
        "--out",
        f"{RESULTS_MOUNT}/{OUTCOME_FILE}",
    ]
    probes_mount = []
    if job.probes is not None:
        args += ["--probes", PROBES_MOUNT]
        probes_mount = [
            {
                "name": "results",
                "mountPath": PROBES_MOUNT,
                "subPath": f"{session}/{PROBES_FILE}",
                "readOnly": True,
            }
        ]
    res = {"cpu": settings.controller_cpu, "memory": str(settings.controller_memory_bytes)}
    return {
        "name": "controller",
        "image": settings.controller_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-I", "-m", "runner.backends.kubernetes.pod"],
        "args": args,
        "env": [{"name": "TMPDIR", "value": "/tmp"}, {"name": "HOME", "value": "/tmp"}],  # noqa: S108
        "resources": {"requests": dict(res), "limits": res},
        # uid 0 for the root-only trace directory; DAC_OVERRIDE only to reach the worker's
        # socket (owned by the model's uid), as the Docker backend's host controller does
        "securityContext": _hardened(["DAC_OVERRIDE"], {"type": "RuntimeDefault"}),
        "volumeMounts": [
            {"name": "model", "mountPath": model_target, "subPath": subpath, "readOnly": True},
            {"name": "run", "mountPath": "/airlock/run"},
            {"name": "trace", "mountPath": "/airlock/trace", "readOnly": True},
            {
                "name": "results",
                "mountPath": RESULTS_MOUNT,
                "subPath": f"{session}/{outcome_dir(job.index)}",
            },
            *probes_mount,
            {"name": "controller-tmp", "mountPath": "/tmp"},  # noqa: S108
        ],
    }


def _seal_container(job: Job, settings: KubernetesSettings) -> dict[str, Any]:
    """Root owns the emptyDir: chmod needs no capability."""
    return {
        "name": "seal-trace",
        "image": sandbox_image(job, settings),
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/chmod", "0700", "/airlock/trace"],
        "resources": {
            "requests": {"cpu": "10m", "memory": str(16 << 20)},
            "limits": {"cpu": "100m", "memory": str(16 << 20)},
        },
        "securityContext": _hardened([], _seccomp(settings, job.policy)),
        "volumeMounts": [{"name": "trace", "mountPath": "/airlock/trace"}],
    }


def job_manifest(job: Job, session: str, settings: KubernetesSettings) -> dict[str, Any]:
    """The Job that evaluates one model (see the module's docstring)."""
    subpath = model_subpath(job.path, settings.model_root)
    model_target = f"/model/{staging.container_name(Path(subpath))}"
    labels = {
        **common_labels(session),
        INDEX_LABEL: str(job.index),
        MODEL_LABEL: label_value(job.path.name),
    }
    p = job.policy
    pod = {
        "restartPolicy": "Never",
        "runtimeClassName": settings.runtime_class,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "hostNetwork": False,
        "hostPID": False,
        "hostIPC": False,
        "shareProcessNamespace": False,
        "hostname": "sandbox",
        "dnsPolicy": "None",  # lookups go to a closed loopback port, as in the Docker backend
        "dnsConfig": {"nameservers": ["127.0.0.1"]},
        "terminationGracePeriodSeconds": 5,
        "securityContext": {"seccompProfile": _seccomp(settings, p)},
        "initContainers": [_seal_container(job, settings)],
        "containers": [
            _sandbox_container(job, settings, model_target, subpath),
            _controller_container(job, settings, session, model_target, subpath),
        ],
        "volumes": [
            {
                "name": "model",
                "persistentVolumeClaim": {"claimName": settings.model_volume, "readOnly": True},
            },
            {"name": "results", "persistentVolumeClaim": {"claimName": settings.results_volume}},
            _memory_dir("run", sessions.RUN_TMPFS_BYTES),
            _memory_dir("trace", sessions.TRACE_TMPFS_BYTES),
            _memory_dir("tmp", p.tmpfs_bytes),
            _memory_dir("controller-tmp", CONTROLLER_TMP_BYTES),
        ],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(session, job),
            "namespace": settings.namespace,
            "labels": labels,
        },
        "spec": {
            "backoffLimit": 0,
            "completions": 1,
            "parallelism": 1,
            "activeDeadlineSeconds": deadline_seconds(p, settings),
            "ttlSecondsAfterFinished": settings.ttl_seconds,
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
        },
    }


def manifests(
    jobs: Sequence[Job], session: str, settings: KubernetesSettings | None = None
) -> list[dict[str, Any]]:
    """The batch's objects: the NetworkPolicy, then one Job per model, in the jobs' order."""
    settings = settings or KubernetesSettings()
    return [network_policy(session, settings)] + [job_manifest(j, session, settings) for j in jobs]


def dry_run_text(
    jobs: Sequence[Job], session: str, settings: KubernetesSettings | None = None
) -> str:
    """The manifests as one multi-document YAML stream (what --dry-run prints)."""
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's when it is there
    text: str = yaml.dump_all(
        manifests(jobs, session, settings),
        Dumper=dumper,
        sort_keys=False,
        explicit_start=True,
        width=100,
    )
    return text


_NOWHERE = Path("/nonexistent")
_NO_DIRS = sessions.SessionDirs(_NOWHERE, _NOWHERE, _NOWHERE, _NOWHERE)  # labels only
