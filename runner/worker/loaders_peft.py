"""PEFT adapters inside the sandbox: `adapter_config.json` and `adapter_model.safetensors` (or
`.bin`) beside it, a small set of weights that changes a base model.

The adapter's weights are read here as PEFT would read them (safetensors, or torch.load, whose
pickle this is the place to run). With a base model (the caller's `--base DIR`, mounted under
/base) a LoRA adapter is applied as PEFT merges it: W += B @ A * alpha / r (alpha / sqrt(r)
with rsLoRA; transposed for fan_in_fan_out layers; per-module rank and alpha patterns matched
by name), and weights saved whole (modules_to_save, biases) replace the base's. Other adapter
types, and LoRA variants with weights of their own (DoRA), are described and not run. Without a
base the adapter is described: the note names the base it was trained on.
"""

from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path
from typing import Any

from runner.worker import checkpoints
from runner.worker.loaders import Loaded, LoadError, Options
from runner.worker.shared.formats import Format

CONFIG_NAME = "adapter_config.json"
WEIGHT_NAMES = ("adapter_model.safetensors", "adapter_model.bin")
PREFIX = "base_model.model."  # where PEFT puts the base model's own names
MAX_PAIRS = 10_000


def _regular(path: Path) -> bool:
    try:
        return path.is_file() and not path.is_symlink()
    except OSError:
        return False


def is_adapter(path: Path) -> bool:
    """A directory with adapter_config.json and adapter weights (regular files)."""
    try:
        is_dir = path.is_dir()
    except OSError:
        return False
    return is_dir and _regular(path / CONFIG_NAME) and any(_regular(path / n) for n in WEIGHT_NAMES)


