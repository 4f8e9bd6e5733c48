"""`run --text` and `--generate`: texts for a model that takes text (a Hugging Face repository,
or a GGUF file), tokenised in the sandbox by the model's own tokenizer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from runner.channel.text import MAX_NEW_TOKENS, TextResult
from runner.cli.output import out, shown
from runner.errors import UsageError, untrusted_text

if TYPE_CHECKING:
    from runner.controller.sandbox import Sandbox

Texts = Annotated[
    list[str] | None,
    typer.Option(
        "--text",
        "-t",
        help="a text for a Hugging Face repository or a GGUF model, tokenised in the sandbox by "
        "its own tokenizer (repeatable)",
    ),
]
Generate = Annotated[
    int,
    typer.Option(
        "--generate",
        min=0,
        max=MAX_NEW_TOKENS,
        help="with --text, a causal language model generates up to N tokens after each text "
        "(greedy)",
    ),
]


def is_gguf(model: Path, fmt: str = "auto") -> bool:
    """A GGUF file, by what the user asked (--format) or its bytes (the host's detection)."""
    if fmt not in ("auto", ""):
        return fmt == "gguf"
    if not model.is_file():
        return False
    from runner.worker.shared.formats import Format, FormatError, detect

    try:
        return detect(model).format is Format.GGUF
    except (FormatError, OSError):
        return False


@dataclass
class TextAsk:
    """What `run` asks of a text model: texts, and tokens to generate."""

    texts: list[str]
    generate: int = 0
    result: TextResult | None = None
    generated: list[str] = field(default_factory=list)

    def check(self, model: Path, arch: Path | None, fmt: str = "auto") -> None:
        """--text needs a Hugging Face repository or a GGUF file, --generate a causal language
        model (every GGUF model is one): told before a sandbox starts, where the host's read
        of the model can tell."""
        from runner.hf.cache import snapshot_of
        from runner.hf.repo import describe_repo

        if arch is None and is_gguf(model, fmt):
            return
        if snapshot_of(model) is not None:
            return  # read once it is made a plain directory (runner.hf.snapshot)
        info = describe_repo(model) if model.is_dir() and arch is None else None
        if info is None:
            raise UsageError(
                f"--text needs a Hugging Face repository (a directory with a config.json) or "
                f"a GGUF file; {shown(model)} is neither",
                "pass the model's inputs with --input NAME=FILE.npy",
            )
        if self.generate and info.task not in ("", "causal-lm"):
            raise UsageError(
                f"--generate needs a causal language model; {shown(model.name)} is a "
                f"{info.task} model",
                "drop --generate to get its outputs for the texts",
            )

    def ask(self, sb: Sandbox) -> dict[str, np.ndarray]:
        self.result = sb.infer_text(self.texts)
        if self.generate:
            self.generated = [sb.generate(t, self.generate) for t in self.texts]
        return dict(self.result.outputs)

    def show(self) -> None:
        r = self.result
        if r is None:
            return
        out.print(f"task: {r.task}, {r.tokens} token(s)")
        for i, t in enumerate(self.texts):
            line = f"text {i + 1}: {untrusted_text(t, 80)!r}"
            if r.labels:
                line += f" -> {r.labels[i].label} ({r.labels[i].score:.4f})"
            out.print(line, markup=False, highlight=False)
            if i < len(self.generated):
                shown_text = untrusted_text(self.generated[i], 2000)
                out.print(f"  generated: {shown_text!r}", markup=False, highlight=False)
