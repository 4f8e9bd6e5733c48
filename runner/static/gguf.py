"""GGUF files read on the host, by bytes only: the header, metadata and tensor table with
bounds (runner.worker.shared.gguf_header), and every chat template in the metadata judged from
its syntax tree (runner.static.chat_template), never rendered.

Findings: a template that reaches Python objects (AL960), a header, count, length or offset out
of bounds (AL961), a template that could not be judged (AL962), a template that computes the
names it looks up or reads other templates (AL963). What the file says of itself (architecture,
name, parameters, context length) goes in each finding's evidence; the sandbox's load says it
again in the model's signature note (runner.worker.loaders_gguf).
"""

from __future__ import annotations

from pathlib import Path

from runner.errors import untrusted_text
from runner.static import chat_template
from runner.static.signs import Signs
from runner.static.tamper import Tamper, TamperKind
from runner.worker.shared import gguf_header

TEMPLATE_KEY = "tokenizer.chat_template"
MAX_TEMPLATES = 16


def examine(primary: Path) -> Signs:
    """The static findings of one GGUF file; never raises for a hostile file (OSError is
    runner.static.signs's to catch)."""
    h = gguf_header.read_path(primary)
    about = describe(h)
    found: list[Tamper] = []
    if h.problem:
        found.append(
            Tamper(
                TamperKind.GGUF_MALFORMED,
                f"{untrusted_text(h.problem, 300)} (read so far: {about})",
            )
        )
    found += templates(h, about)
    return Signs(tamper=found)


def describe(h: gguf_header.Header) -> str:
    """What the file says of itself, one line, neutralised."""
    arch = h.string("general.architecture") or "?"
    parts = [f"GGUF v{h.version}", f"architecture {untrusted_text(arch, 40)}"]
    name = h.string("general.name")
    if name:
        parts.append(f"name {untrusted_text(name, 80)!r}")
    if h.tensors:
        parts.append(f"{len(h.tensors)} tensors, {h.parameters():,} parameters")
    ctx = h.integer(f"{arch}.context_length")
    if ctx is not None:
        parts.append(f"context {ctx}")
    return ", ".join(parts)


def templates(h: gguf_header.Header, about: str) -> list[Tamper]:
    """Every tokenizer.chat_template and tokenizer.chat_template.NAME judged."""
    out: list[Tamper] = []
    keys = [k for k in (*h.values, *h.long_strings) if _is_template(k)]
    for key in sorted(set(keys))[:MAX_TEMPLATES]:
        shown = untrusted_text(key, 80)
        source = h.values.get(key)
        if not isinstance(source, str):
            size = h.long_strings.get(key, 0)
            why = f"{size} bytes, over the bound of {chat_template.MAX_CHARS}"
            out.append(Tamper(TamperKind.TEMPLATE_UNREADABLE, f"{shown}: {why} ({about})"))
            continue
        j = chat_template.judge(source)
        if j.reaches:
            what = "; ".join(untrusted_text(r, 120) for r in j.reaches[:5])
            out.append(Tamper(TamperKind.TEMPLATE_OBJECT_ACCESS, f"{shown}: {what} ({about})"))
        if j.dynamic:
            what = "; ".join(untrusted_text(r, 120) for r in j.dynamic[:5])
            out.append(Tamper(TamperKind.TEMPLATE_DYNAMIC, f"{shown}: {what} ({about})"))
        if j.unreadable:
            why = untrusted_text(j.unreadable, 240)
            out.append(Tamper(TamperKind.TEMPLATE_UNREADABLE, f"{shown}: {why} ({about})"))
    return out


def _is_template(key: str) -> bool:
    return key == TEMPLATE_KEY or key.startswith(TEMPLATE_KEY + ".")
