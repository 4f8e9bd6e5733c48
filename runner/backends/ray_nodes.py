"""The Ray backend's pure logic, no cluster needed: which address to connect to, what one
model's task asks of a node, whether any node of the cluster's table can ever give it, how many
tasks keep every sandbox slot busy, and the error line of a task Ray could not finish."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.errors import UsageError
from runner.policy import Policy

SANDBOX_RESOURCE = "airlock_sandbox"  # one per sandbox a node may run at once
ENGINE_LABEL = "airlock-engine"  # "docker": the node has a Docker engine Airlock may drive
RUNTIME_LABEL = "airlock-{runtime}"  # "1": the engine has that runtime (runc, runsc)
START_HINT = (
    "start one: ray start --head --num-cpus=N --memory=BYTES "
    f"--resources='{{\"{SANDBOX_RESOURCE}\": N}}' --labels {ENGINE_LABEL}=docker,airlock-runc=1 "
    "(see docs/backends.md)"
)
GIB = 1 << 30


def resolve_address(address: str | None) -> str:
    """The cluster's address: the one given, else RAY_ADDRESS, else 'auto' (a cluster
    started on this machine with `ray start`). Forms: auto, HOST:PORT, ray://HOST:PORT."""
    chosen = (address or os.environ.get("RAY_ADDRESS") or "auto").strip()
    if chosen == "auto":
        return chosen
    rest = chosen.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise UsageError(
            f"--address {chosen!r}: not a Ray cluster's address",
            "give auto, HOST:PORT (the head's GCS port) or ray://HOST:PORT (its client port)",
        )
    return chosen


def check_reachable(address: str, seconds: float = 5.0) -> None:
    """A UsageError when nothing answers at a HOST:PORT address (Ray itself would retry for
    minutes); 'auto' is left to Ray, which says at once that it found no cluster."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=seconds):
            pass
    except OSError as e:
        raise UsageError(
            f"no Ray cluster at {address}: nothing answers there ({e.strerror or e})", START_HINT
        ) from None


@dataclass(frozen=True)
class Request:
    """What one model's task asks of the node that runs it."""

    cpus: float
    memory: int
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, policy: Policy) -> Request:
        runtime = policy.runtime.value
        return cls(
            float(policy.cpus),
            int(policy.memory_bytes),
            {ENGINE_LABEL: "docker", RUNTIME_LABEL.format(runtime=runtime): "1"},
        )

    def resources(self) -> dict[str, float]:
        return {"CPU": self.cpus, "memory": float(self.memory), SANDBOX_RESOURCE: 1.0}

    def describe(self) -> str:
        labels = ",".join(f"{k}={v}" for k, v in self.labels.items())
        return (
            f"{_num(self.cpus)} CPU, {self.memory / GIB:.1f} GiB memory, 1 {SANDBOX_RESOURCE}, "
            f"labels {labels}"
        )


def _num(x: float) -> str:
    return f"{x:g}"


def alive(nodes: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The alive nodes of a ray.nodes() table."""
    return [n for n in nodes if n.get("Alive")]


def fits(node: Mapping[str, Any], request: Request) -> bool:
    """Whether the node could ever run the task: its total resources and its labels."""
    have = node.get("Resources") or {}
    labels = node.get("Labels") or {}
    enough = all(float(have.get(k, 0.0)) >= v for k, v in request.resources().items())
    return enough and all(labels.get(k) == v for k, v in request.labels.items())


def describe_node(node: Mapping[str, Any]) -> str:
    have = node.get("Resources") or {}
    labels = {
        k: v for k, v in (node.get("Labels") or {}).items() if not str(k).startswith("ray.io/")
    }
    shown = ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "none"
    return (
        f"node {str(node.get('NodeID', '?'))[:12]} at {node.get('NodeManagerAddress', '?')}: "
        f"{_num(float(have.get('CPU', 0)))} CPU, {float(have.get('memory', 0)) / GIB:.1f} GiB "
        f"memory, {_num(float(have.get(SANDBOX_RESOURCE, 0)))} {SANDBOX_RESOURCE}, labels {shown}"
    )


def _size(node: Mapping[str, Any]) -> tuple[float, float, float]:
    have = node.get("Resources") or {}
    return (
        float(have.get(SANDBOX_RESOURCE, 0)),
        float(have.get("memory", 0)),
        float(have.get("CPU", 0)),
    )


def eligible(nodes: Sequence[Mapping[str, Any]], request: Request, address: str) -> list[Any]:
    """The alive nodes that can run the request; a UsageError, naming what was asked and the
    largest node, when none can (Ray would leave every task pending forever)."""
    up = alive(nodes)
    if not up:
        raise UsageError(f"the Ray cluster at {address} has no alive node", START_HINT)
    chosen = [n for n in up if fits(n, request)]
    if not chosen:
        largest = max(up, key=_size)
        raise UsageError(
            f"no node of the Ray cluster at {address} can ever run a sandbox of "
            f"{request.describe()}; the largest is {describe_node(largest)}",
            "lower --cpus or --memory, or start nodes with those resources and labels "
            "(see docs/backends.md)",
        )
    return chosen


def slots(nodes: Sequence[Mapping[str, Any]], request: Request) -> int:
    """How many of these tasks the nodes can run at once: per node, the fewest of its sandbox
    slots, CPUs over the task's and memory over the task's."""
    total = 0
    for n in nodes:
        have = n.get("Resources") or {}
        total += int(
            min(
                float(have.get(SANDBOX_RESOURCE, 0)),
                float(have.get("CPU", 0)) // request.cpus if request.cpus else 1e9,
                float(have.get("memory", 0)) // request.memory,
            )
        )
    return max(1, total)


def failure_line(error: BaseException, retries: int, gone: Sequence[str] = ()) -> str:
    """One model's error line for a task Ray could not finish (ray.get raised): what Ray said,
    in words, after how many retries, and the nodes that left the cluster meanwhile."""
    kind = type(error).__name__
    text = " ".join(str(error).split())[:300]
    why = {
        "WorkerCrashedError": "its Ray worker died",
        "NodeDiedError": "its Ray node died",
        "OutOfMemoryError": "Ray's memory monitor killed its worker (the node ran out of memory)",
        "ObjectLostError": "its result was lost with the node that held it",
        "OwnerDiedError": "its result was lost with the node that held it",
        "ObjectReconstructionFailedError": "its result was lost with the node that held it",
        "TaskCancelledError": "its task was cancelled",
        "TaskUnschedulableError": "no node could run it",
        "RaySystemError": "Ray failed",
        "RayTaskError": "its task raised",
    }
    said = next((v for k, v in why.items() if k in kind), "Ray could not run it")
    retried = f" after {retries} retries" if "Cancelled" not in kind and retries else ""
    left = f"; node(s) {', '.join(g[:12] for g in gone)} left the cluster" if gone else ""
    return f"not evaluated: {said}{retried} ({kind}: {text}){left}"