def read_config(path: Path) -> dict[str, Any]:
    try:
        fd = os.open(path / CONFIG_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            raw = f.read(checkpoints.CONFIG_BYTES + 1)
        data = json.loads(raw) if len(raw) <= checkpoints.CONFIG_BYTES else None
    except (OSError, ValueError, RecursionError) as e:
        raise LoadError(f"{CONFIG_NAME} is not readable JSON: {type(e).__name__}") from e
    if not isinstance(data, dict):
        raise LoadError(f"{CONFIG_NAME} is not a JSON object")
    return data


def _weights(path: Path) -> dict[str, Any]:
    import torch

    st = path / WEIGHT_NAMES[0]
    try:
        if _regular(st):
            from safetensors.torch import load_file

            return dict(load_file(str(st), device="cpu"))
        target = str(path / WEIGHT_NAMES[1])
        try:
            obj = torch.load(target, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:  # as transformers' older files need: the observation
            obj = torch.load(target, map_location="cpu", weights_only=False)
    except Exception as e:
        raise LoadError(
            f"the adapter's weights could not be loaded: {type(e).__name__}: {str(e)[:300]}"
        ) from e
    weights, _ = checkpoints.select(obj, "")
    if not isinstance(weights, dict):
        raise LoadError("the adapter's weights file holds no tensors")
    return weights


def _text(value: Any, limit: int = 200) -> str:
    return repr(str(value)[:limit])


def _rank(r: Any) -> str:
    return str(r) if isinstance(r, int) and not isinstance(r, bool) else "?"


def _runnable(config: dict[str, Any]) -> str:
    """'' when the adapter can be applied here; else why not."""
    peft_type = str(config.get("peft_type", ""))
    if peft_type.upper() != "LORA":
        return f"a {_text(peft_type or 'unknown')} adapter is described, not run (LoRA runs)"
    if config.get("use_dora"):
        return "a DoRA adapter is described, not run (plain LoRA runs)"
    return ""


def load(path: Path, threads: int, options: Options) -> Loaded:
    config = read_config(path)
    weights = _weights(path)  # the adapter's own bytes, read as PEFT reads them
    base_name = config.get("base_model_name_or_path") or "unnamed"
    about = (
        f"a PEFT adapter ({_text(config.get('peft_type', 'unknown'), 40)}, "
        f"r={_rank(config.get('r'))}) for the base model {_text(base_name)}"
    )
    why_not = _runnable(config)
    if options.base_path is None or why_not:
        hint = why_not or "describe-only: pass --base DIR (the base model's directory) to run it"
        note = f"{about}; {hint}; {checkpoints.tensor_list(weights)}"
        return Loaded(Format.SAFETENSORS, [], [], None, note=note)
    from runner.worker import loaders_hf

    if not loaders_hf.is_repo(options.base_path):
        raise LoadError("the base model is not a Hugging Face repository (no config.json)")
    loaded: Loaded = loaders_hf.load(options.base_path, threads, options)
    module = loaded.extra.get("module")
    if module is None:  # the runner the base's loader made holds it
        module = getattr(getattr(loaded.run, "__self__", None), "model", None)
    if module is None:
        raise LoadError("the base model's loader gave no module to apply the adapter to")
    applied = apply_lora(module, weights, config)
    loaded.note = "; ".join(n for n in (f"{about}, applied to --base", applied, loaded.note) if n)
    return loaded


def _pattern(patterns: Any, name: str, default: float) -> float:
    """A per-module value (rank_pattern, alpha_pattern), matched by the module's name or its
    last parts (no regular expressions from the file are run)."""
    if isinstance(patterns, dict):
        for key, value in list(patterns.items())[:256]:
            k = str(key)
            if (name == k or name.endswith("." + k)) and isinstance(value, (int, float)):
                return float(value)
    return default


def _submodule(module: Any, name: str) -> Any:
    prefix = str(getattr(module, "base_model_prefix", "") or "")
    for candidate in (name, name[len(prefix) + 1 :] if name.startswith(prefix + ".") else None):
        if candidate is None:
            continue
        try:
            return module.get_submodule(candidate)
        except AttributeError:
            continue
    raise LoadError(f"the adapter names a module the base does not have: {_text(name, 120)}")


def _delta(a: Any, b: Any, weight: Any, embedding: bool, transpose: bool, name: str) -> Any:
    """B @ A shaped like the weight, checked before anything is multiplied."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
        raise LoadError(f"the LoRA weights of {_text(name, 120)} are not a pair of matrices")
    shape = (b.shape[0], a.shape[1])
    flip = embedding or transpose
    want = tuple(weight.shape[::-1]) if flip else tuple(weight.shape)
    if weight.ndim != 2 or shape != want:
        raise LoadError(
            f"the LoRA weights of {_text(name, 120)} make {list(shape)}, "
            f"the base's weight is {list(weight.shape)}"
        )
    delta = b.float() @ a.float()
    return delta.T if flip else delta


def apply_lora(module: Any, weights: dict[str, Any], config: dict[str, Any]) -> str:
    """Merge the LoRA pairs into the module's weights and copy the weights saved whole; a note
    with the counts."""
    import torch

    alpha = float(config.get("lora_alpha", 8) or 8)
    rslora, fan = bool(config.get("use_rslora")), bool(config.get("fan_in_fan_out"))
    pairs, whole = _split(weights)
    own = module.state_dict()
    with torch.no_grad():
        for (name, embedding), (a, b) in list(pairs.items())[:MAX_PAIRS]:
            sub = _submodule(module, name)
            weight = sub.weight
            r = _pattern(config.get("rank_pattern"), name, float(a.shape[0])) or 1.0
            al = _pattern(config.get("alpha_pattern"), name, alpha)
            scale = al / math.sqrt(r) if rslora else al / r
            delta = _delta(a, b, weight, embedding, fan and not embedding, name)
            weight += (delta * scale).to(weight.dtype)
        replaced, ignored = 0, 0
        for key, value in whole.items():
            target = _own_key(own, key)
            if target is None or tuple(own[target].shape) != tuple(value.shape):
                ignored += 1
                continue
            own[target].copy_(value.to(own[target].dtype))
            replaced += 1
    note = f"{min(len(pairs), MAX_PAIRS)} LoRA pairs merged"
    note += f", {replaced} whole weights replaced" if replaced else ""
    return note + (f", {ignored} weights that fit nothing in the base ignored" if ignored else "")


def _own_key(own: dict[str, Any], key: str) -> str | None:
    name = key[len(PREFIX) :] if key.startswith(PREFIX) else key
    if name in own:
        return name
    rest = name.partition(".")[2]
    return rest if rest in own else None  # the adapter names the task model, the base is bare


Pairs = dict[tuple[str, bool], tuple[Any, Any]]


def _split(weights: dict[str, Any]) -> tuple[Pairs, dict[str, Any]]:
    """LoRA pairs by module name (and whether it is an embedding's), and the whole weights."""
    pairs: Pairs = {}
    whole: dict[str, Any] = {}
    for key, value in weights.items():
        for marker, embedding in ((".lora_A.", False), (".lora_embedding_A", True)):
            if marker in key:
                name = key.split(marker, 1)[0]
                b_key = key.replace(marker, marker.replace("A", "B"), 1)
                if b_key not in weights:
                    raise LoadError(f"the adapter has no B matrix for {_text(key, 120)}")
                short = name[len(PREFIX) :] if name.startswith(PREFIX) else name
                pairs[(short, embedding)] = (value, weights[b_key])
                break
        else:
            if ".lora_B." not in key and ".lora_embedding_B" not in key:
                whole[key] = value
    return pairs, whole
