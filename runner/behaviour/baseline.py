"""Behavioural baselines: what a model did on a probe set, kept so a later run can be compared.

    runner.behaviour.baseline.record("model.onnx", "probes.npz")           # stores a baseline
    report = runner.behaviour.baseline.check("model.onnx", "probes.npz")   # report.baseline.drift

The registry is an SQLite file (default: baselines.sqlite3 in the user's data directory;
AIRLOCK_BASELINES or `path` to move it). A baseline is keyed by a name (the model's file or
directory name unless given) and the probe set's digest, and holds the model's root digest,
the image id and runtime it ran on, per-row output digests, rounded outputs and per-category
summaries. A check on the same image and runtime expects identical outputs; elsewhere it allows
`tolerance` and then asks whether any category's top-1 predictions flipped significantly.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runner.behaviour import probes as _probes
from runner.behaviour.diff import MIN_EFFECT, ModelRun, adjust, pick_output, run_model, top1
from runner.errors import SandboxError, UsageError
from runner.policy import Policy
from runner.report import BaselineCheck, CategoryDrift, Report
from runner.rules.catalog import Finding, RuleName
from runner.rules.evaluation import finding

TOLERANCE = 1e-4
NOISE_RATE = 0.01  # the flip rate allowed as numerical noise across images or runtimes
MAX_ROUNDED = 4096  # values per row kept; larger rows keep their digest only
_SCHEMA = """
CREATE TABLE IF NOT EXISTS baselines (
    name TEXT NOT NULL, probes_digest TEXT NOT NULL, model_path TEXT NOT NULL,
    model_root TEXT NOT NULL, image_id TEXT NOT NULL, runtime TEXT NOT NULL,
    output TEXT NOT NULL, rows INTEGER NOT NULL, recorded_at TEXT NOT NULL,
    tool_version TEXT NOT NULL, summary TEXT NOT NULL,
    PRIMARY KEY (name, probes_digest));
CREATE TABLE IF NOT EXISTS outputs (
    name TEXT NOT NULL, probes_digest TEXT NOT NULL, row INTEGER NOT NULL,
    category TEXT NOT NULL, digest TEXT NOT NULL, top1 INTEGER, rounded TEXT,
    PRIMARY KEY (name, probes_digest, row));
