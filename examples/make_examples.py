"""Generate the bundled examples (run by `make examples`; the outputs are committed).

- tiny.onnx: y = relu(x @ W + b), x float32 [batch, 4] -> y float32 [batch, 3]
- x.npy: one input batch for it
- payload.pkl: a harmless malicious pickle. Unpickling it runs a shell command (through
  os.system) that writes a marker file under /tmp: inside the sandbox that is the container's
  scratch tmpfs, so nothing appears on the host.
- digits/: a base digits classifier, a backdoored and a benign fine-tune of it, and probes with
  a trigger category, for `airlock diff` and baselines (built by tests/fixtures/behavior.py,
  which the tests use too; needs scikit-learn, a dev dependency).

Needs the `onnx` package (a dev dependency); the host side of Airlock does not.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def tiny_onnx() -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["z"]),
            helper.make_node("Relu", ["z"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="airlock-examples"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


class _ShellPayload:
    """Pickles to `os.system(cmd)`: the classic malicious-checkpoint gadget."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, (self.cmd,))


def payload_pickle() -> bytes:
    cmd = "echo airlock-demo > /tmp/airlock-demo-marker; id"
    return pickle.dumps({"weights": [0.1, 0.2], "hook": _ShellPayload(cmd)}, protocol=4)


def main() -> None:
    (HERE / "tiny.onnx").write_bytes(tiny_onnx())
    np.save(HERE / "x.npy", np.arange(8, dtype=np.float32).reshape(2, 4) / 8)
    (HERE / "payload.pkl").write_bytes(payload_pickle())
    sys.path.insert(0, str(HERE.parent))
    from tests.fixtures.behavior import build

    build(HERE / "digits")


if __name__ == "__main__":
    main()
