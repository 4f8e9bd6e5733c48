"""--dry-run: the manifests a batch would create, printed, nothing created (no cluster and no
`kubernetes` library needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runner.backends.base import Job
from runner.backends.kubernetes.manifests import dry_run_text
from runner.backends.kubernetes.settings import settings_from
from runner.batch.discovery import discover
from runner.batch.evaluation import _probe_set
from runner.controller import sessions
from runner.policy import Policy


def plan(
    paths: Sequence[str | Path],
    *,
    policy: Policy | None = None,
    probes: str | Path | dict[str, np.ndarray] | None = None,
    session: str | None = None,
    **fields: Any,
) -> str:
    """The YAML stream `airlock eval PATHS --backend kubernetes --dry-run` prints: the
    NetworkPolicy, then one Job per model discovery finds (a model outside the model volume's
    root is a UsageError, as it would be in a real run)."""
    settings = settings_from({k: v for k, v in fields.items() if k != "dry_run"})
    policy = policy or Policy()
    probe_set = _probe_set(probes)
    found = discover(paths)
    jobs = [Job(i, p, "", policy, probe_set) for i, p in enumerate(found.paths)]
    return dry_run_text(jobs, session or sessions.new_session_id(), settings)
