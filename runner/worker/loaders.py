"""Model loaders that run inside the sandbox, one per format.

This is the only place that deserializes a model, and it only ever runs in the container.
torch and onnxruntime are imported lazily, so the worker answers health checks first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from runner.worker import audit
from runner.worker.shared import onnx_data
from runner.worker.shared.formats import Format, FormatError, detect


class LoadError(Exception):
    """The model could not be loaded; the message says why."""


class Arena(Protocol):
    """Where outputs can be written in place (shared memory): place(name, dtype, shape) gives a
    writable array or None; rewind() takes every one back."""

    def place(self, name: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray | None: ...

    def rewind(self) -> None: ...


@dataclass(frozen=True)
class Spec:
    name: str
    dtype: str = ""  # numpy dtype name; "" when unknown
    shape: tuple[int, ...] = ()  # -1 for a dynamic dimension; () when unknown


@dataclass(frozen=True)
class Options:
    """How to load, as the caller chose (LoadRequest)."""

    trust_remote_code: bool = False  # a Hugging Face repository may run the code it ships
    state_key: str = ""  # the key a training checkpoint holds its weights under
    non_strict: bool = False  # load_state_dict(strict=False) for an architecture file
    base_path: Path | None = None  # a base model (under /base) for an adapter


@dataclass
class Loaded:
    format: Format
    inputs: list[Spec]
    outputs: list[Spec]
    run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # Like run, writing the outputs it can straight into the arena's views, so they need no
    # copy.
    run_into: Callable[[dict[str, np.ndarray], Arena], dict[str, np.ndarray]] | None = None
    # Text in, text out (a Hugging Face repository): texts and max_new_tokens, max_seconds
    text: Callable[[list[str], int, float], Any] | None = None

    @property
    def can_infer(self) -> bool:
        return self.run is not None


_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
}


def load(
    path: Path,
    fmt: str = "auto",
    architecture: Path | None = None,
    threads: int = 1,
    options: Options | None = None,
) -> Loaded:
    opts = options or Options()
    if _is_adapter(path, fmt, architecture):
        from runner.worker import loaders_peft

        _warm(Format.HUGGINGFACE if opts.base_path else Format.SAFETENSORS, opts.base_path)
        audit.start_recording()
        return loaders_peft.load(path, threads, opts)
    if _is_hf_repo(path, fmt, architecture):
        from runner.worker import loaders_hf

        _warm(Format.HUGGINGFACE, path)
        audit.start_recording()
        return loaders_hf.load(path, threads, opts)
    try:
        detection = detect(path)
    except FormatError as e:
        raise LoadError(str(e)) from e
    chosen = Format(fmt) if fmt and fmt != "auto" else detection.format
    if chosen is Format.HUGGINGFACE:
        chosen = detection.format  # with an architecture file, the weights' own format
    _warm(chosen, detection.path)
    audit.start_recording()
    return _loader(chosen)(detection.path, architecture, threads, opts)


def _is_adapter(path: Path, fmt: str, architecture: Path | None) -> bool:
    """A PEFT adapter's directory (adapter_config.json and its weights), unless an architecture
    file or another format is asked for."""
    if architecture is not None or fmt not in ("auto", "", Format.HUGGINGFACE.value):
        return False
    from runner.worker import loaders_peft

    return loaders_peft.is_adapter(path)


def _is_hf_repo(path: Path, fmt: str, architecture: Path | None) -> bool:
    """A directory with a config.json (a regular file), loaded as transformers would: unless
    an architecture file builds the module, or another format is asked for."""
    if architecture is not None or fmt not in ("auto", "", Format.HUGGINGFACE.value):
        return False
    from runner.worker import loaders_hf

    return loaders_hf.is_repo(path)


def prepare(path: Path | None, fmt: str = "auto") -> None:
    """Import what the format's loader needs, without recording it as the model's doing. With
    no model yet (a pre-started sandbox), warm the named format."""
    if fmt and fmt != "auto":
        _warm(Format(fmt), path)
    elif path is not None and _is_hf_repo(path, fmt, None):
        _warm(Format.HUGGINGFACE, path)
    elif path is not None:
        try:
            detection = detect(path)
        except (FormatError, OSError):
            return
        _warm(detection.format, detection.path)


def _warm(fmt: Format, path: Path | None) -> None:
    with audit.paused():
        _preimport(fmt, path)


def _mentions_torch(path: Path, limit: int = 256 << 20) -> bool:
    with path.open("rb") as f:
        tail = b""
        read = 0
        while read < limit:
            chunk = f.read(1 << 20)
            if not chunk:
                return False
            if b"torch" in tail + chunk:
                return True
            tail, read = chunk[-8:], read + len(chunk)
    return False


def _mentions_sklearn(path: Path) -> bool:
    from runner.worker import loaders_sklearn

    return loaders_sklearn.mentions(path, (b"sklearn", b"NumpyArrayWrapper"))


def _preimport(fmt: Format, path: Path | None) -> None:
    """Import what the format's loader needs and run it once on a tiny benign model of our own,
    before the model's code runs, so library start-up and lazy initialisation (which exec
    generated code, load native libraries, write caches, probe the system) are the baseline."""
    if fmt is Format.ONNX:
        _warm_onnx()
    elif fmt in FORMAT_MODULES:
        _module(fmt).warm(path)
    elif fmt is Format.HUGGINGFACE:
        from runner.worker import loaders_hf, loaders_torch

        loaders_torch.warm(Format.SAFETENSORS)
        loaders_hf.warm(path)
    elif fmt is Format.PICKLE and path is not None and _mentions_sklearn(path):
        from runner.worker import loaders_sklearn  # a pickled estimator or a joblib dump

        loaders_sklearn.warm(path)
    elif fmt is not Format.PICKLE or (path is not None and _mentions_torch(path)):
        from runner.worker import loaders_torch

        loaders_torch.warm(fmt)


# y = relu(x), x float [1]: what onnx.helper makes for it (kept as bytes: the worker never
# imports the onnx package)
_WARM_ONNX = (
    b'\x08\x08:6\n\x0c\n\x01x\x12\x01y"\x04Relu\x12\x04warmZ\x0f\n\x01x\x12\n\n'
    b"\x08\x08\x01\x12\x04\n\x02\x08\x01b\x0f\n\x01y\x12\n\n\x08\x08\x01\x12\x04\n"
    b"\x02\x08\x01B\x04\n\x00\x10\x11"
)


def _warm_onnx() -> None:
    import onnxruntime as ort

    # onnxruntime's own usage telemetry looks up a Microsoft host some seconds after a session
    # starts: the library's doing, not the model's, and a lookup (AL102) in a long session
    if hasattr(ort, "disable_telemetry_events"):
        ort.disable_telemetry_events()
    sess = ort.InferenceSession(_WARM_ONNX, providers=["CPUExecutionProvider"])
    sess.run(None, {"x": np.zeros(1, np.float32)})
    binding, out = sess.io_binding(), np.zeros(1, np.float32)  # the in-place path's first use
    binding.bind_cpu_input("x", np.zeros(1, np.float32))
    binding.bind_output("y", "cpu", 0, out.dtype, [1], out.ctypes.data)
    sess.run_with_iobinding(binding)


# --- ONNX -----------------------------------------------------------------------------------


def _check_external_data(model_file: Path) -> None:
    """External data must stay inside the model's own directory: no absolute paths, no `..`,
    no symlinks (the same reader the host's pre-flight uses)."""
    try:
        problems = onnx_data.escapes(model_file)
    except ValueError as e:
        raise LoadError(f"the ONNX file is malformed: {e}") from e
    if problems:
        raise LoadError(f"{problems[0]}; refusing to load")


def _load_onnx(path: Path, architecture: Path | None, threads: int, options: Options) -> Loaded:
    import onnxruntime as ort

    _check_external_data(path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own untyped errors
        raise LoadError(f"onnxruntime could not load the model: {e}") from e

    def spec(arg: Any) -> Spec:
        shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or []))
        return Spec(arg.name, _ORT_TYPES.get(arg.type, ""), shape)

    inputs = [spec(a) for a in sess.get_inputs()]
    outputs = [spec(a) for a in sess.get_outputs()]
    runner = _OnnxRunner(sess, [o.name for o in outputs])
    return Loaded(Format.ONNX, inputs, outputs, runner.run, run_into=runner.run_into)


