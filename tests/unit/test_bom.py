"""The CycloneDX 1.6 ML-BOM: built from synthetic reports, checked against the 1.6 schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner import __version__
from runner.integrity.bom import BomError, bom_for, validate_bom
from runner.integrity.provenance_claims import ProvenanceInfo, provenance_for
from runner.policy import Policy
from runner.report import ModelInfo, Report, SandboxInfo, file_digests, root_digest
from runner.rules import analysis as _analysis
from runner.rules.catalog import Verdict
from tests.fixtures.traces import T0, shell_in_load, worker_exit, worker_start
from tests.unit.test_analysis import collected
from tests.unit.test_provenance import model_dir

BASE_ROOT = "ab" * 32


def with_model(report: Report, path: Path) -> Report:
    files = file_digests(path)
    model = ModelInfo(
        path=str(path),
        format="safetensors",
        detected_by="test",
        size_bytes=sum(f.size_bytes for f in files),
        files=files,
        root_digest=root_digest(files),
    )
    sandbox = SandboxInfo(
        session="s1",
        container="c1",
        image="airlock-worker:test",
        image_id="sha256:" + "cd" * 32,
        runtime="runc",
        policy=Policy(),
    )
    return report.model_copy(update={"model": model, "sandbox": sandbox})


def clean_report(path: Path) -> Report:
    report = _analysis.build(collected(worker_start() + worker_exit()))
    assert report.verdict is Verdict.CLEAN and report.findings == []
    return with_model(report, path)


def malicious_report(path: Path) -> Report:
    events = [(T0 + 2, "pickle.find_class", ["posix", "system"])]
    report = _analysis.build(
        collected(worker_start() + shell_in_load() + worker_exit(), worker_events=events)
    )
    assert report.verdict is Verdict.MALICIOUS
    return with_model(report, path)


def provenance(path: Path, base_root: str | None = BASE_ROOT) -> ProvenanceInfo:
    (path / "airlock-provenance.json").write_text(
        json.dumps(
            {
                "source_uri": "https://github.com/acme/tiny-model.git",
                "revision": "v1.2",
                "digest": "0" * 64,
                "license": "apache-2.0",
                "base_model": {
                    "name": "acme/base-7b",
                    "uri": "https://huggingface.co/acme/base-7b",
                    "digest": "sha256:" + BASE_ROOT,
                },
                "datasets": [
                    {
                        "name": "acme/corpus",
                        "source": "https://example.org/corpus",
                        "collection": "web crawl",
                        "filtering": "dedup, toxicity filter",
                        "date_frozen": "2024-05-01",
                        "license": "CC-BY-4.0",
                    },
                    {
                        "name": "internal-chats",
                        "source": "not a URI, a description",
                        "license": "proprietary <script>",
                    },
                ],
            }
        )
    )
    files = file_digests(path)
    info = provenance_for(path, root_digest(files), base_root, files=files)
    assert info is not None
    return info


def props(component: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in component.get("properties", [])}


def test_clean_report_bom_validates(tmp_path: Path) -> None:
    report = clean_report(model_dir(tmp_path))
    text = bom_for(report)
    validate_bom(text)
    bom = json.loads(text)
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    model = bom["metadata"]["component"]
    assert model["type"] == "machine-learning-model" and model["name"] == "model"
    assert model["hashes"] == [{"alg": "SHA-256", "content": report.model.root_digest}]
    assert props(model)["airlock:verdict"] == "clean"
    assert props(model)["airlock:findings"] == "0"
    assert props(model)["airlock:worst-severity"] == "none"
    assert props(model)["airlock:root-digest"] == report.model.root_digest
    assert props(model)["airlock:image-id"] == "sha256:" + "cd" * 32
    assert props(model)["airlock:runtime"] == "runc"
    files = {c["name"]: c for c in model["components"]}
    assert set(files) == {"config.json", "model.safetensors"}
    for f in report.model.files:
        assert files[f.path]["type"] == "file"
        assert files[f.path]["hashes"] == [{"alg": "SHA-256", "content": f.sha256}]
    tools = bom["metadata"]["tools"]["components"]
    assert [(t["name"], t["version"]) for t in tools] == [("airlock", __version__)]
    assert "pedigree" not in model and "modelCard" not in model


def test_malicious_report_with_provenance_bom_validates(tmp_path: Path) -> None:
    path = model_dir(tmp_path)
    info = provenance(path)
    report = malicious_report(path)
    text = bom_for(report, info, {"airlock:diff:flagged-categories": "code,network"})
    validate_bom(text)
    bom = json.loads(text)
    model = bom["metadata"]["component"]
    assert model["hashes"] == [{"alg": "SHA-256", "content": report.model.root_digest}]
    assert model["version"] == "v1.2"
    assert model["licenses"] == [{"license": {"id": "Apache-2.0"}}]
    assert model["externalReferences"] == [
        {"type": "vcs", "url": "https://github.com/acme/tiny-model.git"}
    ]
    p = props(model)
    assert p["airlock:verdict"] == "malicious"
    assert p["airlock:findings"] == str(len(report.findings))
    assert p["airlock:worst-severity"] == "critical"
    assert p["airlock:finding:AL202"] == "critical"
    assert p["airlock:finding:AL601"] == "critical"
    assert p["airlock:diff:flagged-categories"] == "code,network"
    assert p["airlock:claim:digest"] == "mismatch"
    assert p["airlock:claim:base_model.digest"] == "verified"
    (base,) = model["pedigree"]["ancestors"]
    assert base["name"] == "acme/base-7b" and base["type"] == "machine-learning-model"
    assert base["hashes"] == [{"alg": "SHA-256", "content": BASE_ROOT}]
    assert props(base)["airlock:digest-status"] == "verified"
    data = {c["name"]: c for c in bom["components"]}
    assert set(data) == {"acme/corpus", "internal-chats"}
    corpus = data["acme/corpus"]
    assert corpus["type"] == "data"
    assert corpus["licenses"] == [{"license": {"id": "CC-BY-4.0"}}]
    assert props(corpus)["airlock:dataset:date-frozen"] == "2024-05-01"
    assert corpus["externalReferences"][0]["url"] == "https://example.org/corpus"
    chats = data["internal-chats"]
    assert chats["licenses"] == [{"license": {"name": "proprietary <script>"}}]
    assert "externalReferences" not in chats  # a description, not a URI
    refs = [d["ref"] for d in model["modelCard"]["modelParameters"]["datasets"]]
    assert sorted(refs) == sorted(c["bom-ref"] for c in bom["components"])
    (dep,) = [d for d in bom["dependencies"] if d["ref"] == model["bom-ref"]]
    assert sorted(dep["dependsOn"]) == sorted(refs)


def test_base_digest_claimed_without_a_base_root(tmp_path: Path) -> None:
    path = model_dir(tmp_path)
    text = bom_for(clean_report(path), provenance(path, base_root=None))
    validate_bom(text)
    (base,) = json.loads(text)["metadata"]["component"]["pedigree"]["ancestors"]
    assert props(base)["airlock:digest-status"] == "claimed"


def test_malformed_provenance_still_gives_a_valid_bom(tmp_path: Path) -> None:
    path = model_dir(tmp_path)
    (path / "provenance.json").write_text("{not json")
    info = provenance_for(path, "")
    assert info is not None and info.notes
    text = bom_for(clean_report(path), info)
    validate_bom(text)
    p = props(json.loads(text)["metadata"]["component"])
    assert "not valid JSON" in p["airlock:provenance:note:0"]


def test_a_single_file_model(tmp_path: Path) -> None:
    m = tmp_path / "tiny.safetensors"
    m.write_bytes(b"weights")
    report = clean_report(m)
    text = bom_for(report)
    validate_bom(text)
    model = json.loads(text)["metadata"]["component"]
    assert model["name"] == "tiny.safetensors"
    assert model["hashes"][0]["content"] == report.model.files[0].sha256


def test_broken_bom_fails_validation(tmp_path: Path) -> None:
    text = bom_for(clean_report(model_dir(tmp_path)))
    validate_bom(text)
    bom = json.loads(text)
    bom["metadata"]["component"]["type"] = "sentient-being"
    with pytest.raises(BomError, match=r"metadata/component/type"):
        validate_bom(json.dumps(bom))
    bom = json.loads(text)
    bom["metadata"]["component"]["hashes"][0]["content"] = "not-hex"
    with pytest.raises(BomError, match=r"does not fit CycloneDX 1\.6"):
        validate_bom(json.dumps(bom))
    bom["unexpected"] = True
    with pytest.raises(BomError):
        validate_bom(json.dumps(bom))
    with pytest.raises(BomError, match="not JSON"):
        validate_bom("{")


def test_hostile_provenance_values_still_give_a_valid_bom(tmp_path: Path) -> None:
    path = model_dir(tmp_path)
    (path / "airlock-provenance.json").write_text(
        json.dumps(
            {
                "source_uri": "git@github.com:acme/x.git\n",
                "revision": "\x1b[31m v1 \x00",
                "digest": "sha512:zz",
                "license": "MIT OR Apache-2.0",
                "base_model": {"name": "", "uri": "https://bad.example/%zz#a#b", "digest": "nope"},
                "datasets": [{"name": ""}, {"source": "ftp://x y"}, {"license": " "}],
            }
        )
    )
    info = provenance_for(path, "")
    assert info is not None and not info.notes
    text = bom_for(clean_report(path), info, {"airlock:diff:note": "line\nbreak"})
    validate_bom(text)
    model = json.loads(text)["metadata"]["component"]
    assert "externalReferences" not in model
    assert model["licenses"] == [{"license": {"name": "MIT OR Apache-2.0"}}]
    (base,) = model["pedigree"]["ancestors"]
    assert "hashes" not in base and props(base)["airlock:claimed-digest"] == "nope"
