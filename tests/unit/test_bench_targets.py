"""The issue 17 target table (tests/benchmarks/targets.py), fed figures as dicts."""

from __future__ import annotations

from tests.benchmarks import targets


def _all(**over: float) -> dict[str, dict[str, object]]:
    v = {"warm": 1.5, "batch": 5.0, "runsc": 10.0, "runc": 4.0, "p50": 0.1, "scan": 1.2, **over}
    return {
        "coldstart": {
            "runc_torchscript": {"open_to_first_inference_s": v["runc"]},
            **{  # TorchScript is the worst kind here
                f"runc_{k}_warm": {"ratio_vs_floor_plus_load": v["warm"] - 0.1 * (i > 0)}
                for i, k in enumerate(targets.WARM_KINDS)
            },
            "runsc_torchscript": {"open_to_first_inference_s": v["runsc"]},
        },
        "batch_throughput": {"ratio_to_before": v["batch"]},
        "latency": {"mlp_3KB": {"overhead_p50_ms": v["p50"]}},
        "scan_large": {"ratio": v["scan"]},
    }


def _status(results: dict[str, dict[str, object]]) -> list[str]:
    return [r.status for r in targets.judge(results)]


def test_all_met() -> None:
    rows = targets.judge(_all())
    assert [r.status for r in rows] == ["met"] * 5
    assert [r.measured for r in rows] == [1.5, 5.0, 2.5, 0.1, 1.2]
    assert targets.as_json(rows)["met"] == 5


def test_each_limit_can_be_missed() -> None:
    assert _status(_all(warm=2.01))[0] == "missed"
    assert _status(_all(batch=3.99))[1] == "missed"  # at least: below the limit misses
    assert _status(_all(runsc=12.1))[2] == "missed"
    assert _status(_all(p50=0.16))[3] == "missed"
    assert _status(_all(scan=1.31))[4] == "missed"


def test_the_limit_itself_is_met() -> None:
    assert _status(_all(warm=2.0, batch=4.0, runsc=12.0, p50=0.15, scan=1.3)) == ["met"] * 5


def test_a_benchmark_not_run_is_said_and_others_still_judged() -> None:
    results = _all(scan=2.0)
    del results["coldstart"]
    rows = targets.judge(results)
    assert [r.status for r in rows] == ["not run", "met", "not run", "met", "missed"]
    text = targets.table(rows)
    assert text.count("not run") == 2
    assert "2 of 5 targets met (3 measured in this run)" in text


def test_the_warm_target_is_the_worst_kind_and_needs_every_kind() -> None:
    results = _all()
    results["coldstart"]["runc_transformers_warm"] = {"ratio_vs_floor_plus_load": 2.5}  # type: ignore[index]
    row = targets.judge(results)[0]
    assert (row.measured, row.status) == (2.5, "missed")
    del results["coldstart"]["runc_full_module_warm"]  # type: ignore[attr-defined]
    row = targets.judge(results)[0]
    assert row.status.startswith("no figure") and "full_module" in row.status


def test_a_missing_figure_is_no_figure_not_a_crash() -> None:
    results = _all()
    del results["coldstart"]["runsc_torchscript"]  # type: ignore[attr-defined]
    rows = targets.judge(results)
    assert rows[0].status == "met"
    assert rows[2].status.startswith("no figure") and rows[2].measured is None
