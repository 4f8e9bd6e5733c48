"""Training checkpoints and architecture files, inside the sandbox.

A checkpoint keeps its weights under a key (`state_dict`, `model_state_dict`, `model`, `ema`,
...) next to the optimiser's state and the epoch: `select` finds them, by the caller's
`--state-key` or by itself among the common keys. An architecture file is the user's own code:
`build` runs it with audit paused, calls `build_model(config)` (config.json as a dict, or None;
`build_model()` when it takes no argument), strips a wrapper's prefix (Lightning's `model.`,
DataParallel's `module.`) the architecture's keys lack, and loads the weights, strictly unless
asked otherwise. What the architecture file raises is blamed on it (ArchitectureError), never on
the model. torch is imported lazily.
"""

from __future__ import annotations

import inspect
import json
import os
import runpy
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

from runner.worker import audit
from runner.worker.loaders import LoadError

COMMON_KEYS = (
    "state_dict",
    "model_state_dict",
    "model_state",
    "model",
    "module",
    "net",
    "network",
    "ema",
    "model_ema",
    "ema_state_dict",
    "weights",
    "params",
)
CONFIG_BYTES = 1 << 20
MAX_NAMED = 5  # key names a note lists
MAX_PREFIXES = 8  # candidate prefixes tried per round
# How the worker's message starts when the architecture file is to blame (the host reads it)
ARCH_BLAME = "the architecture file "


class ArchitectureError(LoadError):
    """The architecture file (the user's code) raised, or does not define what it must."""


def _torch() -> Any:
    import torch

    return torch


def _name(key: object, limit: int = 80) -> str:
    return repr(str(key)[:limit])


def _names(keys: list[str], total: int | None = None) -> str:
    total = len(keys) if total is None else total
    shown = ", ".join(_name(k) for k in keys[:MAX_NAMED])
    return shown + (f" and {total - MAX_NAMED} more" if total > MAX_NAMED else "")


def _tensors(obj: dict[Any, Any]) -> dict[str, Any]:
    torch = _torch()
    return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def _as_weights(value: Any) -> Any:
    """A module, or a non-empty dict of tensors; None for anything else."""
    torch = _torch()
    if isinstance(value, torch.nn.Module):
        return value
    if isinstance(value, dict):
        return _tensors(value) or None
    return None


def _lookup(state: dict[Any, Any], key: str) -> Any:
    """state[key]; else a path A/B through nested dicts, where a segment of a flat dict of
    tensors picks the keys under that prefix (`model` picks `model.x` as `x`)."""
    if key in state:
        return state[key]
    value: Any = state
    for part in [p for p in key.split("/") if p][:8]:
        if not isinstance(value, dict):
            return None
        if part in value:
            value = value[part]
            continue
        prefix = part + "."
        value = {k[len(prefix) :]: v for k, v in _tensors(value).items() if k.startswith(prefix)}
        if not value:
            return None
    return value


def select(state: Any, key: str) -> tuple[Any, str]:
    """(the weights: a module, a dict of tensors, or None; a note saying where they were)."""
    if not isinstance(state, dict):
        return (state if _as_weights(state) is not None else None), ""
    if key:
        value = _lookup(state, key)
        got = _as_weights(value) if value is not None else None
        if got is None:
            what = (
                "the checkpoint has no such key"
                if value is None
                else f"the checkpoint holds a {type(value).__name__} there, not weights"
            )
            keys = [str(k) for k in list(state)[:50]]
            raise LoadError(f"--state-key {key!r}: {what} (its keys: {_names(keys, len(state))})")
        return got, f"weights under the checkpoint's key {_name(key)}"
    top = _tensors(state)
    if top:
        return top, ""
    for k in COMMON_KEYS:
        if k in state and (got := _as_weights(state[k])) is not None:
            return got, (
                f"weights under the checkpoint's key {k!r} (found by itself; "
                "--state-key KEY picks another)"
            )
    return None, ""


def tensor_list(weights: dict[str, Any], limit: int = 8) -> str:
    """The first tensors' names and shapes, and how many there are: 'fc.weight' [2, 4], ..."""
    items = list(weights.items())
    shown = ", ".join(f"{_name(k)} {list(v.shape)}" for k, v in items[:limit])
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return f"tensors: {shown}{more}"


