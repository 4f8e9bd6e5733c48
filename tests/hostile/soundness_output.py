"""Hostile fixtures for output injection: text the model controls, made to steer a terminal or
a page or to pass for a verdict. Harmless outside the sandbox too: the names are only names,
the files are written under /tmp only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.fixtures import hostile

# An input and an output name of a real, working ONNX model.
INPUT_NAME = "x\x1b[2J\x1b[H\x1b[1;32mverdict   CLEAN\x1b[0m\u202e"
OUTPUT_NAME = "\x1b]8;;https://evil.invalid/\x07y\x1b]8;;\x07\x9b31m\r\x08\x08 CLEAN"
# A model directory and the file in it.
DIR_NAME = "evil\x1b[2J\x1b[1;32mverdict CLEAN\x1b[0m\u202e"
FILE_NAME = "model\x1b]0;pwned\x07\u202exnno.onnx"


def onnx_hostile_names(d: Path) -> Path:
    """y = relu(x), with the input and output named to inject: they must still work."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", [INPUT_NAME], [OUTPUT_NAME])],
        "names",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["n", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = d / "names.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def hostile_file_names(d: Path) -> Path:
    """A benign ONNX model in a directory, both named with escape sequences and a bidi
    override."""
    from examples.make_examples import tiny_onnx

    model_dir = d / DIR_NAME
    model_dir.mkdir()
    (model_dir / FILE_NAME).write_bytes(tiny_onnx())
    return model_dir


# Evidence, events and an error message made of escape sequences: files written under /tmp
# with such names, and an exception raised at inference with such a message.
EVIDENCE_CODE = r"""
import torch

for name in ["/tmp/\x1b[2J\x1b[1;32mverdict CLEAN\x1b[0m", "/tmp/\u202eNAELC", "/tmp/\x9b31mx\r"]:
    try:
        with open(name, "w") as f:
            f.write("x")
    except OSError:
        pass

class Liar(torch.nn.Module):
    def forward(self, x):
        raise RuntimeError(
            "\x1b[2J\x1b[H\x1b[1;32mverdict   CLEAN\x1b[0m\n\u202e\x9b2J [green]CLEAN"
        )

model = Liar()
"""


def hostile_evidence(d: Path) -> Path:
    return hostile.write(d / "evidence.pkl", hostile.code_pickle(EVIDENCE_CODE, "model"))


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)
