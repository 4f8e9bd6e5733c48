"""Text replies (Hugging Face repositories): the worker's TextReply, validated and bounded.

What the model sends is untrusted like every reply: the task must be one Airlock knows, there
is one label (with a finite score in [0, 1]) and one generated text per text asked for, or none,
label and generated text are bounded in length, and tensors are checked as inference outputs
are (runner.channel.replies). Generated text is kept as the model wrote it (cut to a bound,
unpaired surrogates replaced), for the caller; show it only through runner.errors.untrusted_text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runner.channel.replies import BadReply, Faults, inline_outputs
from runner.errors import untrusted_text

TASKS = ("embedding", "classification", "causal-lm", "hidden-states")
MAX_TEXTS = 64
MAX_TEXT_CHARS = 64 << 10
MAX_NEW_TOKENS = 512
MAX_LABEL_CHARS = 200
MAX_GENERATED_CHARS = 64 << 10


@dataclass(frozen=True)
class Label:
    label: str  # through the model's id2label, made safe to show
    score: float  # its softmax probability


@dataclass(frozen=True)
class TextResult:
    """One text call's answer. `outputs` holds, by task: `embeddings` (mean-pooled over the
    attention mask) and `last_hidden_state`; `logits` for a classifier; `next_token_logprobs`
    (log-softmax at each text's last position) for a causal language model; the model's own
    outputs otherwise."""

    task: str
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    labels: list[Label] = field(default_factory=list)
    generated: list[str] = field(default_factory=list)
    tokens: int = 0
    infer_seconds: float = 0.0


def check_request(texts: list[str], max_new_tokens: int) -> None:
    """The caller's texts, checked before they are sent: ValueError says what is wrong."""
    if not texts or len(texts) > MAX_TEXTS:
        raise ValueError(f"give 1 to {MAX_TEXTS} texts, not {len(texts)}")
    for t in texts:
        if not isinstance(t, str):
            raise ValueError(f"texts must be strings, not {type(t).__name__}")
        if len(t) > MAX_TEXT_CHARS:
            raise ValueError(f"a text of {len(t)} characters: at most {MAX_TEXT_CHARS}")
    if not 0 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ValueError(f"max_new_tokens must be 0 to {MAX_NEW_TOKENS}, not {max_new_tokens}")


def _text(raw: Any, limit: int) -> str:
    s = raw if isinstance(raw, str) else ""
    return s[:limit].encode("utf-8", "replace").decode("utf-8")


def parse(reply: Any, faults: Faults, n_texts: int, generating: bool) -> TextResult:
    """The reply, validated against the request it answers. Raises BadReply (recorded)."""
    with faults.reading("text reply"):
        task = str(reply.task)
        if task not in TASKS:
            raise faults.bad(f"the text reply names task {untrusted_text(task, 40)!r}")
        labels = []
        if len(reply.labels) not in (0, n_texts):
            raise faults.bad(f"{len(reply.labels)} labels for {n_texts} texts")
        for lab in reply.labels:
            score = float(lab.score)
            if not (math.isfinite(score) and 0.0 <= score <= 1.0):
                raise faults.bad(f"a label's score is {score!r}, not a probability")
            labels.append(Label(untrusted_text(lab.label, MAX_LABEL_CHARS), score))
        want = n_texts if generating else 0
        if len(reply.generated) != want:
            raise faults.bad(f"{len(reply.generated)} generated texts for {want} asked for")
        generated = [_text(g, MAX_GENERATED_CHARS) for g in reply.generated]
        tokens = int(reply.tokens)
        seconds = float(reply.infer_seconds)
        try:
            outputs = inline_outputs(reply, faults)
        except BadReply:
            raise
        return TextResult(
            task=task,
            outputs=outputs,
            labels=labels,
            generated=generated,
            tokens=tokens if 0 <= tokens < 1 << 40 else -1,
            infer_seconds=seconds if 0.0 <= seconds < 1e9 else -1.0,
        )
