"""Static signs that are not tampering: files built to cost far more to load than their size
warrants, code-like text in metadata, and the code a torch.package archive would run.

- parser abuse (AL620): a safetensors header over HEADER_COST_BYTES, more than TENSOR_COUNT
  tensors, or shapes that declare far more bytes than the file holds;
- pickle allocations (AL621): allocator calls in a pickle's opcodes whose literal sizes ask for
  far more memory than the file's size (runner.static.allocations);
- code in metadata (AL622, low): `__import__`, `os.system`, `eval(`, ... in safetensors
  `__metadata__` and ONNX metadata_props and doc strings (read from the protobuf's bytes);
- torch.package code (AL623-AL625): what its packaged modules import and call, from their
  syntax trees (runner.static.package), and the imports of its pickles, but for the archive's
  own modules (their code is read instead).

Every read is bounded and nothing here raises for a hostile file; what could not be read is
said.
"""

from __future__ import annotations

import importlib
import io
import json
import lzma
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from runner.errors import untrusted_text
from runner.static import allocations, package
from runner.static.pickles import Import, imports_in_bytes
from runner.static.tamper import Tamper, TamperKind
from runner.worker.shared.formats import Format

MIB = 1 << 20
HEADER_COST_BYTES = 10 * MIB  # a safetensors header larger than this is parser abuse
TENSOR_COUNT = 100_000
PARSE_BYTES = HEADER_COST_BYTES  # headers up to this are parsed whole; larger ones scanned
MAX_HEADER_BYTES = 100 * MIB  # as runner.static.tamper: larger is tampering, not read
DECLARED_FLOOR = 64 * MIB
DECLARED_RATIO = 16  # declared tensor bytes over the data's, out of all proportion
ALLOC_FLOOR = 256 * MIB
ALLOC_RATIO = 64  # bytes a pickle asks for over its own size
MAX_TEXTS = 2_000  # metadata strings scanned of one file
MAX_TEXT_CHARS = 64 << 10  # of one string
MAX_DIMS = 64
_DTYPE_BYTES = {
    **dict.fromkeys(("F64", "I64", "U64", "C64"), 8),
    **dict.fromkeys(("F32", "I32", "U32"), 4),
    **dict.fromkeys(("F16", "BF16", "I16", "U16"), 2),
    **dict.fromkeys(("F8_E4M3", "F8_E5M2", "I8", "U8", "BOOL"), 1),
}
CODE_LIKE = re.compile(
    r"__import__|__builtins__|\bos\s*\.\s*(?:system|popen|exec\w*|spawn\w*|fork)\b"
    r"|\b(?:eval|exec|compile)\s*\(|\bsubprocess\b|\bimport\s+(?:os|sys|subprocess|socket|pty"
    r"|ctypes|importlib|base64|marshal|pickle)\b|\bfrom\s+(?:os|subprocess|socket|pty|ctypes)"
    r"\s+import\b|\b(?:pickle|marshal|dill)\s*\.\s*loads?\b|\bbase64\s*\.\s*b64decode\b"
    r"|/bin/(?:ba|da|z)?sh\b|\bpty\s*\.\s*spawn\b|\bsocket\s*\.\s*socket\b"
)


@dataclass
class Signs:
    tamper: list[Tamper] = field(default_factory=list)
    imports: list[Import] = field(default_factory=list)


# The formats whose static reader is a module of its own: examine(primary) -> Signs, bounded,
# never raising for a hostile file (what it cannot read is a finding of its own).
FORMAT_READERS = {
    Format.GGUF: "gguf",
    Format.KERAS: "keras_config",
    Format.KERAS_H5: "keras_config",
    Format.TFLITE: "tflite",
    Format.SAVEDMODEL: "tf_graph",
    Format.JOBLIB: "joblib_compressed",
    Format.SKOPS: "skops_schema",
    Format.NUMPY: "npy",
}


def examine(primary: Path, fmt: Format | None) -> Signs:
    """The signs that apply to the model's primary file in its format; never raises for a
    hostile file (a file that cannot be read is runner.static.tamper's to say)."""
    out = Signs()
    try:
        if fmt is Format.SAFETENSORS:
            out.tamper = safetensors(primary)
        elif fmt is Format.ONNX:
            out.tamper = onnx(primary)
        elif fmt in (Format.PICKLE, Format.TORCH):
            out.tamper = pickle_file(primary)
        elif fmt is Format.TORCH_PACKAGE:
            out = torch_package(primary)
        elif fmt in FORMAT_READERS:
            out = importlib.import_module(f"runner.static.{FORMAT_READERS[fmt]}").examine(primary)
    except (OSError, zipfile.BadZipFile, ValueError, EOFError, NotImplementedError, RuntimeError):
        pass  # a damaged archive (or an encrypted member): runner.static.tamper's to say
    except (zlib.error, lzma.LZMAError, struct.error):
        pass
    return out


# --- code-like text ---------------------------------------------------------------------------


