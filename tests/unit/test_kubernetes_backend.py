"""The Kubernetes backend's driver side against faked API objects (there is no API server on
this machine): what is created, polled, read back and deleted. This is the logic, not
containment: nothing here runs a Pod."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kubernetes_validate
import pytest
from kubernetes.client.exceptions import ApiException

from runner.backends.base import Job, Outcome
from runner.backends.kubernetes import KubernetesBackend, outcome_file
from runner.backends.kubernetes import manifests as m
from runner.backends.kubernetes.backend import _Api, connect
from runner.batch import evaluation
from runner.batch.evaluation import EvalResult
from runner.errors import UsageError
from runner.policy import Policy
from runner.rules.catalog import Verdict
from tests.unit.test_kubernetes_exit_state import _clean_outcome, _ended


class FakeCluster:
    """The API groups the backend calls, recording every call; `on_create` plays the Pod."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.conditions: dict[str, list[Any]] = {}
        self.missing: set[str] = set()
        self.pods: dict[str, list[Any]] = {}  # Job name -> its Pods (default: ended with 0)
        self.on_create: Any = None
        self.closed = False
        self.policies: Any = SimpleNamespace(items=[])  # what listing NetworkPolicies answers

    def _record(self, name: str, *args: Any, **kw: Any) -> None:
        kw.pop("_request_timeout", None)
        self.calls.append((name, args, kw))

    # core / node
    def read_namespace(self, name: str, **kw: Any) -> Any:
        self._record("read_namespace", name, **kw)
        if "namespace" in self.missing:
            raise ApiException(status=404, reason="Not Found")
        return SimpleNamespace()

    def list_namespaced_pod(self, ns: str, **kw: Any) -> Any:
        self._record("list_pods", ns, **kw)
        label, _, job = kw["label_selector"].partition("=")
        if label != "batch.kubernetes.io/job-name":
            return SimpleNamespace(items=[])
        return SimpleNamespace(items=self.pods.get(job, [_ended(0)]))

    def read_runtime_class(self, name: str, **kw: Any) -> Any:
        self._record("read_runtime_class", name, **kw)
        if "runtimeclass" in self.missing:
            raise ApiException(status=404, reason="Not Found")
        return SimpleNamespace()

    # networking
    def create_namespaced_network_policy(self, ns: str, body: dict[str, Any], **kw: Any) -> None:
        self._record("create_np", ns, body, **kw)

    def list_namespaced_network_policy(self, ns: str, **kw: Any) -> Any:
        self._record("list_np", ns, **kw)
        return self.policies

    def delete_namespaced_network_policy(self, name: str, ns: str, **kw: Any) -> None:
        self._record("delete_np", name, ns, **kw)

    # batch
    def create_namespaced_job(self, ns: str, body: dict[str, Any], **kw: Any) -> None:
        self._record("create_job", ns, body, **kw)
        self.jobs[body["metadata"]["name"]] = body
        if self.on_create:
            self.on_create(body)

    def list_namespaced_job(self, ns: str, **kw: Any) -> Any:
        self._record("list_jobs", ns, **kw)
        items = [
            SimpleNamespace(
                metadata=SimpleNamespace(name=n),
                status=SimpleNamespace(conditions=self.conditions.get(n)),
            )
            for n in self.jobs
        ]
        return SimpleNamespace(items=items)

    def delete_namespaced_job(self, name: str, ns: str, **kw: Any) -> None:
        self._record("delete_job", name, ns, **kw)
        self.jobs.pop(name, None)

    def delete_collection_namespaced_job(self, ns: str, **kw: Any) -> None:
        self._record("delete_jobs", ns, **kw)
        self.jobs.clear()

    def close(self) -> None:
        self.closed = True

    def api(self) -> _Api:
        return _Api(self, self, self, self, self)

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [(a, k) for n, a, k in self.calls if n == name]


def _cond(type_: str, reason: str = "", message: str = "") -> Any:
    return SimpleNamespace(type=type_, status="True", reason=reason, message=message)


@pytest.fixture
def env(tmp_path: Path) -> tuple[FakeCluster, KubernetesBackend, list[Job]]:
    models, results = tmp_path / "models", tmp_path / "results"
    models.mkdir()
    results.mkdir()
    jobs = []
    for i in range(3):
        p = models / f"m{i}.onnx"
        p.write_bytes(b"x")
        jobs.append(Job(i, p, f"{i:064x}", Policy(wall_timeout_s=30)))
    fake = FakeCluster()
    backend = KubernetesBackend(
        Policy(wall_timeout_s=30),
        api=fake.api(),
        model_root=models,
        results_root=results,
        poll_s=0.01,
        image="registry.example.invalid/sandbox:1",
    )
    return fake, backend, jobs


def _outcome(job: Job, verdict: Verdict = Verdict.CLEAN) -> Outcome:
    result = EvalResult(
        path=f"/model/{job.path.name}",  # the Pod's path: the driver puts its own back
        sha256=job.sha256,
        format="onnx",
        verdict=verdict,
        findings={},
        probed=False,
        seconds=1.0,
    )
    return Outcome(result, f"{job.path.name}-{job.sha256[:12]}", '{"report": 1}\n', None)


