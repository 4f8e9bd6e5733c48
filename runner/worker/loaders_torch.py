"""The torch loaders (TorchScript, torch.save files, safetensors, pickles, torch.package), run
inside the sandbox only; runner.worker.loaders chooses among them. torch is imported lazily."""

from __future__ import annotations

import contextlib
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from runner.worker.loaders import Loaded, LoadError, Options, Spec
from runner.worker.shared.formats import Format


def warm(fmt: Format) -> None:
    import io

    import torch
    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    module = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    with torch.no_grad():
        module(torch.zeros(1, 2))
    for obj in (module, module.state_dict()):
        buf = io.BytesIO()
        torch.save(obj, buf)
        for weights_only in (True, False):
            buf.seek(0)
            with contextlib.suppress(pickle.UnpicklingError):
                torch.load(buf, map_location="cpu", weights_only=weights_only)
    st_load(st_save({"w": torch.zeros(2)}))
    if fmt is Format.TORCH_PACKAGE:
        from runner.worker import loaders_package

        loaders_package.warm()
    if fmt is Format.TORCHSCRIPT:
        built = Path(__file__).with_name(WARM_ARCHIVE)
        data = built.read_bytes() if built.is_file() else _traced(module)
        scripted = torch.jit.load(io.BytesIO(data), map_location="cpu")  # type: ignore[no-untyped-call]
        with torch.no_grad():
            scripted(torch.zeros(1, 2))


# A tiny TorchScript archive of our own, loaded and called to warm the TorchScript loader. The
# image build makes it (build_warm_archive): tracing one costs most of a second of CPU in every
# fresh sandbox, loading one a few milliseconds. Outside the image, it is traced when needed.
WARM_ARCHIVE = "warm.torchscript"


def _traced(module: Any) -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.jit.save(torch.jit.trace(module, torch.zeros(1, 2)), buf)  # type: ignore[no-untyped-call]
    return buf.getvalue()


def build_warm_archive() -> None:
    """Write the warm-up archive beside this module (run once, when the image is built)."""
    import torch

    module = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    Path(__file__).with_name(WARM_ARCHIVE).write_bytes(_traced(module))


# --- loaders ----------------------------------------------------------------------------------


def _torch() -> Any:
    import torch

    return torch


def _module_runner(
    module: Any, inputs: list[Spec]
) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    torch = _torch()
    names = [s.name for s in inputs]

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = (
            [torch.from_numpy(np.array(feed[n])) for n in names]
            if names
            else [torch.from_numpy(np.array(v)) for v in feed.values()]
        )
        with torch.no_grad():
            out = module(*args)
        return _flatten_outputs(out)

    return run


def _flatten_outputs(out: Any) -> dict[str, np.ndarray]:
    torch = _torch()

    def as_array(v: Any, name: str) -> np.ndarray:
        if isinstance(v, torch.Tensor):
            return np.asarray(v.detach().cpu().contiguous().numpy())
        if isinstance(v, (int, float, bool)):
            return np.asarray(v)
        raise LoadError(f"output {name!r} is a {type(v).__name__}, not a tensor")

    if isinstance(out, dict):
        return {str(k): as_array(v, str(k)) for k, v in out.items()}
    if isinstance(out, (tuple, list)):
        return {f"output_{i}": as_array(v, f"output_{i}") for i, v in enumerate(out)}
    return {"output": as_array(out, "output")}


def _forward_inputs(module: Any) -> list[Spec]:
    """Input names from a module's forward signature (TorchScript schema or Python)."""
    import inspect

    schema = getattr(getattr(module, "forward", None), "schema", None)
    if schema is not None:
        return [Spec(a.name) for a in schema.arguments[1:]]
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [Spec(p.name) for p in params if p.kind in kinds and p.default is p.empty]


def _load_torchscript(
    path: Path, architecture: Path | None, threads: int, options: Options
) -> Loaded:
    torch = _torch()
    torch.set_num_threads(threads)
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise LoadError(f"torch.jit.load failed: {e}") from e
    module.eval()
    inputs = _forward_inputs(module)
    return Loaded(Format.TORCHSCRIPT, inputs, [], _module_runner(module, inputs))


def _from_state(
    fmt: Format, state: Any, architecture: Path | None, options: Options, directory: Path
) -> Loaded:
    """A loaded object as a model: a module runs; a state dict (a checkpoint's weights, found
    under its key) runs with an architecture file, and is described without one."""
    from runner.worker import checkpoints

    torch = _torch()
    weights, where = checkpoints.select(state, options.state_key)
    notes = [where] if where else []
    if isinstance(weights, torch.nn.Module):
        weights.eval()
        inputs = _forward_inputs(weights)
        return Loaded(fmt, inputs, [], _module_runner(weights, inputs), note="; ".join(notes))
    if weights and architecture is not None:
        module, built = checkpoints.build(architecture, weights, directory, options.non_strict)
        inputs = _forward_inputs(module)
        note = "; ".join(notes + built)
        return Loaded(fmt, inputs, [], _module_runner(module, inputs), note=note)
    if weights:
        notes.append(
            f"{len(weights)} weight tensors and no architecture: describe-only "
            "(pass --arch FILE that defines build_model(config) to run inference)"
        )
        notes.append(checkpoints.tensor_list(weights))
        return Loaded(fmt, [], [], None, note="; ".join(notes))
    return Loaded(fmt, [], [], None, note=f"a {type(state).__name__}, not a module: load-only")


