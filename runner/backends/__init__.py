"""Batch backends: where each model of `airlock eval` is evaluated. `local` drives this
machine's engine from threads; `ray` runs a task per model on a Ray cluster; `kubernetes` makes
a Job per model. Each is imported only when chosen (its library is an optional extra)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, cast

from runner.backends.base import BACKENDS, Backend, Job, Outcome
from runner.errors import UsageError

if TYPE_CHECKING:
    from runner.policy import Policy

__all__ = ["BACKENDS", "Backend", "Job", "Outcome", "make"]


def chosen_name(name: str | None) -> str:
    """The backend's name: the one given, else AIRLOCK_BACKEND, else local."""
    chosen = (name or os.environ.get("AIRLOCK_BACKEND") or "local").strip().lower()
    if chosen not in BACKENDS:
        raise UsageError(
            f"backend {chosen!r}: not one Airlock has", f"choose one of {', '.join(BACKENDS)}"
        )
    return chosen


def make(
    backend: str | Backend | None,
    *,
    policy: Policy,
    jobs: int | None = None,
    address: str | None = None,
    **options: Any,
) -> Backend:
    """The backend to run a batch on: the one given, or one made by its name."""
    if backend is not None and not isinstance(backend, str):
        return backend
    name = chosen_name(backend)
    if options and name != "kubernetes":
        raise UsageError(f"{', '.join(options)}: settings of the kubernetes backend, not {name}")
    if name == "local":
        if address:
            raise UsageError("--address is for the ray backend", "pass --backend ray")
        from runner.backends.local import LocalBackend

        return LocalBackend(policy, jobs)
    if name == "ray":
        from runner.backends.ray_cluster import RayBackend

        return cast(Backend, RayBackend(policy, address=address, jobs=jobs))
    from runner.backends.kubernetes import KubernetesBackend

    return cast(Backend, KubernetesBackend(policy, jobs=jobs, **options))