def _drain(backend: KubernetesBackend, want: int) -> list[tuple[Job, Outcome]]:
    got: list[tuple[Job, Outcome]] = []
    for _ in range(200):
        got += backend.wait(0.05)
        if len(got) >= want:
            break
    return got


def test_prepare_checks_the_cluster_and_makes_the_policy(env: Any) -> None:
    fake, backend, jobs = env
    backend.prepare(jobs)
    assert fake.named("read_namespace") == [(("airlock",), {})]
    assert fake.named("read_runtime_class") == [(("gvisor",), {})]
    [(args, _)] = fake.named("create_np")
    assert args[0] == "airlock"
    assert kubernetes_validate.validate(args[1], "1.30", strict=True)
    assert args[1]["spec"]["podSelector"]["matchLabels"] == {m.SESSION_LABEL: backend.session}
    assert (backend.results_dir / m.OUTCOMES_DIR).is_dir()


@pytest.mark.parametrize(
    ("missing", "what"), [("namespace", "namespace"), ("runtimeclass", "RuntimeClass")]
)
def test_a_missing_namespace_or_runtime_class_is_a_usage_error(
    env: Any, missing: str, what: str
) -> None:
    fake, backend, jobs = env
    fake.missing.add(missing)
    with pytest.raises(UsageError, match=what):
        backend.prepare(jobs)
    assert not fake.named("create_np")


def test_results_root_must_be_visible(env: Any, tmp_path: Path) -> None:
    fake, _, jobs = env
    backend = KubernetesBackend(
        Policy(), api=fake.api(), model_root=tmp_path / "models", results_root=tmp_path / "no"
    )
    with pytest.raises(UsageError, match="results volume is not visible"):
        backend.prepare(jobs)


def test_outcomes_come_back_from_the_results_volume(env: Any) -> None:
    fake, backend, jobs = env
    backend.prepare(jobs)

    def pod(body: dict[str, Any]) -> None:  # the Pod of model 0 writes its outcome
        index = int(body["metadata"]["labels"][m.INDEX_LABEL])
        if index == 0:
            path = backend.results_dir / m.outcome_name(0)
            outcome_file.write_atomic(path, _outcome(jobs[0]), assumed_exit=0)

    fake.on_create = pod
    for job in jobs:
        backend.submit(job)
    names = list(fake.jobs)
    fake.conditions[names[1]] = [_cond("Failed", "DeadlineExceeded", "Job was active longer")]
    fake.conditions[names[2]] = [_cond("Complete")]
    got = {job.index: out for job, out in _drain(backend, 3)}
    assert got[0].result.verdict is Verdict.CLEAN
    assert got[0].result.path == str(jobs[0].path)
    assert got[0].report_json == '{"report": 1}\n'
    assert got[1].result.verdict is Verdict.ERROR
    assert "deadline (activeDeadlineSeconds=" in (got[1].result.error or "")
    assert got[2].result.verdict is Verdict.ERROR
    assert "without writing an outcome" in (got[2].result.error or "")
    assert {a[0] for a, _ in fake.named("delete_job")} == set(names)  # each Job goes at once
    assert all(k["propagation_policy"] == "Background" for _, k in fake.named("delete_job"))
    selectors = {k["label_selector"] for _, k in fake.named("list_jobs")}
    assert selectors == {f"{m.SESSION_LABEL}={backend.session}"}


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "not JSON"),
        (b'{"version": 2, "result": {}}', "validation"),
        (b"x" * (2 << 20), "larger"),
        (b'{"result": {}, "stem": "a"}', "version"),  # a version-1 file is not an outcome
    ],
)
def test_an_unreadable_outcome_is_that_models_error_line(
    env: Any, tmp_path: Path, content: bytes, why: str
) -> None:
    fake, _, jobs = env
    backend = KubernetesBackend(
        Policy(),
        api=fake.api(),
        model_root=tmp_path / "models",
        results_root=tmp_path / "results",
        poll_s=0.01,
        max_outcome_bytes=1 << 20,
    )
    backend.prepare(jobs[:1])
    backend.submit(jobs[0])
    (backend.results_dir / m.outcome_name(0)).write_bytes(content)
    [(job, out)] = _drain(backend, 1)
    assert out.result.verdict is Verdict.ERROR and why in (out.result.error or "")
    assert out.result.path == str(job.path)


def test_the_kubelets_exit_state_is_read_before_the_job_goes(env: Any) -> None:
    fake, backend, jobs = env
    backend.prepare(jobs[:1])
    backend.submit(jobs[0])
    [name] = list(fake.jobs)
    outcome_file.write_atomic(
        backend.results_dir / m.outcome_name(0), _clean_outcome(), assumed_exit=0
    )
    [(_, out)] = _drain(backend, 1)
    assert out.result.verdict is Verdict.CLEAN and out.result.path == str(jobs[0].path)
    order = [n for n, _, _ in fake.calls if n in ("list_pods", "delete_job")]
    assert order == ["list_pods", "delete_job"]
    [(args, kw)] = fake.named("list_pods")
    assert args == ("airlock",)
    assert kw == {"label_selector": f"batch.kubernetes.io/job-name={name}"}


