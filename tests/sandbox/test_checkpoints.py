"""Checkpoints people actually have, in a real sandbox: a training checkpoint whose weights sit
under a key (found by itself, or named), an architecture file that takes config.json, a
non-strict load, an architecture file that raises (blamed on it), and a LoRA adapter applied to
its base model, given with --base or found in the Hugging Face cache by the name the adapter
gives it. Outputs are compared with the same computation in-process."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runner.controller.sandbox import Sandbox
from runner.errors import UsageError
from tests import hf_repos
from tests.unit.test_hf_cache import REV, make_repo

torch = pytest.importorskip("torch")

ARCH = """
import torch


class Net(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.fc = torch.nn.Linear(n, 3)
        self.head = torch.nn.Linear(3, 3)  # not in the checkpoint: only a non-strict load fits

    def forward(self, x):
        return self.fc(x)


def build_model(config):
    return Net(config["in_features"])
"""

ARCH_PLAIN = """
import torch


def build_model():
    return torch.nn.Linear(4, 3)
"""

ARCH_RAISES = """
import torch


def build_model(config):
    width = config["in_features"]
    return torch.nn.Linear(width, undefined_width)
"""


def _linear(seed: int) -> Any:
    torch.manual_seed(seed)
    return torch.nn.Linear(4, 3).eval()


def _expected(module: Any, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.asarray(module(torch.from_numpy(x)).numpy())


def test_a_lightning_checkpoint_found_by_itself_config_and_non_strict(tmp_path: Path) -> None:
    """{"epoch", "state_dict": {"model.fc.*"}, "optimizer_states"}: the key is found, the
    prefix stripped, build_model gets config.json, the missing head is listed."""
    net = _linear(1)
    model = tmp_path / "run"
    model.mkdir()
    state = {f"model.fc.{k}": v for k, v in net.state_dict().items()}
    torch.save(
        {"epoch": 3, "global_step": 30, "state_dict": state, "optimizer_states": [{"lr": 0.1}]},
        model / "last.ckpt.pt",
    )
    (model / "config.json").write_text(json.dumps({"in_features": 4}))
    arch = tmp_path / "arch.py"
    arch.write_text(ARCH)
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    with Sandbox(model, architecture=arch, strict=False) as sb:  # the directory: config too
        out = sb.infer({"x": x})
        note = sb.describe().note
    np.testing.assert_allclose(out["output"], _expected(net, x), rtol=1e-5, atol=1e-6)
    assert "'state_dict'" in note and "found by itself" in note
    assert "stripped the prefix 'model.'" in note
    assert "build_model got config.json" in note
    assert "2 missing keys" in note and "head.weight" in note


def test_the_state_key_picks_the_weights_and_build_model_needs_no_config(tmp_path: Path) -> None:
    """Two sets of weights: --state-key ema picks the second; build_model() with no parameter
    still works."""
    net, ema = _linear(2), _linear(3)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": net.state_dict(), "ema": ema.state_dict(), "epoch": 9}, path)
    arch = tmp_path / "plain.py"
    arch.write_text(ARCH_PLAIN)
    x = np.ones((1, 4), np.float32)
    with Sandbox(path, architecture=arch, state_key="ema") as sb:
        out = sb.infer({"input": x})
        note = sb.describe().note
    np.testing.assert_allclose(out["output"], _expected(ema, x), rtol=1e-5, atol=1e-6)
    assert "key 'ema'" in note


def test_an_architecture_file_that_raises_is_blamed_on_it(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    torch.save({"state_dict": _linear(4).state_dict()}, model / "w.pt")
    (model / "config.json").write_text(json.dumps({"in_features": 4}))
    arch = tmp_path / "my_arch.py"
    arch.write_text(ARCH_RAISES)
    sb = Sandbox(model, architecture=arch)
    with pytest.raises(UsageError) as caught:
        sb.open()  # and closed again, whatever happened
    message = caught.value.message
    assert message.startswith("your architecture file my_arch.py raised NameError")
    assert "undefined_width" in message and "at line 7" in message
    assert sb.report().verdict.value == "error"  # the verdict does not take the worker's word


def _lora_adapter(where: Path) -> dict[str, Any]:
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(7)
    weights: dict[str, Any] = {}
    for layer in ("query", "value"):
        name = f"base_model.model.bert.encoder.layer.0.attention.self.{layer}"
        weights[f"{name}.lora_A.weight"] = torch.randn(4, 32, generator=g)
        weights[f"{name}.lora_B.weight"] = torch.randn(32, 4, generator=g) * 0.1
    weights["base_model.model.classifier.weight"] = torch.randn(2, 32, generator=g)
    weights["base_model.model.classifier.bias"] = torch.randn(2, generator=g)
    where.mkdir()
    save_file(weights, str(where / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "r": 4,
        "lora_alpha": 16,
        "target_modules": ["query", "value"],
        "modules_to_save": ["classifier"],
        "base_model_name_or_path": "org/tiny-bert",
    }
    (where / "adapter_config.json").write_text(json.dumps(config))
    return weights


def _with_lora_in_process(base: Path, weights: dict[str, Any], ids: np.ndarray) -> np.ndarray:
    """The adapter as PEFT runs it unmerged: each target layer's output plus
    (x @ A.T @ B.T) * alpha / r; the classifier replaced."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(base)).eval()
    attn = model.bert.encoder.layer[0].attention.self
    for layer in ("query", "value"):
        name = f"base_model.model.bert.encoder.layer.0.attention.self.{layer}"
        a, b = weights[f"{name}.lora_A.weight"], weights[f"{name}.lora_B.weight"]
        getattr(attn, layer).register_forward_hook(
            lambda _m, inp, out, a=a, b=b: out + (inp[0] @ a.T @ b.T) * (16 / 4)
        )
    with torch.no_grad():
        model.classifier.weight.copy_(weights["base_model.model.classifier.weight"])
        model.classifier.bias.copy_(weights["base_model.model.classifier.bias"])
        ids_t = torch.from_numpy(ids)
        return np.asarray(model(input_ids=ids_t, attention_mask=torch.ones_like(ids_t)).logits)


def test_a_lora_adapter_runs_on_its_base(tmp_path: Path) -> None:
    base = hf_repos.classifier(tmp_path / "base")
    weights = _lora_adapter(tmp_path / "adapter")
    ids = np.array([[2, 7, 9, 11, 3], [2, 8, 8, 10, 3]], np.int64)
    with Sandbox(tmp_path / "adapter", base=base) as sb:
        out = sb.infer({"input_ids": ids, "attention_mask": np.ones_like(ids)})
        note = sb.describe().note
    expected = _with_lora_in_process(base, weights, ids)
    np.testing.assert_allclose(out["logits"], expected, rtol=1e-4, atol=1e-5)
    assert "2 LoRA pairs merged" in note and "2 whole weights replaced" in note
    assert "'org/tiny-bert'" in note


def test_a_lora_adapter_runs_on_its_base_found_in_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No --base: the adapter names org/tiny-bert, which sits in a cache layout (symlinks into
    blobs/) under HF_HUB_CACHE; it is materialised for the sandbox, noted, and removed."""
    built = hf_repos.classifier(tmp_path / "built")
    files = {str(p.relative_to(built)): p.read_bytes() for p in built.rglob("*") if p.is_file()}
    hub = tmp_path / "hub"
    snap = make_repo(hub, "org/tiny-bert", files)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "none"))
    weights = _lora_adapter(tmp_path / "adapter")
    ids = np.array([[2, 7, 9, 11, 3], [2, 8, 8, 10, 3]], np.int64)
    before = sorted(Path(tempfile.gettempdir()).glob("airlock-hf-*"))
    with Sandbox(tmp_path / "adapter") as sb:
        out = sb.infer({"input_ids": ids, "attention_mask": np.ones_like(ids)})
        note = sb.describe().note
    expected = _with_lora_in_process(snap, weights, ids)
    np.testing.assert_allclose(out["logits"], expected, rtol=1e-4, atol=1e-5)
    assert "2 LoRA pairs merged" in note
    report = sb.report()
    assert f"base model org/tiny-bert@{REV} found in the Hugging Face cache" in report.notes
    assert report.error is None
    left = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=airlock.session={sb.session}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert left.split() == []
    assert sorted(Path(tempfile.gettempdir()).glob("airlock-hf-*")) == before
