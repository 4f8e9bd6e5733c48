"""Hugging Face repositories inside the sandbox, loaded as `transformers` would load them.

The model is built from config.json with the Auto class its `architectures` names, its weights
read by `from_pretrained` (safetensors, sharded or not, or pytorch_model.bin), and texts are
tokenised with the repository's own tokenizer. All of it is untrusted input, and all of it runs
here only. The image sets transformers' offline mode, and its caches and module directory are
on the scratch tmpfs (sandbox_images/Dockerfile); a repository's own code (`auto_map`) is run
only when the caller allowed it (`trust_remote_code`), as transformers does.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from runner.worker.shared.formats import Format

if TYPE_CHECKING:
    from runner.worker.loaders import Loaded, Options

CONFIG_BYTES = 1 << 20  # config.json read here, bounded like the host's read
MAX_TEXTS = 64
MAX_TEXT_CHARS = 64 << 10
MAX_TOKENS = 512  # per text, after tokenisation (truncated beyond)
MAX_NEW_TOKENS = 512
MAX_GENERATED_CHARS = 64 << 10
MAX_OPTIONAL_BYTES = 32 << 20  # last_hidden_state beside the embeddings, when it fits this

# The task, and the Auto class that builds it, by the end of the architecture's name.
_TASKS = (
    ("ForSequenceClassification", "classification", "AutoModelForSequenceClassification"),
    ("ForCausalLM", "causal-lm", "AutoModelForCausalLM"),
    ("LMHeadModel", "causal-lm", "AutoModelForCausalLM"),
    ("ForMaskedLM", "hidden-states", "AutoModelForMaskedLM"),
    ("ForTokenClassification", "hidden-states", "AutoModelForTokenClassification"),
    ("Model", "embedding", "AutoModel"),
)
_TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


class TextError(Exception):
    """The caller's texts cannot be used (too many, too long, no tokenizer)."""


@dataclass
class TextOut:
    task: str
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    labels: list[tuple[str, float]] = field(default_factory=list)
    generated: list[str] = field(default_factory=list)
    tokens: int = 0


_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def is_repo(path: Path) -> bool:
    """A directory transformers can build a model from: a config.json (a regular file, never
    followed) that names a model_type or architectures, beside weights transformers reads (or
    with code of its own, which may make them). Anything else (a config.json beside an ONNX
    file) is loaded by its weights' own format."""
    try:
        cfg = path / "config.json"
        if not (path.is_dir() and cfg.is_file() and not cfg.is_symlink()):
            return False
        config = read_config(path)
        named = isinstance(config.get("model_type"), str) or bool(config.get("architectures"))
        weights = any((path / w).is_file() for w in _WEIGHTS) or "auto_map" in config
    except OSError:
        return False
    return named and weights


def read_config(path: Path) -> dict[str, Any]:
    """config.json as a dict, bounded; {} when it is not one."""
    cfg = path / "config.json"
    try:
        fd = os.open(cfg, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            raw = f.read(CONFIG_BYTES + 1)
        data = json.loads(raw) if len(raw) <= CONFIG_BYTES else {}
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def task_of(config: dict[str, Any]) -> tuple[str, str]:
    """The task and the Auto class name for a config's first architecture."""
    archs = config.get("architectures")
    name = archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else ""
    for suffix, task, auto in _TASKS:
        if name.endswith(suffix):
            return task, auto
    return "hidden-states", "AutoModel"


def _offline() -> None:
    for k, v in _OFFLINE.items():
        os.environ[k] = v


def warm(path: Path | None) -> None:
    """Run transformers once on tiny benign repositories of Airlock's own (an encoder, a
    classifier, a causal language model that generates, one that ships its own code), and
    import the modeling code the repository's architecture names, before any of the model's
    bytes are read: library start-up and lazy initialisation (imports, generated dataclass
    code, native libraries, module caches) are the baseline, not the model's doing. Only
    config.json's strings are looked at here, as data."""
    _offline()
    import transformers

    from runner.worker import audit_sources, warm_hf

    warm_hf.run_once()
    if path is not None:  # its code files' digests: only those bytes are its modules' bodies
        audit_sources.trust_repository(path)
    config = read_config(path) if path is not None else {}
    archs = config.get("architectures")
    names = [a for a in archs if isinstance(a, str)] if isinstance(archs, list) else []
    known = getattr(transformers, "_class_to_module", {})
    for name in names[:4]:
        if name.isidentifier() and name in known:
            getattr(transformers, name, None)  # a class transformers ships: imports its module
    model_type = config.get("model_type")
    if isinstance(model_type, str) and model_type.isidentifier():
        from transformers.models.auto import tokenization_auto

        mapping = getattr(tokenization_auto, "TOKENIZER_MAPPING_NAMES", {})
        for cls_name in _names(mapping.get(model_type)):
            if cls_name in known:
                getattr(transformers, cls_name, None)


def _names(entry: Any) -> list[str]:
    if isinstance(entry, str):
        return [entry]
    if isinstance(entry, (tuple, list)):
        return [e for e in entry if isinstance(e, str)]
    return []


def load(path: Path, threads: int, options: Options) -> Loaded:
    """Build the model and tokenizer from the repository (offline: set by warm())."""
    import torch
    import transformers

    from runner.worker.loaders import Loaded, LoadError, Spec

    torch.set_num_threads(threads)
    _quiet_library()
    config = read_config(path)
    task, auto_name = task_of(config)
    auto = getattr(transformers, auto_name)
    trust = bool(options.trust_remote_code)
    try:
        model = auto.from_pretrained(str(path), trust_remote_code=trust, local_files_only=True)
    except Exception as e:  # transformers and the model's own code raise anything
        raise LoadError(f"transformers could not load the repository: {_why(e)}") from e
    model.eval()
    tokenizer, note = _tokenizer(path, trust)
    runner = _Runner(model, tokenizer, task)
    inputs = [Spec("input_ids", "int64", (-1, -1)), Spec("attention_mask", "int64", (-1, -1))]
    loaded = Loaded(Format.HUGGINGFACE, inputs, [], runner.run, note=note)
    loaded.text = runner.text
    loaded.extra["task"] = task
    loaded.extra["module"] = model
    return loaded


def _quiet_library() -> None:
    """transformers reads /proc/mounts on every load, to tell whether a weights file is on an
    hf-mount FUSE filesystem: a probe of the sandbox (AL304) when the model does it. The model
    here is always on a bind mount, so Airlock answers that question itself, and a read of
    /proc/mounts stays the model's (or its code's) own doing."""
    from transformers import modeling_utils

    if hasattr(modeling_utils, "_is_on_hf_mount"):
        modeling_utils._is_on_hf_mount = lambda path: False


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e)[:500]}"