@pytest.mark.parametrize(
    ("pods", "assumed", "why"),
    [
        ([_ended(137, "OOMKilled")], 137, "OOM"),
        ([_ended(1, "Error")], 0, "exit code 1"),
        ([], 0, "no Pod"),
        ([_ended(0), _ended(0)], 0, "2 Pods"),
        ([_ended(0)], None, "no exit record"),
    ],
)
def test_an_unconfirmed_exit_keeps_the_drivers_line_from_clean(
    env: Any, tmp_path: Path, pods: list[Any], assumed: int | None, why: str
) -> None:
    fake, backend, jobs = env
    fake.on_create = lambda body: outcome_file.write_atomic(
        backend.results_dir / m.outcome_name(0), _clean_outcome(), assumed_exit=assumed
    )
    fake.pods = {
        m.job_manifest(jobs[0], backend.session, backend.settings)["metadata"]["name"]: pods
    }
    out = tmp_path / "out"
    backend.prepare(jobs[:1])
    [result] = evaluation.drive(backend, jobs[:1], evaluation.Observer(), out)
    assert result.verdict is Verdict.ERROR and why in (result.error or ""), result
    assert result.report and why in (out / result.report).read_text()


def test_a_job_the_api_refuses_is_that_models_error_line(env: Any) -> None:
    fake, backend, jobs = env
    backend.prepare(jobs)

    def refuse(*_: Any, **__: Any) -> None:
        raise ApiException(status=403, reason="Forbidden")

    fake.create_namespaced_job = refuse
    backend.submit(jobs[0])
    [(job, out)] = backend.wait(0.01)
    assert job is jobs[0] and "403 Forbidden" in (out.result.error or "")


def test_cancel_deletes_the_sessions_jobs_and_policy(env: Any) -> None:
    fake, backend, jobs = env
    backend.prepare(jobs)
    for job in jobs:
        backend.submit(job)
    backend.cancel()
    backend.cancel()  # idempotent
    [(args, kw), _] = fake.named("delete_jobs")
    assert args == ("airlock",)
    assert kw == {
        "label_selector": f"{m.SESSION_LABEL}={backend.session}",
        "propagation_policy": "Foreground",
    }
    assert [a for a, _ in fake.named("delete_np")] == [
        (m.network_policy_name(backend.session), "airlock")
    ]
    backend.submit(jobs[0])  # after a cancel: nothing new
    assert len(fake.named("create_job")) == 3
    backend.close()
    assert fake.closed and not backend.results_dir.exists()


def test_drive_writes_results_reports_as_the_local_backend(env: Any, tmp_path: Path) -> None:
    """The driver loop end to end on the fake cluster: every model its line, its report."""
    fake, backend, jobs = env
    fake.on_create = lambda body: outcome_file.write_atomic(
        backend.results_dir / m.outcome_name(int(body["metadata"]["labels"][m.INDEX_LABEL])),
        _outcome(jobs[int(body["metadata"]["labels"][m.INDEX_LABEL])]),
        assumed_exit=0,
    )
    out = tmp_path / "out"
    backend.prepare(jobs)
    results = list(evaluation.drive(backend, jobs, evaluation.Observer(), out))
    assert sorted(r.path for r in results) == sorted(str(j.path) for j in jobs)
    assert all(r.verdict is Verdict.CLEAN and r.report for r in results)
    assert all((out / r.report).is_file() for r in results if r.report)
    assert len(fake.named("delete_np")) == 1 and fake.closed
    assert not backend.results_dir.exists()


def test_baselines_are_refused_before_anything_is_created(env: Any) -> None:
    fake, backend, jobs = env
    job = Job(0, jobs[0].path, "", Policy(), baselines=object())
    with pytest.raises(UsageError, match="not supported by the kubernetes backend"):
        backend.prepare([job])
    assert not fake.calls


def test_a_missing_library_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kubernetes", None)
    with pytest.raises(UsageError) as e:
        connect()
    assert "airlock[kubernetes]" in e.value.diagnostics()


def test_dry_run_settings_refuse_to_run(env: Any, tmp_path: Path) -> None:
    fake, _, jobs = env
    backend = KubernetesBackend(Policy(), api=fake.api(), dry_run=True)
    with pytest.raises(UsageError, match="dry run"):
        backend.prepare(jobs)
    assert not fake.calls


def test_bad_settings_are_one_line() -> None:
    with pytest.raises(UsageError, match="namespace"):
        KubernetesBackend(Policy(), namespace="No Such")
    with pytest.raises(UsageError, match="no_such_field"):
        KubernetesBackend(Policy(), no_such_field=1)
