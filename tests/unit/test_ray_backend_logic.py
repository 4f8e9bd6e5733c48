"""The Ray backend's pure logic, without a cluster: addresses, the 'no node can ever run it'
check against a node table, the slots that keep every sandbox busy, and Ray's failures as
one model's error line."""

from __future__ import annotations

from typing import Any

import pytest

from runner.backends import ray_nodes
from runner.errors import UsageError
from runner.policy import Policy, Runtime

GIB = 1 << 30
LABELS = {"ray.io/node-id": "ab" * 28, "airlock-engine": "docker", "airlock-runc": "1"}


def node(cpus: float, mem: int, slots: float, labels: dict[str, str] | None = None, **kw: Any):
    return {
        "NodeID": "ab" * 28,
        "Alive": kw.get("alive", True),
        "NodeManagerAddress": "127.0.0.1",
        "Resources": {"CPU": cpus, "memory": float(mem), "airlock_sandbox": slots},
        "Labels": LABELS if labels is None else labels,
    }


def test_address_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_nodes.resolve_address(None) == "auto"
    assert ray_nodes.resolve_address("10.0.0.5:6379") == "10.0.0.5:6379"
    assert ray_nodes.resolve_address("ray://head:10001") == "ray://head:10001"
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert ray_nodes.resolve_address(None) == "127.0.0.1:6379"
    for bad in ("head", "head:port", "ray://:1", "h:70000"):
        with pytest.raises(UsageError, match="not a Ray cluster's address"):
            ray_nodes.resolve_address(bad)


def test_nothing_listening_is_one_usage_error() -> None:
    with pytest.raises(UsageError, match=r"no Ray cluster at 127\.0\.0\.1:1: nothing answers"):
        ray_nodes.check_reachable("127.0.0.1:1", seconds=2)


def test_request_from_the_policy() -> None:
    req = ray_nodes.Request.of(Policy(cpus=2, memory_bytes=GIB, runtime=Runtime.RUNSC))
    assert req.resources() == {"CPU": 2.0, "memory": float(GIB), "airlock_sandbox": 1.0}
    assert req.labels == {"airlock-engine": "docker", "airlock-runsc": "1"}


def test_a_request_no_node_can_satisfy_names_the_largest() -> None:
    req = ray_nodes.Request.of(Policy(cpus=1, memory_bytes=8 * GIB))
    nodes = [node(4, 3 * GIB, 1), node(8, 6 * GIB, 2), node(64, 64 * GIB, 4, alive=False)]
    with pytest.raises(UsageError) as e:
        ray_nodes.eligible(nodes, req, "h:1")
    msg = e.value.message
    assert "8.0 GiB memory" in msg and "the largest is" in msg and "6.0 GiB" in msg
    assert "64" not in msg.split("largest")[1]  # a dead node is no candidate


def test_labels_and_slots_decide_too() -> None:
    req = ray_nodes.Request.of(Policy(memory_bytes=GIB))
    no_slot = node(4, 8 * GIB, 0)
    unlabelled = node(4, 8 * GIB, 2, labels={})
    with pytest.raises(UsageError, match="labels none"):
        ray_nodes.eligible([no_slot, unlabelled], req, "auto")
    with pytest.raises(UsageError, match="no alive node"):
        ray_nodes.eligible([node(4, 8 * GIB, 2, alive=False)], req, "auto")
    runsc = ray_nodes.Request.of(Policy(memory_bytes=GIB, runtime=Runtime.RUNSC))
    with pytest.raises(UsageError):
        ray_nodes.eligible([node(4, 8 * GIB, 2)], runsc, "auto")
    good = node(4, 8 * GIB, 2)
    assert ray_nodes.eligible([no_slot, good], req, "auto") == [good]


def test_slots_are_the_fewest_of_slots_cpus_and_memory() -> None:
    req = ray_nodes.Request.of(Policy(cpus=1, memory_bytes=2 * GIB))
    assert ray_nodes.slots([node(4, 5 * GIB, 8), node(1, 64 * GIB, 4)], req) == 3
    assert ray_nodes.slots([node(4, 64 * GIB, 2)], req) == 2


def test_ray_failures_become_error_lines() -> None:
    import ray.exceptions as rex

    crashed = ray_nodes.failure_line(rex.WorkerCrashedError(), 2, ["cd" * 28])
    assert crashed.startswith("not evaluated: its Ray worker died after 2 retries")
    assert "WorkerCrashedError" in crashed and "cdcdcdcdcdcd left the cluster" in crashed
    died = ray_nodes.failure_line(rex.NodeDiedError("node gone"), 2)
    assert "its Ray node died after 2 retries" in died
    cancelled = ray_nodes.failure_line(rex.TaskCancelledError(), 2)
    assert "cancelled" in cancelled and "retries" not in cancelled
    other = ray_nodes.failure_line(RuntimeError("x\ny" * 500), 0)
    assert "Ray could not run it" in other and "\n" not in other and len(other) < 400


def test_missing_ray_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.backends import ray_cluster

    monkeypatch.setitem(__import__("sys").modules, "ray", None)
    with pytest.raises(UsageError, match=r"needs Ray: pip install 'airlock\[ray\]'"):
        ray_cluster._ray()
