"""Fixtures for parser abuse, code in metadata and torch.package archives (issue class 9).

Every payload is harmless outside the sandbox too: markers only under /tmp, no network, every
allocation and loop bounded (the largest asks for 1 GiB, the CPU spin stops after 7 s of CPU).
The hostile torch.package archives are written with `save_source_string` and a hand-assembled
pickle, so building them never imports (never runs) their code on the host.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.fixtures import hostile
from tests.hostile.pickles import Asm

GIB = 1 << 30


@dataclass(frozen=True)
class Case:
    name: str
    technique: str
    build: Callable[[Path, str], Path]  # (directory, marker path) -> model path
    static: frozenset[str] = frozenset()  # rule ids the static read must find
    dynamic: frozenset[str] = frozenset()  # rule ids the sandbox must see
    measured: frozenset[str] = frozenset()  # AL508/AL509: from the host's load-window samples
    clean: bool = False  # the verdict must be clean (benign, or only a low finding)
    policy: dict[str, object] = field(default_factory=dict)
    infer: bool = False  # the model must be inferable, and is called once


def _safetensors(header: dict[str, object], data: bytes) -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(raw)) + raw + data


# --- safetensors headers built to overload their parser ---------------------------------------


def many_tensors(d: Path, marker: str) -> Path:
    # A 20 MB header of 200,000 one-element tensors: each load parses all of it and builds
    # 200,000 tensor objects, from a file of about 21 MB.
    n = 200_000
    header: dict[str, object] = {
        f"model.layers.{i:06d}.attention.self.query_key_value.weight": {
            "dtype": "F32",
            "shape": [1],
            "data_offsets": [4 * i, 4 * i + 4],
        }
        for i in range(n)
    }
    path = d / "many.safetensors"
    path.write_bytes(_safetensors(header, b"\0" * (4 * n)))
    return path


def terabyte_shapes(d: Path, marker: str) -> Path:
    # Shapes that declare 4 TiB of float32 in a file of a few hundred bytes (offsets kept
    # inside the file, so only the shapes lie): a reader that allocates by shape asks for it.
    header: dict[str, object] = {
        "w": {"dtype": "F32", "shape": [1 << 20, 1 << 20], "data_offsets": [0, 16]},
        "b": {"dtype": "F64", "shape": [1 << 17, 1 << 17], "data_offsets": [16, 32]},
    }
    return hostile.write(d / "huge_shapes.safetensors", _safetensors(header, b"\0" * 32))


# --- small pickles that allocate a lot ---------------------------------------------------------


def numpy_ones(d: Path, marker: str) -> Path:
    # numpy.ones((2**27,)) of float64: 1 GiB, touched, from a 40-byte pickle.
    return hostile.write(d / "ones.pkl", Asm().call("numpy", "ones", (1 << 27,)).stop())


def bytes_repeat(d: Path, marker: str) -> Path:
    # operator.mul(b"\x01" * 4096, 2**18): a 4 KiB literal repeated into 1 GiB.
    a = Asm().call("_operator", "mul", b"\x01" * 4096, 1 << 18)
    return hostile.write(d / "repeat.pkl", a.stop())


SPIN = """
import time
start = time.process_time()
while time.process_time() - start < 7.0:  # bounded: 7 s of CPU
    pass
"""


def cpu_spin(d: Path, marker: str) -> Path:
    # Seven seconds of CPU at load from a file of a few hundred bytes (within the deadline).
    return hostile.write(d / "spin.pkl", hostile.code_pickle(SPIN))


# --- code-like text in metadata ---------------------------------------------------------------


def safetensors_metadata(d: Path, marker: str) -> Path:
    # __metadata__ with a shell one-liner as text (nothing runs it: the finding is low).
    meta = {"format": "pt", "note": f"__import__('os').system('echo pwned > {marker}')"}
    header: dict[str, object] = {
        "__metadata__": meta,
        "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
    }
    return hostile.write(d / "meta.safetensors", _safetensors(header, b"\0" * 8))


def onnx_metadata(d: Path, marker: str) -> Path:
    # ONNX metadata_props and a node doc string holding exec( and import os.
    import onnx

    from examples.make_examples import tiny_onnx

    model = onnx.load_from_string(tiny_onnx())
    entry = model.metadata_props.add()
    entry.key, entry.value = "postprocess", f"exec(\"import os; os.system('touch {marker}')\")"
    model.graph.node[0].doc_string = "import os; os.popen('id')"
    return hostile.write(d / "meta.onnx", bytes(model.SerializeToString()))


# --- torch.package archives -------------------------------------------------------------------

NET = """
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        return torch.relu(self.fc(x))
"""
EXPORT = """
import sys
import torch
from torch.package import PackageExporter

