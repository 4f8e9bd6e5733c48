"""Signatures and BOMs through the CLI with a real engine: a signed model runs; a required
signature that fails stops before any container starts, with a report; every evaluated model
gets a CycloneDX ML-BOM that validates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from runner.integrity.bom import validate_bom
from runner.integrity.sign import sign
from tests.fixtures.pki import Pki
from tests.sandbox.test_cli import ROOT, airlock, sessions


def _signed(tmp_path: Path, pki: Pki) -> Path:
    m = tmp_path / "tiny.onnx"
    shutil.copy(ROOT / "examples" / "tiny.onnx", m)
    sign(m, tmp_path / "tiny.onnx.sig", private_key=pki.key)
    return m


def test_a_signed_model_runs_and_a_tampered_one_stops_before_the_sandbox(
    tmp_path: Path, pki: Pki
) -> None:
    m = _signed(tmp_path, pki)
    ok = airlock(
        "scan",
        str(m),
        "--require-signature",
        "--key",
        str(pki.pub),
        "--json",
        "--bom",
        str(tmp_path / "bom.json"),
    )
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["integrity"]["signature"]["verified"] and report["sandbox"] is not None
    validate_bom((tmp_path / "bom.json").read_text())
    m.write_bytes(m.read_bytes() + b"\0")
    bad = airlock("scan", str(m), "--require-signature", "--key", str(pki.pub), "--json")
    assert bad.returncode == 1, bad.stderr
    report = json.loads(bad.stdout)
    assert report["sandbox"] is None and report["error"]["kind"] == "IntegrityError"
    assert [f["rule_id"] for f in report["findings"]] == ["AL811"]
    assert "model differs from the signature" in report["integrity"]["signature"]["reason"]
    lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "signature is required" in lines[0]
    assert sessions() == []


def test_eval_writes_a_validated_bom_per_model_and_checks_signatures(
    tmp_path: Path, pki: Pki
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    _signed(models, pki)
    shutil.copy(ROOT / "examples" / "payload.pkl", models / "payload.pkl")  # unsigned
    out = tmp_path / "out"
    proc = airlock(
        "eval",
        str(models),
        "--out",
        str(out),
        "--jobs",
        "1",
        "--require-signature",
        "--key",
        str(pki.pub),
    )
    assert proc.returncode == 1, proc.stderr
    lines = {
        Path(json.loads(ln)["path"]).name: json.loads(ln)
        for ln in (out / "results.jsonl").read_text().splitlines()
    }
    assert lines["tiny.onnx"]["verdict"] == "clean"
    assert "signature is required" in lines["payload.pkl"]["error"]
    # the signatures may live in a directory of their own
    sigs = tmp_path / "sigs"
    sigs.mkdir()
    (models / "tiny.onnx.sig").rename(sigs / "tiny.onnx.sig")
    (models / "payload.pkl").unlink()
    again = airlock(
        "eval",
        str(models),
        "--out",
        str(tmp_path / "out2"),
        "--jobs",
        "1",
        "--require-signature",
        "--key",
        str(pki.pub),
        "--signature",
        str(sigs),
    )
    assert again.returncode == 0, again.stderr
    report = json.loads(next((tmp_path / "out2" / "reports").iterdir()).read_text())
    assert report["integrity"]["signature"]["verified"]
    for r in lines.values():
        bom = json.loads((out / r["bom"]).read_text())
        validate_bom(json.dumps(bom))
        props = {p["name"]: p["value"] for p in bom["metadata"]["component"]["properties"]}
        assert props["airlock:verdict"] == r["verdict"]
    assert sessions() == []
