"""What the host's static read of a Hugging Face repository says about code transformers runs
without an auto_map (found in the attacker review of issue #15)."""

from __future__ import annotations

from pathlib import Path

from runner.hf.repo import describe_repo


def test_custom_generate_counts_as_remote_code(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"architectures": ["GPT2LMHeadModel"]}')
    (tmp_path / "custom_generate").mkdir()
    (tmp_path / "custom_generate" / "generate.py").write_text("def generate(model): pass\n")
    info = describe_repo(tmp_path)
    assert info is not None
    assert any(c.path == "custom_generate/generate.py" for c in info.code_files)
    assert info.remote_code