class _OnnxRunner:
    """Runs an ONNX session plainly, or with its outputs bound in place in the output window
    while the model's declared output shapes hold."""

    def __init__(self, sess: Any, out_names: list[str]) -> None:
        import onnxruntime as ort

        self.sess, self.out_names = sess, out_names
        self.declared = _declared_shapes(sess)
        self.quiet = ort.RunOptions()
        self.quiet.log_severity_level = 4  # a declaration that does not hold is handled
        self.trusted = True  # until a declared output shape turns out wrong

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.sess.run(self.out_names, feed)
        return {n: np.asarray(r) for n, r in zip(self.out_names, results, strict=True)}

    def run_into(self, feed: dict[str, np.ndarray], arena: Arena) -> dict[str, np.ndarray]:
        if not self.trusted:
            return self.run(feed)
        shapes = _output_shapes(self.declared, feed)
        targets = {
            n: view
            for n, (dtype, shape) in shapes.items()
            if (view := arena.place(n, dtype, shape)) is not None
        }
        if not targets:
            return self.run(feed)
        binding = self.sess.io_binding()
        for name, arr in feed.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(arr))
        for name in self.out_names:
            if name in targets:
                view = targets[name]
                binding.bind_output(name, "cpu", 0, view.dtype, list(view.shape), view.ctypes.data)
            else:
                binding.bind_output(name, "cpu")
        try:
            self.sess.run_with_iobinding(binding, self.quiet)
        except Exception:
            # Either the model fails on this input (the plain run raises the same), or a
            # declared shape did not hold: then stop binding outputs for this model.
            arena.rewind()
            results = self.run(feed)
            self.trusted = False
            return results
        values = binding.get_outputs()
        return {
            n: targets[n] if n in targets else np.asarray(v.numpy())
            for n, v in zip(self.out_names, values, strict=True)
        }