def read_config(directory: Path) -> tuple[dict[str, Any] | None, str]:
    """config.json beside the weights as a dict (bounded, JSON only, never a symlink), or None;
    and a note when there is one that could not be read."""
    path = directory / "config.json"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, ""
    except OSError as e:
        return None, f"config.json could not be opened ({e.strerror}): build_model got None"
    try:
        with os.fdopen(fd, "rb") as f:
            raw = f.read(CONFIG_BYTES + 1)
        if len(raw) > CONFIG_BYTES:
            return None, f"config.json is over {CONFIG_BYTES} bytes: build_model got None"
        data = json.loads(raw)
    except (OSError, ValueError, RecursionError) as e:
        return None, f"config.json is not JSON ({type(e).__name__}): build_model got None"
    if not isinstance(data, dict):
        return None, "config.json is not a JSON object: build_model got None"
    return data, ""


def _line_in(e: BaseException, architecture: Path) -> int | None:
    if isinstance(e, SyntaxError) and e.filename == str(architecture):
        return e.lineno
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == str(architecture)]
    return frames[-1].lineno if frames else None


def _blame(e: BaseException, architecture: Path) -> ArchitectureError:
    line = _line_in(e, architecture)
    where = f" at line {line}" if line else ""
    return ArchitectureError(f"{ARCH_BLAME}raised {type(e).__name__}: {str(e)[:300]}{where}")


def _call_build(build: Any, config: dict[str, Any] | None) -> Any:
    try:
        params = list(inspect.signature(build).parameters.values())
    except (TypeError, ValueError):
        params = []
    kinds = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.VAR_POSITIONAL,
    )
    return build(config) if any(p.kind in kinds for p in params) else build()


def _module(architecture: Path, config: dict[str, Any] | None) -> Any:
    """Run the architecture file and its build_model: the user's own code, not recorded."""
    with audit.paused():
        try:
            namespace = runpy.run_path(str(architecture), run_name="airlock_architecture")
            build = namespace.get("build_model")
            if not callable(build):
                raise ArchitectureError(f"{ARCH_BLAME}defines no build_model(config) function")
            module = _call_build(build, config)
        except ArchitectureError:
            raise
        except (Exception, SystemExit) as e:  # the user's code raises anything
            raise _blame(e, architecture) from e
    if not isinstance(module, _torch().nn.Module):
        raise ArchitectureError(
            f"{ARCH_BLAME}has a build_model() that returned a {type(module).__name__}, "
            "not a torch.nn.Module"
        )
    return module


def fit_keys(state: dict[str, Any], expected: set[str]) -> tuple[dict[str, Any], str]:
    """The weights with a wrapper's prefix (`model.`, `module.`, `module.model.`) stripped, when
    the architecture's keys lack it and stripping fits more of them; a note saying so."""
    hits = len(state.keys() & expected)
    if hits == len(state) or not state:
        return state, ""
    candidates: Counter[str] = Counter()
    for depth in (1, 2):  # `module.model.x`: two wrappers at most
        candidates.update(
            ".".join(parts[:depth]) + "."
            for k in state
            if len(parts := k.split(".", depth)) > depth
        )
    best, best_hits = "", hits
    for prefix, _count in candidates.most_common(2 * MAX_PREFIXES):
        n = sum(1 for k in state if k.startswith(prefix) and k[len(prefix) :] in expected)
        if n > best_hits:
            best, best_hits = prefix, n
    if not best:
        return state, ""
    kept = {k[len(best) :]: v for k, v in state.items() if k.startswith(best)}
    left = len(state) - len(kept)
    note = (
        f"stripped the prefix {_name(best)} from {len(kept)} keys (the architecture's keys lack it)"
    )
    return kept, note + (f"; {left} keys without it were left out" if left else "")


def build(
    architecture: Path, state: dict[str, Any], directory: Path, non_strict: bool
) -> tuple[Any, list[str]]:
    """(the module built by the architecture file with the weights loaded; notes)."""
    config, config_note = read_config(directory)
    notes = [config_note] if config_note else []
    if config is not None:
        notes.append("build_model got config.json")
    module = _module(architecture, config)
    state, fitted = fit_keys(state, set(module.state_dict().keys()))
    if fitted:
        notes.append(fitted)
    try:
        result = module.load_state_dict(state, strict=not non_strict)
    except Exception as e:
        hint = "" if non_strict else " (--non-strict loads the weights that fit)"
        raise LoadError(f"the weights do not fit the architecture: {str(e)[:600]}{hint}") from e
    if non_strict:
        missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
        notes.append(
            f"non-strict load: {len(missing)} missing keys"
            + (f" ({_names(missing)})" if missing else "")
            + f", {len(unexpected)} unexpected"
            + (f" ({_names(unexpected)})" if unexpected else "")
        )
    module.eval()
    return module, notes
