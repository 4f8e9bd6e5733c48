"""`run --text` and `--generate` mistakes are caught before a sandbox starts (no engine is
reachable here), in one line naming what to do."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from examples.make_examples import tiny_onnx
from runner.cli import main


@pytest.fixture(autouse=True)
def no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/airlock-test-text.sock")


def _repo(root: Path, arch: str) -> Path:
    root.mkdir()
    (root / "config.json").write_text(json.dumps({"architectures": [arch], "model_type": "bert"}))
    header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    (root / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    return root


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_text_on_a_model_that_is_no_repository(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(tiny_onnx())
    line = _error(["run", str(model), "--text", "hi"], capsys)
    assert "--text needs a Hugging Face repository" in line and "--input NAME=FILE.npy" in line


def test_generate_on_a_classifier(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = _repo(tmp_path / "r", "BertForSequenceClassification")
    line = _error(["run", str(repo), "--text", "hi", "--generate", "4"], capsys)
    assert "--generate needs a causal language model" in line and "classification" in line


def test_generate_without_a_prompt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = _repo(tmp_path / "r", "GPT2LMHeadModel")
    assert "--text TEXT" in _error(["run", str(repo), "--generate", "4"], capsys)


def test_text_and_input_together(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = _repo(tmp_path / "r", "BertModel")
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 2), np.int64))
    line = _error(["run", str(repo), "--text", "hi", "--input", f"input_ids={x}"], capsys)
    assert "give --text or --input, not both" in line


def test_run_with_no_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = _repo(tmp_path / "r", "BertModel")
    line = _error(["run", str(repo)], capsys)
    assert "run needs inputs" in line and "--text TEXT" in line


def test_a_good_text_run_goes_on_to_the_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = _repo(tmp_path / "r", "GPT2LMHeadModel")
    assert main(["run", str(repo), "--text", "hi", "--generate", "4"]) == 3  # no engine here
    assert "engine" in capsys.readouterr().err.lower()
