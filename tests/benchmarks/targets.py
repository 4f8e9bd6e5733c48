"""The five performance targets of issue 17, judged from the figures one `make bench` run wrote.

Pure functions: `judge(results)` takes {benchmark name: its figures} (the JSON each benchmark
recorded in this run; a benchmark that did not run is absent) and returns one row per target;
`table(rows)` renders them, `as_json(rows)` is what bench-results/targets.json holds."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Figures = Mapping[str, Any]
Results = Mapping[str, Figures]


@dataclass(frozen=True)
class Target:
    name: str
    bench: str  # the benchmark whose JSON holds the figure
    limit: float
    at_most: bool  # the figure must be <= limit (else >= limit)
    unit: str
    measure: Callable[[Figures], float]


@dataclass(frozen=True)
class Row:
    target: str
    bench: str
    limit: str
    measured: float | None
    status: str  # "met", "missed", "not run", or "no figure: ..."

    @property
    def shown(self) -> str:
        return "-" if self.measured is None else f"{self.measured:.3f}"


WARM_KINDS = ("torchscript", "full_module", "state_dict_arch", "transformers")


def _worst_warm(c: Figures) -> float:
    """The warm target holds for every torch-family kind the issue names: the worst of them."""
    return max(float(c[f"runc_{k}_warm"]["ratio_vs_floor_plus_load"]) for k in WARM_KINDS)


def _runsc_vs_runc(c: Figures) -> float:
    first = "open_to_first_inference_s"
    return float(c["runsc_torchscript"][first]) / float(c["runc_torchscript"][first])


TARGETS = (
    Target(
        "warm start: runc torch-family open-to-first-inference (worst of 4), forked / (floor+load)",
        "coldstart",
        2.0,
        True,
        "x",
        _worst_warm,
    ),
    Target(
        "batch throughput at --jobs 2: models/min / the issue's 9 models/min",
        "batch_throughput",
        4.0,
        False,
        "x",
        lambda b: float(b["ratio_to_before"]),
    ),
    Target(
        "runsc / runc TorchScript open-to-first-inference",
        "coldstart",
        3.0,
        True,
        "x",
        _runsc_vs_runc,
    ),
    Target(
        "per-call overhead p50, 3 KB (MLP)",
        "latency",
        0.15,
        True,
        " ms",
        lambda lat: float(lat["mlp_3KB"]["overhead_p50_ms"]),
    ),
    Target(
        "1 GB pytorch_model.bin time to verdict / (read + sha256 + torch.load)",
        "scan_large",
        1.3,
        True,
        "x",
        lambda s: float(s["ratio"]),
    ),
)


def judge(results: Results, targets: tuple[Target, ...] = TARGETS) -> list[Row]:
    """One row per target: its figure from `results`, and whether the limit is met."""
    rows = []
    for t in targets:
        limit = f"{'<=' if t.at_most else '>='} {t.limit:g}{t.unit}"
        figures = results.get(t.bench)
        if figures is None:
            rows.append(Row(t.name, t.bench, limit, None, "not run"))
            continue
        try:
            value = t.measure(figures)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
            rows.append(Row(t.name, t.bench, limit, None, f"no figure: {e!r}"))
            continue
        ok = (operator.le if t.at_most else operator.ge)(value, t.limit)
        rows.append(Row(t.name, t.bench, limit, value, "met" if ok else "missed"))
    return rows


def table(rows: list[Row]) -> str:
    """The rows as one plain-text table."""
    width = max(len(r.target) for r in rows)
    lines = [
        f"{'target (issue 17)':<{width}} {'measured':>9} {'limit':>10}  status",
        "-" * (width + 30),
    ]
    lines += [f"{r.target:<{width}} {r.shown:>9} {r.limit:>10}  {r.status}" for r in rows]
    met = sum(r.status == "met" for r in rows)
    ran = sum(r.measured is not None for r in rows)
    lines.append(f"{met} of {len(rows)} targets met ({ran} measured in this run)")
    return "\n".join(lines)


def as_json(rows: list[Row]) -> dict[str, object]:
    return {
        "targets": [
            {
                "target": r.target,
                "benchmark": r.bench,
                "measured": r.measured,
                "limit": r.limit,
                "status": r.status,
            }
            for r in rows
        ],
        "met": sum(r.status == "met" for r in rows),
        "measured": sum(r.measured is not None for r in rows),
    }