def _load_torch(path: Path, architecture: Path | None, threads: int, options: Options) -> Loaded:
    torch = _torch()
    torch.set_num_threads(threads)
    try:
        state = _plain_state(torch, path, mapped=architecture is None)
    except pickle.UnpicklingError:
        # Not a plain state dict: unpickle it fully. Running this is the point of the
        # sandbox; it happens here and nowhere else.
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as e:
            raise LoadError(f"torch.load failed: {type(e).__name__}: {e}") from e
    except Exception as e:
        raise LoadError(f"torch.load failed: {type(e).__name__}: {e}") from e
    return _from_state(Format.TORCH, state, architecture, options, path.parent)


def _plain_state(torch: Any, path: Path, mapped: bool) -> Any:
    """The file read as a plain state dict (weights_only=True: no code runs, and no module can
    be in what it returns). With `mapped`, when no architecture is to use the values, the
    storages are mapped from the file (mmap=True) rather than copied: a 1 GiB state dict then
    loads in milliseconds, and none of its weights is read. A mapped record is read as the
    bytes lie in the file, so a record stored compressed would not give the values torch.load
    gives; that is why only a state dict that is listed (names and shapes), never computed
    with, is mapped. A mapped load that fails (torch refuses to map the legacy format and, as
    measured, compressed records) is read again the usual way, so every error is torch.load's
    own."""
    if mapped:
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except pickle.UnpicklingError:
            raise
        except Exception:  # noqa: S110  (read again the usual way, below)
            pass
    return torch.load(str(path), map_location="cpu", weights_only=True)


def _load_safetensors(
    path: Path, architecture: Path | None, threads: int, options: Options
) -> Loaded:
    from safetensors.torch import load_file

    torch = _torch()
    torch.set_num_threads(threads)
    files = sorted(path.parent.glob("*.safetensors")) if path.parent != Path("/") else [path]
    state: dict[str, Any] = {}
    try:
        for f in files or [path]:
            state.update(load_file(str(f), device="cpu"))
    except Exception as e:
        raise LoadError(f"safetensors could not load {path.name}: {e}") from e
    return _from_state(Format.SAFETENSORS, state, architecture, options, path.parent)


def _load_pickle(path: Path, architecture: Path | None, threads: int, options: Options) -> Loaded:
    from runner.worker import loaders_sklearn  # warmed before, when the file names sklearn

    if loaders_sklearn.is_joblib_dump(path):  # joblib's layout: only joblib.load reads it
        return loaders_sklearn.from_object(
            Format.PICKLE, loaders_sklearn.load_joblib(path), threads
        )
    try:
        with path.open("rb") as f:
            obj = pickle.load(f)  # the observation: what loading does
    except Exception as e:
        raise LoadError(f"unpickling failed: {type(e).__name__}: {e}") from e
    if loaders_sklearn.is_estimator(obj):
        return loaders_sklearn.from_object(Format.PICKLE, obj, threads)
    torch = sys.modules.get("torch")  # only when the pickle itself imported torch
    if torch is not None and isinstance(obj, (torch.nn.Module, dict)):
        return _from_state(Format.PICKLE, obj, architecture, options, path.parent)
    return Loaded(Format.PICKLE, [], [], None, note=f"a pickled {type(obj).__name__}: load-only")


def _load_torch_package(
    path: Path, architecture: Path | None, threads: int, options: Options
) -> Loaded:
    from runner.worker import loaders_package

    _torch().set_num_threads(threads)
    try:
        obj, note = loaders_package.load(path)  # runs the packaged code: the observation
    except Exception as e:
        raise LoadError(f"torch.package could not load it: {type(e).__name__}: {e}") from e
    loaded = _from_state(Format.TORCH_PACKAGE, obj, architecture, options, path.parent)
    loaded.note = f"{note}; {loaded.note}" if loaded.note else note
    return loaded


LOADERS: dict[Format, Callable[[Path, Path | None, int, Options], Loaded]] = {
    Format.TORCHSCRIPT: _load_torchscript,
    Format.TORCH: _load_torch,
    Format.SAFETENSORS: _load_safetensors,
    Format.PICKLE: _load_pickle,
    Format.TORCH_PACKAGE: _load_torch_package,
}