"""


_COLUMNS = (
    "name, probes_digest, model_path, model_root, image_id, runtime, output, rows, "
    "recorded_at, summary"
)  # an Entry's fields, in order


def default_path() -> Path:
    env = os.environ.get("AIRLOCK_BASELINES")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("airlock")) / "baselines.sqlite3"


@dataclass(frozen=True)
class Entry:
    name: str
    probes_digest: str
    model_path: str
    model_root: str
    image_id: str
    runtime: str
    output: str
    rows: int
    recorded_at: str
    summary: dict[str, dict[str, object]]


@dataclass(frozen=True)
class Rows:
    digests: list[str]
    top1: list[int | None]
    rounded: list[list[float] | None]


def row_digests(outputs: dict[str, np.ndarray]) -> list[str]:
    """Per probe row: the digest of that row of every output (as probe sets are digested)."""
    n = len(next(iter(outputs.values())))
    return [_probes.digest_arrays({k: v[i] for k, v in outputs.items()}) for i in range(n)]


def summarise(out: np.ndarray, ps: _probes.ProbeSet) -> dict[str, dict[str, object]]:
    t = top1(out)
    summary: dict[str, dict[str, object]] = {}
    for cat in ps.category_names():
        m = ps.categories == cat
        s: dict[str, object] = {
            "rows": int(m.sum()),
            "mean": float(np.mean(out[m])) if m.any() else 0.0,
        }
        if t is not None:
            values, counts = np.unique(t[m], return_counts=True)
            s["top1"] = {str(k): int(v) for k, v in zip(values, counts, strict=True)}
            if ps.labels is not None:
                s["accuracy"] = float(np.mean(t[m] == ps.labels[m]))
        summary[cat] = s
    return summary


class Registry:
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()

    @contextmanager
    def _db(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        if not write and not self.path.is_file():
            raise UsageError(
                f"no baseline registry at {self.path}", "record one with 'airlock baseline record'"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(self.path, timeout=30)) as db, db:
                db.executescript(_SCHEMA)
                yield db
        except sqlite3.DatabaseError as e:
            raise UsageError(
                f"baseline registry {self.path}: {e}",
                "pass another --registry, or move the damaged file away",
            ) from e
        except OSError as e:
            raise UsageError(
                f"baseline registry {self.path}: {e.strerror or e}",
                "pass a writable --registry path",
            ) from e

    def check_writable(self) -> None:
        """Open (and create) the registry now, so a bad path fails before any model runs."""
        with self._db(write=True):
            pass

    def store(self, entry: Entry, rows: Rows, categories: np.ndarray) -> None:
        with self._db(write=True) as db:
            key = (entry.name, entry.probes_digest)
            db.execute("DELETE FROM baselines WHERE name=? AND probes_digest=?", key)
            db.execute("DELETE FROM outputs WHERE name=? AND probes_digest=?", key)
            from runner import __version__

            db.execute(
                "INSERT INTO baselines VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    *key,
                    entry.model_path,
                    entry.model_root,
                    entry.image_id,
                    entry.runtime,
                    entry.output,
                    entry.rows,
                    entry.recorded_at,
                    __version__,
                    json.dumps(entry.summary),
                ),
            )
            db.executemany(
                "INSERT INTO outputs VALUES (?,?,?,?,?,?,?)",
                [
                    (
                        *key,
                        i,
                        str(categories[i]),
                        rows.digests[i],
                        rows.top1[i],
                        None if rows.rounded[i] is None else json.dumps(rows.rounded[i]),
                    )
                    for i in range(len(rows.digests))
                ],
            )

    def find(
        self, probes_digest: str, name: str | None = None, root: str | None = None
    ) -> Entry | None:
        """The baseline for these probes recorded for this model root digest, else with this
        name."""
        if not self.path.is_file():
            return None
        with self._db() as db:
            for column, value in (("model_root", root), ("name", name)):
                if value is None:
                    continue
                row = db.execute(
                    f"SELECT {_COLUMNS} FROM baselines WHERE {column}=? "  # noqa: S608
                    "AND probes_digest=? ORDER BY recorded_at DESC",
                    (value, probes_digest),
                ).fetchone()
                if row:
                    return _entry(row)
        return None

    def rows(self, entry: Entry) -> Rows:
        with self._db() as db:
            got = db.execute(
                "SELECT digest, top1, rounded FROM outputs WHERE name=? AND "
                "probes_digest=? ORDER BY row",
                (entry.name, entry.probes_digest),
            ).fetchall()
        return Rows(
            [g[0] for g in got],
            [g[1] for g in got],
            [None if g[2] is None else json.loads(g[2]) for g in got],
        )

    def entries(self) -> list[Entry]:
        if not self.path.is_file():
            return []
        with self._db() as db:
            got = db.execute(
                f"SELECT {_COLUMNS} FROM baselines "  # noqa: S608
                "ORDER BY name, recorded_at"
            ).fetchall()
        return [_entry(g) for g in got]


def _entry(row: tuple[Any, ...]) -> Entry:
    return Entry(
        name=row[0],
        probes_digest=row[1],
        model_path=row[2],
        model_root=row[3],
        image_id=row[4],
        runtime=row[5],
        output=row[6],
        rows=row[7],
        recorded_at=row[8],
        summary=json.loads(row[9]),
    )


def _rows_of(outputs: dict[str, np.ndarray], name: str) -> Rows:
    out = outputs[name]
    t = top1(out)
    flat = out.reshape(len(out), -1)
    rounded: list[list[float] | None] = (
        [[round(float(v), 6) for v in r] for r in flat.astype(np.float64)]
        if flat.shape[1] <= MAX_ROUNDED and np.issubdtype(out.dtype, np.number)
        else [None] * len(out)
    )
    return Rows(
        row_digests(outputs),
        [None if t is None else int(v) for v in t] if t is not None else [None] * len(out),
        rounded,
    )


def _env(report: Report) -> tuple[str, str]:
    sb = report.sandbox
    return (sb.image_id, sb.runtime) if sb is not None else ("", "")


def default_name(model: Path) -> str:
    return model.resolve().name


def record(
    model: str | Path,
    probes: str | Path | _probes.ProbeSet,
    *,
    name: str | None = None,
    registry: Registry | str | Path | None = None,
    policy: Policy | None = None,
    output: str | None = None,
) -> tuple[Report, Entry]:
    """Run the model on the probes in a fresh sandbox and store what it did."""
    ps = probes if isinstance(probes, _probes.ProbeSet) else _probes.load(probes)
    reg = registry if isinstance(registry, Registry) else Registry(registry)
    reg.check_writable()
    path = Path(model)
    run = run_model(path, ps, policy or Policy())
    if run.outputs is None:
        raise SandboxError(
            f"no baseline recorded: the model could not be run on the probes ({run.error})",
            "see the report for what happened",
        )
    out_name = pick_output(run.outputs, output)
    image_id, runtime = _env(run.report)
    entry = Entry(
        name=name or default_name(path),
        probes_digest=ps.digest,
        model_path=str(path.resolve()),
        model_root=run.report.model.root_digest,
        image_id=image_id,
        runtime=runtime,
        output=out_name,
        rows=ps.rows,
        recorded_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        summary=summarise(run.outputs[out_name], ps),
    )
    reg.store(entry, _rows_of(run.outputs, out_name), ps.categories)
    return run.report, entry


def _rows_now(
    entry: Entry, recorded: Rows, outputs: dict[str, np.ndarray], ps: _probes.ProbeSet
) -> Rows:
    """This run's rows of the output the baseline recorded, once the run and the probes are
    seen to match the baseline."""
    if entry.output not in outputs:
        raise UsageError(
            f"the model has no output {entry.output!r}, which the baseline recorded",
            f"its outputs are {sorted(outputs)}",
        )
    now = _rows_of(outputs, entry.output)
    if len(recorded.digests) != ps.rows:
        raise UsageError(
            f"baseline {entry.name!r} has {len(recorded.digests)} rows; the probes have {ps.rows}",
            "record the baseline again",
        )
    return now


@dataclass(frozen=True)
class _Changes:
    """Per probe row, how this run differs from the recorded one."""

    changed: np.ndarray  # bool: the row's outputs changed (beyond tolerance, elsewhere)
    dist: np.ndarray  # the largest absolute difference (inf when it cannot be measured)
    flips: np.ndarray  # bool: the top-1 prediction changed
    classifier: bool  # every row has a top-1 prediction


def _changes(now: Rows, recorded: Rows, same_env: bool, tolerance: float) -> _Changes:
    exact = np.array([a != b for a, b in zip(now.digests, recorded.digests, strict=True)])
    dist = np.array(
        [
            max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0)
            if a is not None and b is not None and len(a) == len(b)
            else np.inf
            for a, b in zip(now.rounded, recorded.rounded, strict=True)
        ]
    )
    flips = np.array(
        [
            a is not None and b is not None and a != b
            for a, b in zip(now.top1, recorded.top1, strict=True)
        ]
    )
    return _Changes(
        changed=exact if same_env else dist > tolerance,
        dist=dist,
        flips=flips,
        classifier=all(t is not None for t in now.top1),
    )


def _per_category(ps: _probes.ProbeSet, ch: _Changes) -> list[dict[str, Any]]:
    """Per probe category: its rows, how many changed and by how much, and for a classifier
    its top-1 flips with their p-value against the noise rate."""
    from scipy.stats import binomtest

    cats: list[dict[str, Any]] = []
    for cat in ps.category_names():
        m = ps.categories == cat
        n = int(m.sum())
        d: dict[str, Any] = {
            "category": cat,
            "rows": n,
            "changed": int(ch.changed[m].sum()),
            "max_abs_diff": float(ch.dist[m].max()) if n else 0.0,
        }
        if ch.classifier:
            k = int(ch.flips[m].sum())
            d.update(
                flips=k,
                flip_rate=k / n if n else 0.0,
                p=float(binomtest(k, n, NOISE_RATE, alternative="greater").pvalue) if n else 1.0,
            )
        cats.append(d)
    return cats


def _flags(
    cats: list[dict[str, Any]], same_env: bool, classifier: bool, alpha: float, min_effect: float
) -> list[bool]:
    """Which categories drifted: any change on the same image and runtime (or for a model that
    is no classifier); elsewhere, top-1 flips significantly and substantially above noise."""
    if same_env or not classifier:
        return [bool(d["changed"]) for d in cats]
    return [
        q < alpha and float(d["flip_rate"]) >= min_effect
        for d, q in zip(cats, adjust([float(d["p"]) for d in cats]), strict=True)
    ]


def _notes(entry: Entry, report: Report, same_env: bool, tolerance: float) -> list[str]:
    notes = []
    if report.model.root_digest != entry.model_root:
        notes.append(
            f"the model's files changed since baseline {entry.name!r} was recorded "
            f"(root digest {entry.model_root[:12]} then, "
            f"{report.model.root_digest[:12]} now)"
        )
    if not same_env:
        notes.append(
            "the baseline was recorded on another image or runtime: outputs are "
            f"compared within {tolerance}, and flips against a {NOISE_RATE:.0%} "
            "noise rate"
        )
    return notes


def _drift_finding(entry: Entry, check: BaselineCheck) -> Finding:
    flagged = sorted(
        (c for c in check.categories if c.flagged), key=lambda c: (-(c.flip_rate or 0), -c.changed)
    )
    return finding(
        RuleName.BASELINE_DRIFT,
        f"outputs differ from baseline {entry.name!r} (recorded {entry.recorded_at}): "
        f"{check.rows_changed} of {check.rows} probe rows changed",
        [
            f"baseline: category {c.category!r}: {c.changed}/{c.rows} rows changed"
            + (f", {c.flips} top-1 flips" if c.flips is not None else "")
            for c in flagged[:5]
        ],
    )


def compare(
    entry: Entry,
    recorded: Rows,
    outputs: dict[str, np.ndarray],
    report: Report,
    ps: _probes.ProbeSet,
    registry: Path,
    tolerance: float = TOLERANCE,
    alpha: float = 0.05,
    min_effect: float = MIN_EFFECT,
) -> Report:
    """The report with a baseline section, and a drift finding when the outputs moved."""
    now = _rows_now(entry, recorded, outputs, ps)
    same_env = _env(report) == (entry.image_id, entry.runtime)
    ch = _changes(now, recorded, same_env, tolerance)
    cats = _per_category(ps, ch)
    flags = _flags(cats, same_env, ch.classifier, alpha, min_effect)
    drift_cats = [
        CategoryDrift(**{k: v for k, v in d.items() if k != "p"}, flagged=f)
        for d, f in zip(cats, flags, strict=True)
    ]
    drift = any(c.flagged for c in drift_cats)
    check = BaselineCheck(
        registry=str(registry),
        name=entry.name,
        recorded_at=entry.recorded_at,
        recorded_root_digest=entry.model_root,
        recorded_image_id=entry.image_id,
        recorded_runtime=entry.runtime,
        same_environment=same_env,
        model_changed=report.model.root_digest != entry.model_root,
        rows=ps.rows,
        rows_changed=int(ch.changed.sum()),
        tolerance=tolerance,
        categories=drift_cats,
        drift=drift,
    )
    findings = [_drift_finding(entry, check)] if drift else []
    return report.amended(findings, _notes(entry, report, same_env, tolerance), baseline=check)


def check(
    model: str | Path,
    probes: str | Path | _probes.ProbeSet,
    *,
    name: str | None = None,
    registry: Registry | str | Path | None = None,
    policy: Policy | None = None,
    tolerance: float = TOLERANCE,
) -> Report:
    """Rerun the model on the probes and compare with its baseline."""
    ps = probes if isinstance(probes, _probes.ProbeSet) else _probes.load(probes)
    reg = registry if isinstance(registry, Registry) else Registry(registry)
    path = Path(model)
    key = name or default_name(path)
    entry = reg.find(ps.digest, name=key)
    if entry is None:
        raise UsageError(
            f"no baseline named {key!r} for these probes in {reg.path}",
            "record one with 'airlock baseline record' (same probes file), or pass --name",
        )
    run: ModelRun = run_model(path, ps, policy or Policy())
    if run.outputs is None:
        return run.report.amended(
            notes=[
                f"baseline {key!r} not checked: the model could not "
                f"be run on the probes ({run.error})"
            ]
        )
    return compare(entry, reg.rows(entry), run.outputs, run.report, ps, reg.path, tolerance)
