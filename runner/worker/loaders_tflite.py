"""TFLite (LiteRT) flatbuffers, run with the LiteRT interpreter (ai_edge_litert), one thread.

The inputs and outputs are the interpreter's tensor details (a dynamic dimension, from
shape_signature, is -1); a call sets each input, resizing the interpreter's input first when
the fed shape differs (a dynamic batch), invokes, and copies each output out. Flex (TensorFlow)
ops need TensorFlow's Flex delegate, which LiteRT's wheel does not carry: such a model does not
load here (the host's reader names its ops).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from runner.worker.loaders import Loaded, LoadError, Options, Spec
from runner.worker.shared.formats import Format

# y = relu(x), x float32 [1]: what TensorFlow's TFLite converter makes of it
_WARM_TFLITE = (
    b"\x1c\x00\x00\x00TFL3\x14\x00 \x00\x1c\x00\x18\x00\x14\x00\x10\x00\x0c\x00\x00\x00"
    b"\x08\x00\x04\x00\x14\x00\x00\x00\x1c\x00\x00\x00\x84\x00\x00\x00\xdc\x00\x00\x00\x8c\x01\x00\x00"
    b"\x9c\x01\x00\x00\xb4\x02\x00\x00\x03\x00\x00\x00\x01\x00\x00\x00\x10\x00\x00\x00\x00\x00\n\x00"
    b"\x10\x00\x0c\x00\x08\x00\x04\x00\n\x00\x00\x00\x0c\x00\x00\x00\x1c\x00\x00\x004\x00\x00\x00"
    b"\x0f\x00\x00\x00serving_default\x00\x01\x00\x00\x00"
    b"\x04\x00\x00\x00\xa4\xff\xff\xff\x01\x00\x00\x00\x04\x00\x00\x00\x01\x00\x00\x00y\x00\x00\x00"
    b"\x01\x00\x00\x00\x04\x00\x00\x00\x0e\xff\xff\xff\x04\x00\x00\x00\x01\x00\x00\x00x\x00\x00\x00"
    b"\x02\x00\x00\x004\x00\x00\x00\x04\x00\x00\x00\xdc\xff\xff\xff\x04\x00\x00\x00\x04\x00\x00\x00"
    b"\x13\x00\x00\x00CONVERSION_METADATA\x00"
    b"\x08\x00\x0c\x00\x08\x00\x04\x00\x08\x00\x00\x00\x03\x00\x00\x00\x04\x00\x00\x00\x13\x00\x00\x00"
    b"min_runtime_version\x00\x05\x00\x00\x00"
    b"\xac\x00\x00\x00\xa4\x00\x00\x00\x9c\x00\x00\x00|\x00\x00\x00\x04\x00\x00\x00\x92\xff\xff\xff"
    b"\x04\x00\x00\x00`\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00\x08\x00\x0e\x00\x08\x00\x04\x00"
    b"\x08\x00\x00\x00\x10\x00\x00\x00$\x00\x00\x00\x00\x00\x06\x00\x08\x00\x04\x00\x06\x00\x00\x00"
    b"\x04\x00\x00\x00\x00\x00\x00\x00\x0c\x00\x18\x00\x14\x00\x10\x00\x0c\x00\x04\x00\x0c\x00\x00\x00"
    b"\x17r\xe66-y_\xea\x03\x00\x00\x00\x02\x00\x00\x00\x04\x00\x00\x00\x06\x00\x00\x00"
    b"2.21.0\x00\x00\x00\x00\x06\x00\x08\x00\x04\x00\x06\x00\x00\x00\x04\x00\x00\x00"
    b"\x10\x00\x00\x001.5.0\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xec\xfe\xff\xff"
    b"\xf0\xfe\xff\xff\xf4\xfe\xff\xff\x0f\x00\x00\x00MLIR Convert"
    b"ed.\x00\x01\x00\x00\x00\x14\x00\x00\x00\x00\x00\x0e\x00\x18\x00\x14\x00\x10\x00\x0c\x00"
    b"\x08\x00\x04\x00\x0e\x00\x00\x00\x14\x00\x00\x00\x1c\x00\x00\x00H\x00\x00\x00L\x00\x00\x00"
    b"P\x00\x00\x00\x04\x00\x00\x00main\x00\x00\x00\x00\x01\x00\x00\x00\x10\x00\x00\x00"
    b"\x00\x00\n\x00\x0c\x00\x00\x00\x08\x00\x04\x00\n\x00\x00\x00\x08\x00\x00\x00\x0c\x00\x00\x00"
    b"\x01\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00"
    b"\x01\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\\\x00\x00\x00\x04\x00\x00\x00\xc2\xff\xff\xff"
    b"\x00\x00\x00\x01\x10\x00\x00\x00\x10\x00\x00\x00\x02\x00\x00\x00 \x00\x00\x00\xac\xff\xff\xff"
    b"\x11\x00\x00\x00PartitionedCall:0\x00\x00\x00"
    b"\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x16\x00\x18\x00\x14\x00\x00\x00\x10\x00\x0c\x00\x08\x00"
    b"\x00\x00\x00\x00\x00\x00\x07\x00\x16\x00\x00\x00\x00\x00\x00\x01\x14\x00\x00\x00\x14\x00\x00\x00"
    b"\x01\x00\x00\x00$\x00\x00\x00\x04\x00\x04\x00\x04\x00\x00\x00\x13\x00\x00\x00serv"
    b"ing_default_x:0\x00\x01\x00\x00\x00\x01\x00\x00\x00"
    b"\x01\x00\x00\x00\x10\x00\x00\x00\x0c\x00\x0c\x00\x0b\x00\x00\x00\x00\x00\x04\x00\x0c\x00\x00\x00"
    b"\x13\x00\x00\x00\x00\x00\x00\x13"
)


def _interpreter(threads: int, **source: Any) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(num_threads=max(1, threads), **source)


def warm(path: Path | None) -> None:
    """Import LiteRT and run it once on a tiny model of our own (the interpreter's and its
    XNNPACK delegate's start-up are the baseline)."""
    interp = _interpreter(1, model_content=_WARM_TFLITE)
    interp.allocate_tensors()
    (inp,) = interp.get_input_details()
    interp.set_tensor(inp["index"], np.zeros(1, np.float32))
    interp.invoke()
    for out in interp.get_output_details():
        interp.get_tensor(out["index"])


def _spec(detail: dict[str, Any]) -> Spec:
    shape = detail.get("shape_signature")
    if shape is None or len(shape) == 0:
        shape = detail.get("shape", ())
    dims = tuple(int(d) if int(d) >= 0 else -1 for d in shape)
    return Spec(str(detail["name"]), np.dtype(detail["dtype"]).name, dims)


def load(path: Path, architecture: Path | None, threads: int, options: Options) -> Loaded:
    if architecture is not None:
        raise LoadError("a TFLite model takes no architecture file")
    try:
        interp = _interpreter(threads, model_path=str(path))
        interp.allocate_tensors()
    except Exception as e:  # LiteRT raises ValueError and RuntimeError of its own
        raise LoadError(f"LiteRT could not load the model: {str(e)[:2000]}") from e
    ins, outs = interp.get_input_details(), interp.get_output_details()
    runner = _Runner(interp, ins, outs)
    note = "run with LiteRT's interpreter"
    return Loaded(
        Format.TFLITE, [_spec(d) for d in ins], [_spec(d) for d in outs], runner.run, note
    )


class _Runner:
    def __init__(self, interp: Any, ins: list[dict[str, Any]], outs: list[dict[str, Any]]) -> None:
        self.interp, self.outs = interp, outs
        self.ins = {str(d["name"]): d for d in ins}
        self.shapes = {name: tuple(int(x) for x in d["shape"]) for name, d in self.ins.items()}

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = sorted(set(self.ins) - set(feed))
        extra = sorted(set(feed) - set(self.ins))
        if missing or extra:
            raise ValueError(
                f"the model's inputs are {sorted(self.ins)}; missing {missing}, unknown {extra}"
            )
        resized = False
        for name, d in self.ins.items():
            arr = np.asarray(feed[name])
            if tuple(arr.shape) != self.shapes[name]:
                self.interp.resize_tensor_input(d["index"], list(arr.shape), strict=True)
                self.shapes[name] = tuple(arr.shape)
                resized = True
        if resized:
            self.interp.allocate_tensors()
        for name, d in self.ins.items():
            self.interp.set_tensor(d["index"], np.ascontiguousarray(feed[name]))
        self.interp.invoke()
        return {str(d["name"]): np.array(self.interp.get_tensor(d["index"])) for d in self.outs}
