"""`run --text` and `--generate` take a GGUF file (by its bytes, or --format gguf) as they take
a Hugging Face repository: checked before a sandbox starts (no engine is reachable here), and
anything else still told in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.cli import main
from runner.cli.text_ask import TextAsk, is_gguf
from runner.errors import UsageError
from tests.fixtures import gguf_models as gm


@pytest.fixture(autouse=True)
def no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/airlock-test-gguf-text.sock")


def test_a_gguf_takes_text_and_generation_and_goes_on_to_the_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = gm.tiny_llama(tmp_path / "whatever.bin")  # by its bytes, not its name
    assert is_gguf(model)
    assert main(["run", str(model), "--text", "hi", "--generate", "4"]) == 3  # no engine here
    assert "engine" in capsys.readouterr().err.lower()


def test_format_gguf_is_taken_at_its_word_and_other_files_are_not_text_models(
    tmp_path: Path,
) -> None:
    other = tmp_path / "m.gguf"
    other.write_bytes(b"not a gguf at all")
    assert not is_gguf(other) and is_gguf(other, "gguf") and not is_gguf(other, "onnx")
    TextAsk(["hi"], 4).check(other, None, "gguf")
    with pytest.raises(UsageError, match=r"a Hugging Face repository .* or a GGUF file"):
        TextAsk(["hi"]).check(other, None)
    model = gm.tiny_llama(tmp_path / "tiny.gguf")
    with pytest.raises(UsageError):  # an architecture file makes it a state dict's run
        TextAsk(["hi"]).check(model, tmp_path / "arch.py")
    assert not is_gguf(tmp_path)  # a directory
