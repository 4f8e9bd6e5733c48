"""Hostile pickles that a reader judging globals by module alone, or stopping at a bound without
saying so, would call clean: dotted attribute paths from safe-looking modules, globals reached
through copyreg extension codes, and payloads placed after the walk's opcode and import bounds.

Each is harmless outside the sandbox too: the payload writes a marker under /tmp (in the
sandbox, its scratch tmpfs) and nothing else; every loop that builds a file is bounded.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

from runner.static import pickles as walker
from tests.hostile.corpus import Fixture
from tests.hostile.pickles import Asm


def _shell(marker: str) -> str:
    return f"echo pwned > {marker}"


def _w(d: Path, name: str, data: bytes) -> Path:
    p = d / name
    p.write_bytes(data)
    return p


# --- dotted paths: module + "a.b" walks attributes (protocol 4) --------------------------------


def dotted_torch_utils(d: Path, marker: str) -> Path:
    # STACK_GLOBAL('torch._utils', 'os.system'): the module every checkpoint names, and an
    # attribute path through the os it imported.
    a = Asm().call("torch._utils", "os.system", _shell(marker))
    return _w(d, "dotted_torch.pkl", a.stop())


def dotted_numpy_datasource(d: Path, marker: str) -> Path:
    # GLOBAL 'numpy.lib._datasource' 'os.system' (text in the stream, protocol 4 set first).
    a = Asm().call("numpy.lib._datasource", "os.system", _shell(marker), stack=False)
    return _w(d, "dotted_numpy.pkl", a.stop())


# --- copyreg extension codes: EXT1/2/4 name no global in the stream --------------------------


def ext_add_extension(d: Path, marker: str) -> Path:
    # copyreg.add_extension('os', 'system', 240) registers the code; EXT1 240 then imports it.
    a = Asm().call("copyreg", "add_extension", "os", "system", 240).pop()
    a.out += pickle.EXT1 + bytes([240])
    a.mark().string(_shell(marker)).tuple().reduce()
    return _w(d, "ext1.pkl", a.stop())


def ext_registry_setdefault(d: Path, marker: str) -> Path:
    # The registry the unpickler reads (code -> global), reached by an attribute path under
    # copyreg (a module on the old safe list): _inverted_registry.setdefault(0x1234,
    # ('subprocess', 'getoutput')), then EXT2 0x1234.
    a = Asm().stack_glob("copyreg", "_inverted_registry.setdefault")
    a.mark().int(0x1234).value(("subprocess", "getoutput")).tuple().reduce().pop()
    a.out += pickle.EXT2 + struct.pack("<H", 0x1234)
    a.mark().string(_shell(marker)).tuple().reduce()
    return _w(d, "ext2.pkl", a.stop())


# --- payloads after the walk's bounds ---------------------------------------------------------


def after_opcode_bound(d: Path, marker: str) -> Path:
    # MAX_OPS harmless opcodes (NONE, POP: two bytes per pair, about 2 MB), then os.system.
    a = Asm()
    a.out += (pickle.NONE + pickle.POP) * (walker.MAX_OPS // 2 + 1)
    a.call("os", "system", _shell(marker))
    return _w(d, "after_ops.pkl", a.stop())


def after_import_bound(d: Path, marker: str) -> Path:
    # MAX_IMPORTS ordinary imports (collections.OrderedDict by STACK_GLOBAL of memoized
    # strings: 5 bytes each), then os.system: the walk records no import past its bound.
    a = Asm().string("collections")
    a.memoize()
    a.string("OrderedDict")
    a.memoize()
    a.pop().pop()
    one = pickle.BINGET + b"\x00" + pickle.BINGET + b"\x01" + pickle.STACK_GLOBAL + pickle.POP
    a.out += one * walker.MAX_IMPORTS
    a.call("os", "system", _shell(marker))
    return _w(d, "after_imports.pkl", a.stop())


SOUNDNESS = [
    Fixture(
        "dotted torch._utils",
        "attribute path os.system under torch._utils (STACK_GLOBAL)",
        dotted_torch_utils,
        frozenset({"AL611", "AL601", "AL202"}),
    ),
    Fixture(
        "dotted numpy datasource",
        "attribute path os.system under numpy.lib._datasource (GLOBAL)",
        dotted_numpy_datasource,
        frozenset({"AL611", "AL601", "AL202"}),
    ),
    Fixture(
        "EXT1 add_extension",
        "os.system by extension code, registered by copyreg.add_extension",
        ext_add_extension,
        frozenset({"AL614", "AL611", "AL601", "AL202"}),
    ),
    Fixture(
        "EXT2 registry setdefault",
        "subprocess.getoutput by extension code, put in copyreg's registry by attribute path",
        ext_registry_setdefault,
        frozenset({"AL614", "AL611", "AL601", "AL202"}),
    ),
    Fixture(
        "after opcode bound",
        "os.system after MAX_OPS opcodes",
        after_opcode_bound,
        frozenset({"AL615", "AL601", "AL202"}),
    ),
    Fixture(
        "after import bound",
        "os.system after MAX_IMPORTS imports",
        after_import_bound,
        frozenset({"AL615", "AL601", "AL202"}),
    ),
]
# What the static read must not see (it is past the bound: the bound's finding is the point).
HIDDEN_FROM_STATIC = {"after opcode bound": "AL611", "after import bound": "AL611"}
