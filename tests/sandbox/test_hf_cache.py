"""A Hugging Face cache layout with a real engine: `airlock scan` on a snapshot (files that are
symlinks into blobs/) and on ORG/NAME through $HF_HUB_CACHE loads the model, the report names
the repository and revision, the verdict is clean; `airlock eval` over the cache root evaluates
each revision and names it; and nothing is left behind (no container, no materialised
directory)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from examples.make_examples import tiny_onnx
from tests.sandbox.test_cli import airlock, sessions
from tests.unit.test_hf_cache import REV, REV2, make_repo


def _leftovers() -> list[str]:
    return sorted(p.name for p in Path(tempfile.gettempdir()).glob("airlock-hf-*"))


def test_scan_a_cache_snapshot_and_a_repo_id(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    snap = make_repo(
        hub,
        "org/tiny",
        {
            "model.onnx": tiny_onnx(),
            ".gitattributes": b"*.onnx filter=lfs diff=lfs merge=lfs -text\n",
            "README.md": b"# tiny\n",
        },
    )
    before = _leftovers()
    env = {"HF_HUB_CACHE": str(hub), "HF_HOME": str(tmp_path / "none")}
    for target in (str(snap), "org/tiny"):
        proc = airlock("scan", target, "--json", "--exercise-seconds", "1", env=env)
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        assert report["verdict"] == "clean", report["findings"]
        model = report["model"]
        assert model["path"] == str(snap)
        assert model["format"] == "onnx"
        assert model["huggingface"]["repo_id"] == "org/tiny"
        assert model["huggingface"]["revision"] == REV
        assert model["anomalies"] == []  # hard links now; the ordinary files are no anomaly
        assert {f["path"] for f in model["files"]} == {".gitattributes", "README.md", "model.onnx"}
        assert sessions() == []
        assert _leftovers() == before
    make_repo(hub, "org/tiny", {"model.onnx": tiny_onnx()}, rev=REV2, ref=None)
    out = tmp_path / "out"
    proc = airlock("eval", str(hub), "--out", str(out), "--jobs", "1", "--memory", "1g", env=env)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert sorted((r["repo_id"], r["revision"], r["verdict"]) for r in lines) == [
        ("org/tiny", REV, "clean"),
        ("org/tiny", REV2, "clean"),
    ]
    assert f"org/tiny@{REV}" in proc.stdout
    assert sessions() == [] and _leftovers() == before
    missing = airlock("scan", "org/missing", env=env)
    assert missing.returncode == 2
    assert f"not in the Hugging Face cache at {hub}" in missing.stderr
