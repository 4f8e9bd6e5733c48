"""The statistics of behavioural diffing and baselines, on synthetic outputs (no Docker: these
are pure functions; the sandboxed runs are in tests/sandbox/test_behavior.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runner.behaviour import baseline, diff, probes
from runner.errors import InputError, UsageError
from runner.policy import Policy
from runner.report import Report, SandboxInfo
from tests.unit.test_views import hostile_report

RNG = np.random.default_rng(0)


def _probs(top: np.ndarray, classes: int = 4, sharp: float = 4.0) -> np.ndarray:
    logits = RNG.normal(0, 0.3, (len(top), classes))
    logits[np.arange(len(top)), top] += sharp
    e = np.exp(logits)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _setup(n: int = 30) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cats = np.array(["a"] * n + ["b"] * n + ["trigger"] * n)
    top = RNG.integers(0, 4, len(cats))
    return cats, top, _probs(top)


def test_a_deviating_category_is_flagged_and_its_target_named() -> None:
    cats, top, base = _setup()
    cand_top = top.copy()
    trig = cats == "trigger"
    cand_top[trig] = 3
    cand = _probs(cand_top)
    kind, rows = diff.compare(base, cand, cats, top, base.copy(), "rerun")
    assert kind == "classifier"
    by = {r.category: r for r in rows}
    assert by["trigger"].flagged and not by["a"].flagged and not by["b"].flagged
    assert next(iter(by["trigger"].flips_to)) == "3"
    assert by["trigger"].flips == int((top[trig] != 3).sum())
    assert by["trigger"].p_adjusted is not None and by["trigger"].p_adjusted < 0.05
    assert by["trigger"].candidate_accuracy is not None
    assert by["trigger"].candidate_accuracy < by["trigger"].base_accuracy  # type: ignore[operator]
    assert by["trigger"].mcnemar_p is not None and by["trigger"].mcnemar_p < 0.05
    js = by["trigger"]
    assert js.js_low is not None and js.js_high is not None
    assert 0 < js.js_low <= js.js_mean <= js.js_high <= 1  # type: ignore[operator]


def test_the_same_outputs_give_zero_flips_and_no_flag() -> None:
    cats, top, base = _setup()
    _, rows = diff.compare(base, base.copy(), cats, top, base.copy(), "rerun")
    assert all(r.flips == 0 and not r.flagged and r.js_mean == 0 for r in rows)


def test_the_effect_gate_stops_a_small_significant_change() -> None:
    cats = np.array(["a"] * 2000 + ["b"] * 2000)
    top = np.zeros(4000, dtype=int)
    cand = top.copy()
    cand[:200] = 1  # 10% of "a" flips: highly significant, but under a 15-point gate
    _, rows = diff.compare(_probs(top), _probs(cand), cats, None, None, "pooled")
    a = next(r for r in rows if r.category == "a")
    assert a.p_adjusted is not None and a.p_adjusted < 1e-6 and not a.flagged
    _, rows = diff.compare(_probs(top), _probs(cand), cats, None, None, "pooled", min_effect=0.05)
    assert next(r for r in rows if r.category == "a").flagged


def test_a_control_model_that_flips_as_much_is_not_a_deviation() -> None:
    cats, top, base = _setup()
    shifted = np.where(cats == "trigger", (top + 1) % 4, top)
    _kind, rows = diff.compare(base, _probs(shifted), cats, None, _probs(shifted), "model")
    assert not any(r.flagged for r in rows)
    trig = next(r for r in rows if r.category == "trigger")
    assert trig.flip_rate == 1.0 and trig.control_rate == 1.0


def test_regression_outputs_report_the_largest_difference() -> None:
    cats = np.array(["a", "a", "b"])
    base = np.array([[1.0], [2.0], [3.0]], dtype=np.float32)
    cand = base + np.array([[0.5], [0.0], [2.0]], dtype=np.float32)
    kind, rows = diff.compare(base, cand, cats, None, None, "pooled")
    assert kind == "regression"
    assert [r.max_abs_diff for r in rows] == [0.5, 2.0]
    assert all(r.flips is None and not r.flagged for r in rows)


def test_logits_are_turned_into_probabilities() -> None:
    p = diff.as_probabilities(np.array([[2.0, 0.0], [0.0, 0.0]], dtype=np.float32))
    assert p is not None and np.allclose(p.sum(axis=1), 1) and p[0, 0] > p[0, 1]
    assert diff.as_probabilities(np.array([1.0, 2.0])) is None


def test_mcnemar_is_exact_and_symmetric() -> None:
    right = np.array([True] * 10)
    wrong = np.array([False] * 10)
    assert diff.mcnemar_exact(right, right) == 1.0
    assert diff.mcnemar_exact(right, wrong) == pytest.approx(2 * 0.5**10)
    assert diff.mcnemar_exact(wrong, right) == diff.mcnemar_exact(right, wrong)


def test_outputs_of_another_shape_are_refused() -> None:
    with pytest.raises(UsageError, match="shape"):
        diff.compare(np.zeros((3, 2)), np.zeros((3, 4)), np.array(["a"] * 3), None, None, "pooled")


# --- probe sets ------------------------------------------------------------------------------


def test_probe_sets_split_inputs_categories_and_labels(tmp_path: Path) -> None:
    f = tmp_path / "p.npz"
    np.savez(f, x=np.zeros((4, 2), np.float32), category=np.array(list("aabb")), label=np.arange(4))
    ps = probes.load(f)
    assert list(ps.inputs) == ["x"] and ps.rows == 4 and ps.category_names() == ["a", "b"]
    assert ps.labels is not None and ps.digest == probes.load(f).digest
    np.savez(f, x=np.ones((4, 2), np.float32))
    other = probes.load(f)
    assert other.digest != ps.digest and other.category_names() == ["all"]


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"category": np.array(["a"])}, "no input arrays"),
        ({"x": np.zeros((3, 2)), "y": np.zeros((2, 2))}, "first dimension"),
        ({"x": np.zeros((3, 2)), "category": np.array(["a", "b"])}, "one label per row"),
        ({"x": np.zeros((3, 2)), "label": np.zeros((3, 2))}, "one value per row"),
    ],
)
def test_bad_probe_sets_are_usage_errors(arrays: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        probes.from_arrays(arrays)


class _Spec:
    def __init__(self, name: str, shape: list[int]) -> None:
        self.name, self.shape, self.dtype = name, shape, "float32"


class _Sig:
    def __init__(self, shape: list[int]) -> None:
        self.inputs = [_Spec("x", shape)]
        self.can_infer, self.note = True, ""


@pytest.mark.parametrize("shape, calls", [([-1, 2], 1), ([1, 2], 6), ([3, 2], 2)])
def test_probes_are_fed_in_as_few_calls_as_the_shapes_allow(shape: list[int], calls: int) -> None:
    ps = probes.from_arrays({"x": np.arange(12, dtype=np.float32).reshape(6, 2)})
    seen: list[int] = []

    def infer(feed: dict[str, Any]) -> dict[str, np.ndarray]:
        seen.append(len(feed["x"]))
        return {"y": feed["x"].sum(axis=1, keepdims=True)}

    out = probes.run(infer, _Sig(shape), ps)
    assert len(seen) == calls and out["y"].shape == (6, 1)
    assert np.array_equal(out["y"][:, 0], ps.inputs["x"].sum(axis=1))
    with pytest.raises(InputError, match="batches of"):
        probes.run(infer, _Sig([4, 2]), ps)


# --- baselines -------------------------------------------------------------------------------


def _report(root: str = "r1", image_id: str = "sha256:one") -> Report:
    r = hostile_report()
    sandbox = SandboxInfo(
        session="s", container="c", image="i", image_id=image_id, runtime="runc", policy=Policy()
    )
    return r.model_copy(
        update={
            "findings": [],
            "sandbox": sandbox,
            "model": r.model.model_copy(update={"root_digest": root}),
        }
    )


def _stored(tmp_path: Path, outputs: np.ndarray, ps: probes.ProbeSet) -> baseline.Registry:
    reg = baseline.Registry(tmp_path / "b.sqlite3")
    report = _report()
    image_id, runtime = baseline._env(report)
    entry = baseline.Entry(
        name="m",
        probes_digest=ps.digest,
        model_path="/m",
        model_root="r1",
        image_id=image_id,
        runtime=runtime,
        output="y",
        rows=ps.rows,
        recorded_at="2026-01-01T00:00:00Z",
        summary=baseline.summarise(outputs, ps),
    )
    reg.store(entry, baseline._rows_of({"y": outputs}, "y"), ps.categories)
    return reg


def test_a_baseline_round_trips_and_detects_any_change_on_the_same_image(tmp_path: Path) -> None:
    cats, _top, out = _setup(10)
    ps = probes.from_arrays({"x": np.zeros((len(cats), 1), np.float32), "category": cats})
    reg = _stored(tmp_path, out, ps)
    entry = reg.find(ps.digest, name="m")
    assert entry is not None and entry.summary["a"]["rows"] == 10
    assert reg.find(ps.digest, name="other", root="r1") == entry
    assert reg.find("0" * 64, name="m") is None
    same = baseline.compare(entry, reg.rows(entry), {"y": out}, _report(), ps, reg.path)
    assert same.baseline is not None and not same.baseline.drift
    assert not same.findings and not same.baseline.model_changed
    nudged = out.copy()
    nudged[0, 0] += 1e-6  # any difference counts when the image and runtime are the same
    moved = baseline.compare(entry, reg.rows(entry), {"y": nudged}, _report("r2"), ps, reg.path)
    assert moved.baseline is not None and moved.baseline.drift
    assert moved.baseline.rows_changed == 1 and moved.baseline.model_changed
    assert [f.rule_id for f in moved.findings] == ["AL802"]
    assert moved.verdict.value == "suspicious"


def test_on_another_image_small_differences_are_tolerated_but_flips_are_not(tmp_path: Path) -> None:
    cats, top, out = _setup(20)
    ps = probes.from_arrays({"x": np.zeros((len(cats), 1), np.float32), "category": cats})
    reg = _stored(tmp_path, out, ps)
    entry = reg.find(ps.digest, name="m")
    assert entry is not None
    elsewhere = _report(image_id="sha256:other")
    noisy = out + np.float32(1e-6)
    r = baseline.compare(entry, reg.rows(entry), {"y": noisy}, elsewhere, ps, reg.path)
    assert r.baseline is not None and not r.baseline.drift and not r.baseline.same_environment
    flipped = _probs(np.where(cats == "trigger", (top + 1) % 4, top))
    r = baseline.compare(entry, reg.rows(entry), {"y": flipped}, elsewhere, ps, reg.path)
    assert r.baseline is not None and r.baseline.drift
    assert [c.category for c in r.baseline.categories if c.flagged] == ["trigger"]


def test_a_missing_or_damaged_registry_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no baseline registry"):
        baseline.Registry(tmp_path / "none.sqlite3").rows(
            baseline.Entry("m", "d", "", "", "", "", "y", 0, "", {})
        )
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"not a database" * 100)
    with pytest.raises(UsageError, match=r"bad\.sqlite3"):
        baseline.Registry(bad).entries()


def test_bad_probe_files_are_usage_errors(tmp_path: Path) -> None:
    import zipfile

    np.save(tmp_path / "one.npy", np.zeros(3))
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really")
    with zipfile.ZipFile(tmp_path / "text.npz", "w") as zf:
        zf.writestr("a.txt", "hello")
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 3)))
    for name in ("one.npy", "broken.npz", "text.npz", "empty.npz", "missing.npz"):
        with pytest.raises(UsageError):
            probes.load(tmp_path / name)


def test_an_unusable_registry_path_fails_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="registry"):
        baseline.Registry(tmp_path / "file" / "b.sqlite3").check_writable()


def test_summaries_take_any_integer_labels() -> None:
    ps = probes.from_arrays({"x": np.zeros((3, 1), np.float32)})
    s = baseline.summarise(np.array([-1, 2**40, -1]), ps)
    assert s["all"]["top1"] == {"-1": 2, str(2**40): 1}