def code_strings(texts: Iterable[tuple[str, str]]) -> list[str]:
    """Evidence for each (where, text) holding code-like text: neutralised, bounded."""
    found: list[str] = []
    for n, (where, text) in enumerate(texts):
        if n >= MAX_TEXTS or len(found) >= 10:
            break
        chunk = text[:MAX_TEXT_CHARS] if isinstance(text, str) else ""
        m = CODE_LIKE.search(chunk)
        if m is None:
            continue
        start = max(0, m.start() - 40)
        shown = untrusted_text(chunk[start : m.end() + 80], 160)
        found.append(
            f"{untrusted_text(where, 120)} holds code-like text "
            f"({untrusted_text(m.group(0), 40)}): {shown}"
        )
    return found


# --- safetensors ------------------------------------------------------------------------------


def safetensors(path: Path) -> list[Tamper]:
    size = path.stat().st_size
    with path.open("rb") as f:
        raw_len = f.read(8)
        if len(raw_len) < 8:
            return []
        (n,) = struct.unpack("<Q", raw_len)
        if n > size - 8 or n > MAX_HEADER_BYTES:
            return []  # past the end or over its bound: runner.static.tamper says so
        raw = f.read(n)
    found: list[str] = []
    if n > HEADER_COST_BYTES:
        found.append(f"a safetensors header of {n} bytes (more than {HEADER_COST_BYTES})")
    meta: object = None
    if n > PARSE_BYTES:
        count = raw.count(b'"data_offsets"')
        meta = _metadata_of(raw)
    else:
        try:
            header = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            header = None  # not JSON: runner.static.tamper says so
        if not isinstance(header, dict):
            return [Tamper(TamperKind.PARSER_ABUSE, e) for e in found]
        meta = header.get("__metadata__")
        count, declared = _declared(header)
        data = size - 8 - n
        if declared > max(DECLARED_FLOOR, DECLARED_RATIO * data):
            found.append(
                f"tensor shapes declare {_size(declared)} ({declared} bytes); "
                f"the file holds {data} bytes of data"
            )
    if count > TENSOR_COUNT:
        found.append(f"{count} tensors in one safetensors header (more than {TENSOR_COUNT})")
    out = [Tamper(TamperKind.PARSER_ABUSE, e) for e in found]
    if isinstance(meta, dict):
        texts = [(f"__metadata__ {k!r}", f"{k} {v}") for k, v in list(meta.items())[:MAX_TEXTS]]
        out += [Tamper(TamperKind.METADATA_CODE, e) for e in code_strings(texts)]
    return out


def _declared(header: dict[str, Any]) -> tuple[int, int]:
    """(tensors, bytes their dtypes and shapes declare, saturating at 2**62)."""
    count = declared = 0
    for name, info in header.items():
        if name == "__metadata__" or not isinstance(info, dict):
            continue
        count += 1
        shape = info.get("shape")
        per = _DTYPE_BYTES.get(str(info.get("dtype")), 1)
        if not isinstance(shape, list) or len(shape) > MAX_DIMS:
            continue
        total = per
        for d in shape:
            if isinstance(d, int) and not isinstance(d, bool):
                total = min(total * max(d, 0), allocations.CAP)
        declared = min(declared + total, allocations.CAP)
    return count, declared


def _metadata_of(raw: bytes) -> object:
    """The __metadata__ object of a header too large to parse whole (its first MiB read)."""
    at = raw.find(b'"__metadata__"')
    if at < 0:
        return None
    text = raw[at : at + MIB].decode("utf-8", "replace")
    colon = text.find(":")
    try:
        value, _ = json.JSONDecoder().raw_decode(text, colon + 1 + _spaces(text, colon + 1))
    except (ValueError, RecursionError):
        return None
    return value


def _spaces(text: str, at: int) -> int:
    return len(text[at:]) - len(text[at:].lstrip())


def _size(n: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} bytes"


# --- ONNX metadata, from the protobuf's bytes ---------------------------------------------------

ONNX_MAX_FIELDS = 500_000  # fields read of one file, all its messages together
ONNX_MAX_NODES = 20_000  # nodes whose doc strings are read
_MODEL_TEXT = {2: "producer_name", 3: "producer_version", 4: "domain", 6: "doc_string"}