Declared = tuple[list[tuple[str, list[Any]]], list[tuple[str, str, list[Any]]]]


def _declared_shapes(sess: Any) -> Declared:
    ins = [(a.name, list(a.shape or [])) for a in sess.get_inputs()]
    outs = [(a.name, _ORT_TYPES.get(a.type, ""), list(a.shape or [])) for a in sess.get_outputs()]
    return ins, outs


def _output_shapes(
    declared: Declared, feed: dict[str, np.ndarray]
) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The outputs whose shape the model's declaration fixes for this feed: every dimension a
    number, or a symbol that names an input's dimension ("n" in x[n, 256] -> y[n, 256]).
    onnxruntime checks the shape it computes against the one bound, so a declaration that
    does not hold costs a second run, never a wrong answer."""
    ins, outs = declared
    symbols: dict[str, int] = {}
    for name, shape in ins:
        arr = feed.get(name)
        if arr is not None and len(shape) == arr.ndim:
            for dim, size in zip(shape, arr.shape, strict=True):
                if isinstance(dim, str) and dim:
                    symbols.setdefault(dim, int(size))
    found: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, dtype, shape in outs:
        sizes = [
            d if isinstance(d, int) and d >= 0 else symbols.get(d) if isinstance(d, str) else None
            for d in shape
        ]
        if dtype and shape and all(s is not None for s in sizes):
            found[name] = (dtype, tuple(int(s) for s in sizes if s is not None))
    return found


# Formats whose loader is a module of its own, imported only when such a model comes: each
# has load(path, architecture, threads, options) -> Loaded and warm(path) (the imports, and a
# run on a tiny benign model of its own, before the model's code runs).
FORMAT_MODULES = {
    Format.GGUF: "loaders_gguf",
    Format.KERAS: "loaders_keras",
    Format.KERAS_H5: "loaders_keras",
    Format.TFLITE: "loaders_tflite",
    Format.SAVEDMODEL: "loaders_tf",
    Format.JOBLIB: "loaders_sklearn",
    Format.SKOPS: "loaders_sklearn",
    Format.NUMPY: "loaders_numpy",
}


def _module(fmt: Format) -> Any:
    import importlib

    return importlib.import_module(f"runner.worker.{FORMAT_MODULES[fmt]}")


def _loader(fmt: Format) -> Callable[[Path, Path | None, int, Options], Loaded]:
    if fmt is Format.ONNX:
        return _load_onnx
    if fmt in FORMAT_MODULES:
        return _module(fmt).load  # type: ignore[no-any-return]
    from runner.worker import loaders_torch  # imports this module's types: not at the top

    return loaders_torch.LOADERS[fmt]