sys.path.insert(0, sys.argv[2])
import airlock_pkgnet

torch.manual_seed(0)
with PackageExporter(sys.argv[1]) as pe:
    pe.extern("torch.**")
    pe.intern("airlock_pkgnet")
    pe.save_pickle("model", "model.pkl", airlock_pkgnet.Net())
"""


def benign_package(d: Path, marker: str) -> Path:
    # A benign torch.package: a packaged nn.Module class and its pickled instance. Exported in a
    # child process, so the test process imports nothing of it.
    src = d / "src"
    src.mkdir()
    (src / "airlock_pkgnet.py").write_text(NET)
    path = d / "net.pt"
    subprocess.run(
        [sys.executable, "-c", EXPORT, str(path), str(src)],
        check=True,
        capture_output=True,
    )
    return path


def _package(path: Path, modules: dict[str, str], pickle: bytes) -> Path:
    from torch.package import PackageExporter

    with PackageExporter(str(path)) as pe:
        pe.extern("torch.**")
        for name, source in modules.items():  # parsed for its imports, never run
            pe.save_source_string(name, source)
        pe.save_binary("model", "model.pkl", pickle)
    return path


def _builds(module: str) -> bytes:
    """A pickle that calls module.build(): loading it imports the packaged module."""
    return Asm().glob(module, "build").mark().tuple().reduce().stop()


def shell_package(d: Path, marker: str) -> Path:
    # A packaged module that runs a shell when it is imported; the pickle imports it.
    source = (
        "import os\n"
        "import torch\n"
        f"os.system('echo pwned > {marker}')\n"
        "def build():\n"
        "    return torch.nn.Identity()\n"
    )
    return _package(d / "shell.pt", {"airlock_evil": source}, _builds("airlock_evil"))


def hidden_shell_package(d: Path, marker: str) -> Path:
    # The model's module imports a helper, which reaches os.system through importlib with a
    # computed module name and a computed attribute: no "os" or "system" literal anywhere
    # (the importer's own __import__ refuses a module the archive does not extern).
    helper = (
        "import importlib\n"
        "_m = importlib.import_module('o' + 's')\n"
        f"getattr(_m, 'sys' + 'tem')('echo pwned > {marker}')\n"
    )
    model = "import torch\nimport airlock_helper\ndef build():\n    return torch.nn.Identity()\n"
    modules = {"airlock_helper": helper, "airlock_model": model}
    return _package(d / "hidden.pt", modules, _builds("airlock_model"))


CASES = [
    Case("many-tensors", "safetensors: 20 MB header of 200,000 tensors", many_tensors,
         static=frozenset({"AL620"})),
    Case("terabyte-shapes", "safetensors: shapes declaring 4 TiB", terabyte_shapes,
         static=frozenset({"AL620"})),
    Case("numpy-ones", "pickle: numpy.ones of 1 GiB", numpy_ones, static=frozenset({"AL621"}),
         measured=frozenset({"AL508"}), policy={"memory_bytes": 3 * GIB // 2}),
    Case("bytes-repeat", "pickle: a literal repeated to 1 GiB", bytes_repeat,
         static=frozenset({"AL621"}), measured=frozenset({"AL508"}),
         policy={"memory_bytes": 3 * GIB // 2}),
    Case("cpu-spin", "pickle: 7 s of CPU at load", cpu_spin, dynamic=frozenset({"AL603"}),
         measured=frozenset({"AL509"})),
    Case("safetensors-metadata", "__import__('os').system in __metadata__",
         safetensors_metadata, static=frozenset({"AL622"}), clean=True),
    Case("onnx-metadata", "exec( in ONNX metadata_props and doc strings", onnx_metadata,
         static=frozenset({"AL622"}), clean=True, infer=True),
    Case("benign-package", "torch.package: a packaged nn.Module", benign_package, clean=True,
         infer=True),
    Case("shell-package", "torch.package: a module that runs a shell on import", shell_package,
         static=frozenset({"AL623"}), dynamic=frozenset({"AL202"})),
    Case("hidden-shell-package", "torch.package: os.system by computed names, in a helper",
         hidden_shell_package, static=frozenset({"AL624"}), dynamic=frozenset({"AL202"})),
]  # fmt: skip
