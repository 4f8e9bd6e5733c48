"""The worker's chat-template rendering (runner.worker.loaders_gguf._render_all): every template
is compiled with the audit recording paused (jinja2's own compile()/exec() of its generated
module) before any is rendered, and every render runs with it on, so what a template does is
recorded; a template that does not compile says so and the others still render."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jinja2
import pytest

from runner.worker import loaders_gguf


def test_all_compiled_paused_before_any_render_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[tuple[str, bool]] = []
    paused = [False]

    @contextmanager
    def fake_paused() -> Iterator[None]:
        paused[0] = True
        try:
            yield
        finally:
            paused[0] = False

    real_compile, real_generate = jinja2.Environment.from_string, jinja2.Template.generate

    def from_string(self: Any, source: Any, *a: Any, **k: Any) -> Any:
        log.append(("compile", paused[0]))
        return real_compile(self, source, *a, **k)

    def generate(self: Any, *a: Any, **k: Any) -> Any:
        log.append(("render", paused[0]))
        return real_generate(self, *a, **k)

    monkeypatch.setattr(loaders_gguf.audit, "paused", fake_paused)
    monkeypatch.setattr(jinja2.Environment, "from_string", from_string)
    monkeypatch.setattr(jinja2.Template, "generate", generate)
    templates = {
        "tokenizer.chat_template": "{% for m in messages %}{{ m['role'] }};{% endfor %}",
        "tokenizer.chat_template.broken": "{% for m in messages %}",
        "tokenizer.chat_template.rag": "{{ bos_token }}{{ messages | length }}",
    }
    out = loaders_gguf._render_all(templates, "<s>", "</s>")
    assert log == [("compile", True)] * 3 + [("render", False)] * 2
    assert out["tokenizer.chat_template"] == "system;user;assistant;user;"
    assert out["tokenizer.chat_template.rag"] == "<s>4"
    assert out["tokenizer.chat_template.broken"].startswith("(the template did not compile")


def test_constant_folding_at_compile_time_calls_nothing() -> None:
    # what compile-time folding reaches from literals is only read: a call is never folded
    env = loaders_gguf._environment()
    calls: list[str] = []
    env.globals["spy"] = lambda: calls.append("called")
    template = env.from_string(
        "{{ ''.__class__.__mro__[1].__subclasses__() | length > 0 }}{{ spy() }}"
    )
    assert calls == []
    assert template.render() == "TrueNone" and calls == ["called"]
