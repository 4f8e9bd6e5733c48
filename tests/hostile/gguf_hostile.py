"""Hostile GGUF files, built at test time with gguf.GGUFWriter (and byte edits of what it
writes), each using GGUF's own code paths: a chat template that injects code when a serving
stack renders it, and headers whose counts and lengths run past the file. Harmless outside the
sandbox too: the injections only `touch` a marker path under /tmp, or listen on loopback."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.fixtures import gguf_models as gm


@dataclass(frozen=True)
class Hostile:
    name: str
    technique: str
    build: Callable[[Path, str], Path]  # (directory, marker path) -> model path
    static: frozenset[str]  # static finding ids that must appear
    dynamic: frozenset[str]  # dynamic ones (any of them)
    loads: bool  # does the worker load it (else its load fails, with the report still made)
    all_dynamic: frozenset[str] = frozenset()  # dynamic ones that must all appear


def template_injection(d: Path, marker: str) -> Path:
    return gm.tiny_llama(d / "inject.gguf", gm.injection(marker))


def template_injection_obfuscated(d: Path, marker: str) -> Path:
    return gm.tiny_llama(d / "inject-obf.gguf", gm.injection_obfuscated(marker))


def named_template_injection(d: Path, marker: str) -> Path:
    """The default template is Llama 3's; the injection hides in tokenizer.chat_template.rag."""
    extra = {"rag": gm.injection(marker)}
    return gm.tiny_llama(d / "inject-named.gguf", gm.LLAMA3, extra_templates=extra)


def template_listener(d: Path, marker: str) -> Path:
    """The template opens a loopback listener of its own beside llama.cpp's (one more than the
    allowance for llama.cpp's HTTP front: runner.rules.allowances)."""
    return gm.tiny_llama(d / "inject-listener.gguf", gm.injection_listener())


def huge_kv_count(d: Path, marker: str) -> Path:
    """A key-value count of 2^60: a reader that trusts it allocates or loops forever."""
    data = bytearray(gm.tiny_llama(d / "base.gguf").read_bytes())
    data[16:24] = struct.pack("<Q", 1 << 60)
    out = d / "huge-kv.gguf"
    out.write_bytes(bytes(data))
    return out


def string_past_end(d: Path, marker: str) -> Path:
    """general.name's length says 2^40 bytes: past the end of a 200 KiB file."""
    data = bytearray(gm.tiny_llama(d / "base.gguf", name="victim").read_bytes())
    at = data.index(b"victim") - 8
    data[at : at + 8] = struct.pack("<Q", 1 << 40)
    out = d / "string-past-end.gguf"
    out.write_bytes(bytes(data))
    return out


def tensor_past_end(d: Path, marker: str) -> Path:
    """The file cut short: the last tensors' offsets point past the data section."""
    data = gm.tiny_llama(d / "base.gguf").read_bytes()
    out = d / "tensor-past-end.gguf"
    out.write_bytes(data[: len(data) - 4096])
    return out


SHELL = frozenset({"AL201", "AL202"})  # os.popen starts /bin/sh
CORPUS = (
    Hostile(
        "gguf-template-injection",
        "chat template reaches os through cycler.__init__.__globals__ and runs popen",
        template_injection,
        frozenset({"AL960"}),
        SHELL,
        True,
    ),
    Hostile(
        "gguf-template-injection-obfuscated",
        "no dunder in the source: __globals__ built from \\x5f escapes, * and join, via |attr",
        template_injection_obfuscated,
        frozenset({"AL960"}),
        SHELL,
        True,
    ),
    Hostile(
        "gguf-named-template-injection",
        "a benign default template, the injection in tokenizer.chat_template.rag",
        named_template_injection,
        frozenset({"AL960"}),
        SHELL,
        True,
    ),
    Hostile(
        "gguf-template-listener",
        "chat template imports socket through cycler's builtins and listens on 127.0.0.1:0, "
        "as llama.cpp's own HTTP front does",
        template_listener,
        frozenset({"AL960"}),
        frozenset({"AL103", "AL606"}),
        True,
        all_dynamic=frozenset({"AL103", "AL606"}),
    ),
    Hostile(
        "gguf-huge-kv-count",
        "a key-value count of 2^60",
        huge_kv_count,
        frozenset({"AL961"}),
        frozenset(),
        False,
    ),
    Hostile(
        "gguf-string-past-end",
        "a string length of 2^40 in a 200 KiB file",
        string_past_end,
        frozenset({"AL961"}),
        frozenset(),
        False,
    ),
    Hostile(
        "gguf-tensor-past-end",
        "tensor data past the end of the file",
        tensor_past_end,
        frozenset({"AL961"}),
        frozenset(),
        False,
    ),
)
