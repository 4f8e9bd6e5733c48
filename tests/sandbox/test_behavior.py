"""Behavioural diffing and baselines, end to end through the CLI, every model in a real
sandbox: a base digits classifier, a backdoored fine-tune (a corner patch relabelled to 7) and
a benign fine-tune, on probes with a trigger category."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.integrity.bom import validate_bom
from tests.fixtures import behavior
from tests.sandbox.test_cli import airlock, sessions

LIMITS = ["--memory", "1g"]


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> behavior.DigitsModels:
    return behavior.build(tmp_path_factory.mktemp("digits"))


def _diff(m: behavior.DigitsModels, candidate: Path, out: Path, *extra: str) -> dict:  # type: ignore[type-arg]
    proc = airlock(
        "diff",
        "--base",
        str(m.base),
        "--candidate",
        str(candidate),
        "--probes",
        str(m.probes),
        "--out",
        str(out),
        *LIMITS,
        *extra,
    )
    report = json.loads((out / "candidate.json").read_text())
    report["_proc"] = proc
    return report


def test_the_backdoor_is_flagged_on_the_trigger_and_its_target_named(
    digits: behavior.DigitsModels, tmp_path: Path
) -> None:
    r = _diff(digits, digits.backdoor, tmp_path)
    proc = r.pop("_proc")
    assert proc.returncode == 1, proc.stderr
    d = r["behavior"]
    assert d["flagged"] == [behavior.TRIGGER]
    trig = next(c for c in d["categories"] if c["category"] == behavior.TRIGGER)
    assert next(iter(trig["flips_to"])) == str(behavior.TARGET)
    assert trig["flip_rate"] > 0.9 and trig["control_flips"] == 0
    assert trig["candidate_accuracy"] < trig["base_accuracy"] and trig["mcnemar_p"] < 0.01
    assert d["control_kind"] == "rerun" and d["base"]["verdict"] == "clean"
    assert [f["rule_id"] for f in r["findings"]] == ["AL801"]
    assert "class 7" in r["findings"][0]["message"]
    assert r["verdict"] == "suspicious"
    assert "FLAGGED" in proc.stdout and behavior.TRIGGER in proc.stdout
    assert json.loads((tmp_path / "base.json").read_text())["verdict"] == "clean"
    bom_text = (tmp_path / "candidate.cdx.json").read_text()
    validate_bom(bom_text)
    props = {
        p["name"]: p["value"] for p in json.loads(bom_text)["metadata"]["component"]["properties"]
    }
    assert props["airlock:diff:flagged-categories"] == behavior.TRIGGER
    assert props["airlock:diff:base-root-digest"] == d["base"]["root_digest"]
    html = (tmp_path / "diff.html").read_text()
    assert 'id="diff-chart"' in html and "trigger: candidate flip rate 100%" in html
    assert sessions() == []


def test_the_benign_fine_tune_is_not_flagged(digits: behavior.DigitsModels, tmp_path: Path) -> None:
    r = _diff(digits, digits.benign, tmp_path, "--control", str(digits.benign))
    proc = r.pop("_proc")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert r["behavior"]["flagged"] == [] and r["verdict"] == "clean"
    assert r["behavior"]["control_kind"] == "model"
    # pooled control (no second sandbox for the base)
    r = _diff(digits, digits.benign, tmp_path / "pooled", "--no-rerun")
    assert r.pop("_proc").returncode == 0
    assert r["behavior"]["control_kind"] == "pooled" and r["behavior"]["flagged"] == []


def test_base_against_base_shows_zero_flips(digits: behavior.DigitsModels, tmp_path: Path) -> None:
    r = _diff(digits, digits.base, tmp_path, "--no-rerun")
    assert r.pop("_proc").returncode == 0
    cats = r["behavior"]["categories"]
    assert len(cats) == 11 and all(c["flips"] == 0 and c["js_mean"] == 0 for c in cats)


def test_a_baseline_shows_no_drift_on_the_same_model_and_drift_on_the_backdoor(
    digits: behavior.DigitsModels, tmp_path: Path
) -> None:
    reg = str(tmp_path / "baselines.sqlite3")
    probes = ["--probes", str(digits.probes), "--registry", reg]
    rec = airlock("baseline", "record", str(digits.base), *probes, "--name", "digits", *LIMITS)
    assert rec.returncode == 0, rec.stderr
    assert "recorded baseline 'digits': 288 probes" in rec.stdout
    same = airlock(
        "baseline", "check", str(digits.base), *probes, "--name", "digits", "--json", *LIMITS
    )
    assert same.returncode == 0, same.stderr
    b = json.loads(same.stdout)["baseline"]
    assert not b["drift"] and b["same_environment"] and b["rows_changed"] == 0
    bad = airlock(
        "baseline", "check", str(digits.backdoor), *probes, "--name", "digits", "--json", *LIMITS
    )
    assert bad.returncode == 1, bad.stderr
    report = json.loads(bad.stdout)
    assert report["baseline"]["drift"] and report["baseline"]["model_changed"]
    flagged = [c["category"] for c in report["baseline"]["categories"] if c["flagged"]]
    assert behavior.TRIGGER in flagged
    assert "AL802" in [f["rule_id"] for f in report["findings"]]
    # eval --baseline checks the model that has one (by root digest) and no other
    models = tmp_path / "models"
    models.mkdir()
    (models / "base.onnx").write_bytes(digits.base.read_bytes())
    (models / "benign.onnx").write_bytes(digits.benign.read_bytes())
    ev = airlock(
        "eval",
        str(models),
        *probes,
        "--baseline",
        "--out",
        str(tmp_path / "ev"),
        "--jobs",
        "1",
        *LIMITS,
    )
    assert ev.returncode == 0, ev.stderr
    got = {
        Path(json.loads(ln)["path"]).name: json.loads(ln)["baseline"]
        for ln in (tmp_path / "ev" / "results.jsonl").read_text().splitlines()
    }
    assert got == {"base.onnx": "no drift", "benign.onnx": None}
    assert sessions() == []


def test_diff_usage_errors_are_one_line(digits: behavior.DigitsModels, tmp_path: Path) -> None:
    from tests.sandbox.test_cli import one_error_line

    proc = airlock(
        "diff",
        "--base",
        str(tmp_path / "nope.onnx"),
        "--candidate",
        str(digits.benign),
        "--probes",
        str(digits.probes),
    )
    assert proc.returncode == 2 and "base model" in one_error_line(proc)
    proc = airlock(
        "baseline",
        "check",
        str(digits.base),
        "--probes",
        str(digits.probes),
        "--registry",
        str(tmp_path / "empty.sqlite3"),
    )
    assert proc.returncode == 2 and "no baseline named" in one_error_line(proc)
