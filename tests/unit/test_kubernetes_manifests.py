"""The Kubernetes backend's manifests, offline: every object validated against the Kubernetes
1.30 schemas and the newest kubernetes-validate ships (strict: no unknown field), and the
hardening asserted field by field. No API server is involved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.backends.base import Job
from runner.backends.kubernetes import KubernetesSettings, dry_run_text
from runner.backends.kubernetes import manifests as m
from runner.backends.kubernetes.manifests import manifests
from runner.backends.kubernetes.names import dns_label, is_dns_label, is_label_value, label_value
from runner.controller import launch
from runner.errors import UsageError
from runner.policy import GIB, MIB, Policy

VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
SESSION = "0123456789ab"
HOSTILE_NAMES = [
    "model.onnx",
    "Ünïcödé-模型.safetensors",
    "A" * 250 + ".pt",  # near the file system's limit; the names alone go to 300 below
    "...dots...and.MORE.dots..",
    "UPPER_CASE Model (1).PKL",
    "-leading-and-trailing-",
    "\u202eevil\u200b.gguf",
    "😀😀😀",
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "models").mkdir()
    (tmp_path / "results").mkdir()
    return tmp_path


def _settings(root: Path, **kw: Any) -> KubernetesSettings:
    return KubernetesSettings(
        image="registry.example.invalid/airlock-sandbox:1",
        controller_image="registry.example.invalid/airlock-controller:1",
        model_root=root / "models",
        results_root=root / "results",
        **kw,
    )


def _job(root: Path, name: str = "model.onnx", index: int = 0, **policy: Any) -> Job:
    path = root / "models" / name
    path.write_bytes(b"not a model")
    return Job(index, path, "ab" * 32, Policy(**policy))


def _pod(job_manifest: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = job_manifest["spec"]["template"]["spec"]
    return pod


def _container(job_manifest: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in _pod(job_manifest)["containers"] if c["name"] == name)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_strictly(root: Path, version: str) -> None:
    jobs = [_job(root, n, i) for i, n in enumerate(HOSTILE_NAMES[:4])]
    jobs.append(Job(9, jobs[0].path, "", Policy(trace=False, cpus=0.5)))
    for doc in manifests(jobs, SESSION, _settings(root)):
        assert kubernetes_validate.validate(doc, version, strict=True)


def test_a_misspelt_field_fails_strict_validation(root: Path) -> None:
    """The check has teeth: strict validation refuses a field Kubernetes does not have."""
    doc = m.job_manifest(_job(root), SESSION, _settings(root))
    _pod(doc)["automountServiceAccountTokens"] = False
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, VERSIONS[0], strict=True)


def test_network_policy_denies_both_directions_for_exactly_the_session(root: Path) -> None:
    policy = manifests([_job(root)], SESSION, _settings(root))[0]
    assert policy["kind"] == "NetworkPolicy"
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {m.SESSION_LABEL: SESSION}}
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [] and spec["egress"] == []
    assert policy["metadata"]["namespace"] == "airlock"


def test_job_hardening_field_by_field(root: Path) -> None:
    policy: dict[str, Any] = dict(
        cpus=1.5, memory_bytes=GIB, tmpfs_bytes=32 * MIB, wall_timeout_s=300.0
    )
    job = _job(root, **policy)
    doc = m.job_manifest(job, SESSION, _settings(root))
    spec, pod = doc["spec"], _pod(doc)
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 300 + 60 + 120
    assert spec["ttlSecondsAfterFinished"] == 3600
    assert pod["runtimeClassName"] == "gvisor"
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    for host in ("hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace"):
        assert pod[host] is False
    assert pod["dnsPolicy"] == "None" and pod["dnsConfig"] == {"nameservers": ["127.0.0.1"]}
    for c in pod["containers"] + pod["initContainers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["privileged"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert c["resources"]["requests"] == c["resources"]["limits"] or c["name"] == "seal-trace"

    sandbox = _container(doc, "sandbox")
    limits = sandbox["resources"]["limits"]
    assert sandbox["resources"]["requests"] == limits
    assert limits == {"cpu": "1500m", "memory": str(GIB), "ephemeral-storage": str(32 * MIB)}
    sc = sandbox["securityContext"]
    assert sc["capabilities"]["add"] == launch.TRACER_CAPS
    assert sc["seccompProfile"] == {
        "type": "Localhost",
        "localhostProfile": "airlock/airlock-traced.json",
    }
    # the worker's command line and environment are the Docker backend's
    docker = launch.container_spec(job.policy, "x", "s", m._NO_DIRS, [])
    assert sandbox["args"] == docker.command
    assert {e["name"]: e["value"] for e in sandbox["env"]} == docker.environment
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tmp"]["emptyDir"] == {"medium": "Memory", "sizeLimit": str(32 * MIB)}
    assert volumes["model"]["persistentVolumeClaim"] == {
        "claimName": "airlock-models",
        "readOnly": True,
    }
    mounts = {v["name"]: v for v in sandbox["volumeMounts"]}
    assert mounts["model"] == {
        "name": "model",
        "mountPath": "/model/model.onnx",
        "subPath": "model.onnx",
        "readOnly": True,
    }
    assert mounts["tmp"]["mountPath"] == "/tmp"
    assert "results" not in mounts  # only the controller writes outcomes


def test_untraced_policy_adds_only_setuid_setgid(root: Path) -> None:
    doc = m.job_manifest(_job(root, trace=False), SESSION, _settings(root))
    sc = _container(doc, "sandbox")["securityContext"]
    assert sc["capabilities"]["add"] == ["SETUID", "SETGID"]
    assert sc["seccompProfile"]["localhostProfile"] == "airlock/airlock-strict.json"


def test_controller_writes_results_and_reads_trace_only(root: Path) -> None:
    doc = m.job_manifest(_job(root, index=3), SESSION, _settings(root))
    ctl = _container(doc, "controller")
    mounts = {v["name"]: v for v in ctl["volumeMounts"]}
    assert mounts["trace"]["readOnly"] is True
    assert mounts["model"]["readOnly"] is True
    # its own model's directory only: no Pod can write another model's outcome
    writable = [v for v in ctl["volumeMounts"] if v["name"] == "results" and not v.get("readOnly")]
    assert [v["subPath"] for v in writable] == [f"{SESSION}/outcomes/3"]
    assert ctl["args"][ctl["args"].index("--out") + 1] == "/airlock/results/outcome.json"
    assert m.outcome_name(3) == "outcomes/3/outcome.json"


def test_the_probes_are_mounted_read_only(root: Path) -> None:
    import numpy as np

    from runner.behaviour.probes import from_arrays

    job = _job(root, index=1)
    job = type(job)(**{**job.__dict__, "probes": from_arrays({"x": np.zeros((1, 2), "f4")})})
    ctl = _container(m.job_manifest(job, SESSION, _settings(root)), "controller")
    probes = [v for v in ctl["volumeMounts"] if v["mountPath"] == m.PROBES_MOUNT]
    assert probes == [
        {
            "name": "results",
            "mountPath": m.PROBES_MOUNT,
            "subPath": f"{SESSION}/probes.npz",
            "readOnly": True,
        }
    ]
    assert ctl["args"][ctl["args"].index("--probes") + 1] == m.PROBES_MOUNT
    assert ctl["securityContext"]["capabilities"]["add"] == ["DAC_OVERRIDE"]


def test_labels_name_the_session_and_model(root: Path) -> None:
    for i, name in enumerate(HOSTILE_NAMES):
        doc = m.job_manifest(_job(root, name, i), SESSION, _settings(root))
        for labels in (doc["metadata"]["labels"], doc["spec"]["template"]["metadata"]["labels"]):
            assert labels[m.SESSION_LABEL] == SESSION
            assert labels[m.INDEX_LABEL] == str(i)
            assert labels["app.kubernetes.io/managed-by"] == "airlock"
            assert all(is_label_value(v) for v in labels.values()), labels
        assert is_dns_label(doc["metadata"]["name"]), doc["metadata"]["name"]
        assert doc["metadata"]["name"].startswith(f"airlock-{SESSION}-{i}")


def test_names_are_unique_in_a_batch(root: Path) -> None:
    jobs = [_job(root, n, i) for i, n in enumerate(HOSTILE_NAMES)]
    names = [d["metadata"]["name"] for d in manifests(jobs, SESSION, _settings(root))[1:]]
    assert len(set(names)) == len(names)


def test_a_model_outside_the_model_root_is_a_usage_error(root: Path) -> None:
    outside = root / "elsewhere.onnx"
    outside.write_bytes(b"x")
    with pytest.raises(UsageError, match="not under the model volume"):
        m.job_manifest(Job(0, outside, "", Policy()), SESSION, _settings(root))
    link = root / "models" / "link.onnx"
    link.symlink_to(outside)  # a symlink out of the volume is outside it too
    with pytest.raises(UsageError, match="not under the model volume"):
        m.job_manifest(Job(0, link, "", Policy()), SESSION, _settings(root))


def test_a_model_in_a_subdirectory_maps_to_its_subpath(root: Path) -> None:
    (root / "models" / "org" / "repo").mkdir(parents=True)
    job = Job(0, root / "models" / "org" / "repo", "", Policy())
    mounts = _container(m.job_manifest(job, SESSION, _settings(root)), "sandbox")["volumeMounts"]
    assert mounts[0]["subPath"] == "org/repo" and mounts[0]["mountPath"] == "/model/repo"


def test_dry_run_text_is_the_policy_then_one_job_per_model(root: Path) -> None:
    jobs = [_job(root, n, i) for i, n in enumerate(HOSTILE_NAMES[:3])]
    text = dry_run_text(jobs, SESSION, _settings(root))
    docs = list(yaml.safe_load_all(text))
    assert [d["kind"] for d in docs] == ["NetworkPolicy", "Job", "Job", "Job"]
    assert docs == manifests(jobs, SESSION, _settings(root))
    assert "&id" not in text  # no YAML anchors: every document stands alone


def test_default_image_is_the_local_sandbox_tag(root: Path) -> None:
    from runner.controller import images

    assert KubernetesSettings().image == images.current_tag()


@pytest.mark.parametrize("bad", [{"namespace": "Not_Valid"}, {"runtime_class": ""}])
def test_invalid_settings_are_refused(bad: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="DNS-1123"):
        KubernetesSettings(**bad)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400), st.integers(min_value=1, max_value=63))
def test_dns_label_is_always_valid(text: str, limit: int) -> None:
    out = dns_label(text, limit)
    assert is_dns_label(out) and len(out) <= limit


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_label_value_is_always_valid(text: str) -> None:
    assert is_label_value(label_value(text))


@settings(max_examples=100, deadline=None)
@given(
    st.text(min_size=1, max_size=300).filter(lambda s: "/" not in s and "\0" not in s),
    st.integers(min_value=0, max_value=10**6),
)
def test_job_names_are_valid_whatever_the_file_name(name: str, index: int) -> None:
    job = Job(index, Path("/models") / name, "", Policy())
    out = m.job_name(SESSION, job)
    assert is_dns_label(out) and out.startswith(f"airlock-{SESSION}-{index}")


def test_plan_discovers_the_models_and_creates_nothing(root: Path) -> None:
    """What --dry-run prints: discovery as in a real run, no cluster, no kubernetes library."""
    import sys

    from examples.make_examples import tiny_onnx
    from runner.backends.kubernetes import plan

    (root / "models" / "a.onnx").write_bytes(tiny_onnx())
    (root / "models" / "b.onnx").write_bytes(tiny_onnx())
    blocked = dict.fromkeys(("kubernetes", "kubernetes.client", "kubernetes.config"))
    saved = {k: sys.modules.get(k) for k in blocked}
    sys.modules.update(blocked)  # type: ignore[arg-type]  # importing it now fails
    try:
        text = plan(
            [root / "models"],
            session=SESSION,
            model_root=root / "models",
            image="registry.example.invalid/sandbox:1",
        )
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    docs = list(yaml.safe_load_all(text))
    assert [d["kind"] for d in docs] == ["NetworkPolicy", "Job", "Job"]
    subpaths = sorted(_container(d, "sandbox")["volumeMounts"][0]["subPath"] for d in docs[1:])
    assert subpaths == ["a.onnx", "b.onnx"]
    with pytest.raises(UsageError, match="not under the model volume"):
        plan([root / "models"], model_root=root / "results")