def _tokenizer(path: Path, trust: bool) -> tuple[Any, str]:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(
            str(path), trust_remote_code=trust, local_files_only=True
        )
    except Exception as e:  # no tokenizer files, or damaged ones: token arrays still work
        return None, f"no usable tokenizer ({_why(e)[:200]}): pass token arrays with --input"
    return tok, ""


class _Runner:
    def __init__(self, model: Any, tokenizer: Any, task: str) -> None:
        self.model, self.tokenizer, self.task = model, tokenizer, task
        if tokenizer is not None and task == "causal-lm":
            tokenizer.padding_side = "left"  # the next token of every text is at the end
        if tokenizer is not None and tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        args = {k: torch.from_numpy(np.array(v)) for k, v in feed.items()}
        with torch.no_grad():
            out = self.model(**args, **self._quiet())
        return {
            str(k): np.asarray(v.detach().cpu().contiguous().numpy())
            for k, v in out.items()
            if isinstance(v, torch.Tensor)
        }

    def _quiet(self) -> dict[str, Any]:
        return {"use_cache": False} if self.task == "causal-lm" else {}

    def text(self, texts: list[str], max_new_tokens: int, max_seconds: float) -> TextOut:
        import torch

        if self.tokenizer is None:
            raise TextError("the repository has no usable tokenizer: pass token arrays instead")
        if not texts or len(texts) > MAX_TEXTS or any(len(t) > MAX_TEXT_CHARS for t in texts):
            raise TextError(f"give 1 to {MAX_TEXTS} texts of at most {MAX_TEXT_CHARS} characters")
        if max_new_tokens and self.task != "causal-lm":
            raise TextError(f"this model ({self.task}) does not generate text")
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
        )
        enc = {
            k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")
        }
        if "attention_mask" not in enc:  # a tokenizer that gives none: every token counts
            enc["attention_mask"] = torch.ones_like(enc["input_ids"])
        result = TextOut(self.task, tokens=int(enc["attention_mask"].sum()))
        with torch.no_grad():
            out = self.model(**enc, **self._quiet())
            self._outputs(out, enc["attention_mask"], result)
            if max_new_tokens > 0:
                result.generated = self._generate(enc, max_new_tokens, max_seconds)
        return result

    def _outputs(self, out: Any, mask: Any, result: TextOut) -> None:
        import torch

        if self.task == "embedding" and getattr(out, "last_hidden_state", None) is not None:
            hidden = out.last_hidden_state.float()
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            result.outputs["embeddings"] = pooled.numpy()
            if hidden.numel() * 4 <= MAX_OPTIONAL_BYTES:  # a reply stays small for big models
                result.outputs["last_hidden_state"] = hidden.numpy()
        elif self.task == "classification":
            logits = out.logits.float()
            probs = torch.softmax(logits, dim=-1)
            id2label = getattr(self.model.config, "id2label", None) or {}
            for row in probs:
                i = int(row.argmax())
                label = str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}")))[:200]
                result.labels.append((label, float(row[i])))
            result.outputs["logits"] = logits.numpy()
        elif self.task == "causal-lm":
            last = out.logits[:, -1, :].float()
            result.outputs["next_token_logprobs"] = torch.log_softmax(last, dim=-1).numpy()
        else:
            for k, v in out.items():
                if isinstance(v, torch.Tensor):
                    result.outputs[str(k)] = v.float().numpy()

    def _generate(self, enc: dict[str, Any], max_new_tokens: int, max_seconds: float) -> list[str]:
        n = min(max_new_tokens, MAX_NEW_TOKENS)
        pad = self.tokenizer.pad_token_id
        ids = self.model.generate(
            **enc,
            max_new_tokens=n,
            do_sample=False,
            max_time=max(0.1, max_seconds),
            pad_token_id=pad,
        )
        new = ids[:, enc["input_ids"].shape[1] :]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [str(t)[:MAX_GENERATED_CHARS] for t in texts]
