"""Attacks on the Kubernetes backend's driver (faked API objects, as in
test_kubernetes_backend): another NetworkPolicy that undoes the deny-all, a Job that never
ends, hostile answers to the Job listing, an outcome file naming a path for its reports."""

# ruff: noqa: F811  (env: the fixture of test_kubernetes_backend)
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from runner.backends.kubernetes import backend as kb
from runner.backends.kubernetes import manifests as m
from runner.backends.kubernetes import outcome_file, policy_overlap
from runner.batch import evaluation
from runner.errors import UsageError
from runner.rules.catalog import Verdict
from tests.unit.test_kubernetes_backend import _drain, _outcome, env  # noqa: F401

ALLOW_ALL_EGRESS = {
    "metadata": {"name": "allow-all-egress"},
    "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]},
}


@pytest.mark.parametrize(
    "spec",
    [
        ALLOW_ALL_EGRESS["spec"],
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "airlock"}}, "ingress": [{}]},
        {"podSelector": {"matchLabels": {m.INDEX_LABEL: "0"}}, "egress": [{}]},
        {
            "podSelector": {"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]},
            "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}],
        },
        {"podSelector": {}, "egress": "everything"},  # not a shape understood: may open
    ],
)
def test_another_policy_that_may_open_the_pods_is_refused(env: Any, spec: Any) -> None:
    """Policies are additive: an allow rule selecting the Pods undoes the deny-all."""
    fake, backend, jobs = env
    fake.policies = SimpleNamespace(items=[{"metadata": {"name": "theirs"}, "spec": spec}])
    with pytest.raises(UsageError, match="theirs"):
        backend.prepare(jobs)
    assert not fake.named("create_np") and not fake.named("create_job")


@pytest.mark.parametrize(
    "policy",
    [
        {"metadata": {"name": "deny"}, "spec": {"podSelector": {}, "policyTypes": ["Egress"]}},
        {
            "metadata": {"name": "web"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{}]},
        },
    ],
)
def test_policies_that_cannot_open_the_pods_are_accepted(env: Any, policy: Any) -> None:
    fake, backend, jobs = env
    fake.policies = SimpleNamespace(items=[policy])
    backend.prepare(jobs)
    assert fake.named("create_np")


def test_a_listing_that_is_not_one_is_refused() -> None:
    assert policy_overlap.opening(SimpleNamespace(items=None), "own", {}) != []
    assert policy_overlap.opening({"items": [{"metadata": {"name": "own"}}]}, "own", {}) == []


def test_a_job_that_never_ends_is_given_up(env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """No condition ever, or the API away for good: the driver does not wait forever."""
    fake, backend, jobs = env
    monkeypatch.setattr(kb, "DRIVER_GRACE_S", -10_000)  # every deadline already past
    backend.prepare(jobs[:2])
    backend.submit(jobs[0])
    got = _drain(backend, 1)  # listed, never a condition

    def away(*_: Any, **__: Any) -> Any:
        raise OSError("connection refused")

    fake.list_namespaced_job = away
    backend.submit(jobs[1])
    got += _drain(backend, 1)
    assert len(got) == 2
    assert all("driver stopped waiting" in (o.result.error or "") for _, o in got)
    assert all(o.result.verdict is Verdict.ERROR for _, o in got)
    assert not fake.jobs  # deleted


@pytest.mark.parametrize(
    "listed",
    [
        SimpleNamespace(items=None),
        SimpleNamespace(items=[SimpleNamespace(metadata=None, status=None)]),
        SimpleNamespace(items=[1, "x", None]),
        SimpleNamespace(items=[SimpleNamespace(metadata=SimpleNamespace(name=7))]),
        None,
    ],
)
def test_hostile_job_listings_do_not_crash_the_driver(env: Any, listed: Any) -> None:
    fake, backend, jobs = env
    backend.prepare(jobs[:1])
    backend.submit(jobs[0])
    fake.list_namespaced_job = lambda *_, **__: listed
    got = _drain(backend, 1)  # no exception
    if isinstance(getattr(listed, "items", None), list):  # a listing without the Job
        [(_, out)] = got
        assert out.result.verdict is Verdict.ERROR and "gone" in (out.result.error or "")
    else:  # not a listing: nothing decided on it, asked again
        assert got == []


def test_hostile_conditions_do_not_crash_the_driver(env: Any) -> None:
    fake, backend, jobs = env
    backend.prepare(jobs[:1])
    backend.submit(jobs[0])
    [name] = fake.jobs
    bad = SimpleNamespace(type="Failed", status="True", reason=["x"], message={"y": 1})
    fake.conditions[name] = [None, 3, bad]
    [(_, out)] = _drain(backend, 1)
    assert out.result.verdict is Verdict.ERROR and "no reason given" in (out.result.error or "")


@pytest.mark.parametrize("stem", ["../../escaped", "/tmp/abs", "a/b", "..", "x\nb"])
def test_an_outcomes_stem_never_names_a_path(env: Any, tmp_path: Path, stem: str) -> None:
    """Whoever wrote the outcome file, its reports stay under --out."""
    fake, backend, jobs = env
    job = jobs[0]
    forged = _outcome(job)
    forged = type(forged)(
        forged.result.model_copy(update={"sha256": "f" * 64}), stem, forged.report_json, None
    )
    fake.on_create = lambda body: outcome_file.write_atomic(
        backend.results_dir / m.outcome_name(0), forged, assumed_exit=0
    )
    out = tmp_path / "deep" / "out"
    backend.prepare([job])
    [result] = evaluation.drive(backend, [job], evaluation.Observer(), out)
    assert result.report == f"reports/m0.onnx-{job.sha256[:12]}.json"
    assert result.sha256 == job.sha256  # the driver's digest, not the file's
    assert (out / result.report).is_file()
    assert sorted(p.name for p in tmp_path.rglob("*.json")) == [Path(result.report).name]