def onnx(path: Path) -> list[Tamper]:
    """Code-like text in the model's metadata: a hint (low), read as far as its bounds go
    (ONNX_MAX_FIELDS fields in all, MAX_TEXTS strings, MAX_TEXT_CHARS of each)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        found = code_strings(_onnx_texts(_Protobuf(f), size))
    return [Tamper(TamperKind.METADATA_CODE, e) for e in found]


def _onnx_texts(pb: _Protobuf, size: int) -> Iterable[tuple[str, str]]:
    for number, start, length in pb.fields(0, size):
        if number in _MODEL_TEXT:
            yield f"ONNX {_MODEL_TEXT[number]}", pb.text(start, length)
        elif number == 14:  # metadata_props: StringStringEntryProto (key 1, value 2)
            entry = {k: pb.text(s, n) for k, s, n in pb.fields(start, start + length) if k < 3}
            key, value = entry.get(1, ""), entry.get(2, "")
            yield f"ONNX metadata_props {key[:80]!r}", f"{key} {value}"
        elif number == 7:  # the graph: its doc string and its nodes'
            nodes = 0
            for g_number, g_start, g_length in pb.fields(start, start + length):
                if g_number == 10:
                    yield "ONNX graph doc_string", pb.text(g_start, g_length)
                elif g_number == 1 and nodes < ONNX_MAX_NODES:
                    nodes += 1
                    for n_number, n_start, n_length in pb.fields(g_start, g_start + g_length):
                        if n_number == 6:
                            yield f"ONNX node {nodes} doc_string", pb.text(n_start, n_length)


class _Protobuf:
    """Length-delimited fields of protobuf messages in a file, read with a budget shared by
    every message (ONNX_MAX_FIELDS); the walk stops, without raising, where the bytes stop
    being a protobuf."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.left = f, ONNX_MAX_FIELDS

    def text(self, start: int, length: int) -> str:
        self.f.seek(start)
        return self.f.read(min(length, MAX_TEXT_CHARS)).decode("utf-8", "replace")

    def fields(self, start: int, end: int) -> list[tuple[int, int, int]]:
        """(field number, payload offset, length) of the length-delimited fields in [start, end)."""
        f, out = self.f, []
        f.seek(start)
        while f.tell() < end and self.left > 0:
            self.left -= 1
            key = self._varint()
            if key is None:
                break
            number, wire = key >> 3, key & 7
            if wire == 0:
                if self._varint() is None:
                    break
            elif wire == 2:
                length = self._varint()
                here = f.tell()
                if length is None or here + length > end:
                    break
                out.append((number, here, length))
                f.seek(here + length)
            elif wire in (1, 5):
                f.seek(8 if wire == 1 else 4, os.SEEK_CUR)
            else:
                break
        return out

    def _varint(self) -> int | None:
        result = shift = 0
        while shift < 64:
            b = self.f.read(1)
            if not b:
                return None
            result |= (b[0] & 0x7F) << shift
            if not b[0] & 0x80:
                return result
            shift += 7
        return None


# --- pickles ----------------------------------------------------------------------------------


def pickle_file(path: Path) -> list[Tamper]:
    """Allocations asked for by a raw pickle (up to five, for a legacy torch.save file) or by
    the pickles of a torch zip checkpoint."""
    size = path.stat().st_size
    with path.open("rb") as f:
        if f.read(4) != b"PK\x03\x04":
            f.seek(0)
            return _allocation_signs(allocations.walk(f, size, pickles=5), size, "the pickle")
    found: list[Tamper] = []
    left = allocations.MAX_OPS  # for all the archive's pickles together
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.filename.endswith(".pkl") and info.file_size <= package.MAX_PICKLE_BYTES:
                if left <= 0:
                    break
                with zf.open(info) as member:
                    data = member.read(package.MAX_PICKLE_BYTES)
                walked = allocations.walk(io.BytesIO(data), len(data), max_ops=left)
                left -= walked.ops
                found += _allocation_signs(walked, size, f"the pickle {info.filename!r}")
    return found[:5]


def _allocation_signs(a: allocations.Allocations, size: int, what: str) -> list[Tamper]:
    if a.total <= max(ALLOC_FLOOR, ALLOC_RATIO * size):
        return []
    n, where, at = a.largest
    biggest = f"; the largest, {where} at offset {at}, asks for {_size(n)}" if n else ""
    evidence = (
        f"{untrusted_text(what, 160)} asks for {_size(a.total)} ({a.total} bytes) at load, "
        f"from a file of {size} bytes: {a.calls} allocator call(s) with literal sizes, "
        f"{a.container_items} container item(s){biggest}"
    )
    return [Tamper(TamperKind.PICKLE_ALLOCATION, untrusted_text(evidence, 400))]


# --- torch.package ----------------------------------------------------------------------------


def torch_package(path: Path) -> Signs:
    pkg = package.read(path)
    out = Signs()
    for use in pkg.uses:
        kind = (
            TamperKind.PACKAGE_DANGEROUS_CODE if use.dangerous else TamperKind.PACKAGE_DYNAMIC_CODE
        )
        out.tamper.append(Tamper(kind, use.evidence()))
    out.tamper += [Tamper(TamperKind.PACKAGE_UNREADABLE, why) for why in pkg.unread]
    size, left = path.stat().st_size, allocations.MAX_OPS
    with zipfile.ZipFile(path) as zf:
        for name in pkg.pickles[:100]:
            info = zf.getinfo(name)
            if info.file_size > package.MAX_PICKLE_BYTES:
                why = f"{name}: a pickle of {info.file_size} bytes, more than the host reads"
                out.tamper.append(Tamper(TamperKind.PACKAGE_UNREADABLE, untrusted_text(why, 200)))
                continue
            with zf.open(info) as member:
                data = member.read(package.MAX_PICKLE_BYTES)
            found = imports_in_bytes(data, name)
            out.imports += [i for i in found if not package.packaged(i.module, pkg.modules)]
            walked = allocations.walk(io.BytesIO(data), len(data), max_ops=max(left, 0))
            left -= walked.ops
            out.tamper += _allocation_signs(walked, size, f"the pickle {name!r}")
    return out
