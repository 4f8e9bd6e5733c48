"""Identify a model's format from its bytes.

Shared by the host (which must never deserialize the model) and the worker, so this module
only reads bytes: magic numbers, the zip central directory, the safetensors header length,
and the top-level field layout of an ONNX protobuf. It imports nothing outside the standard
library.

Every read is bounded: at most FILE_READ_LIMIT bytes of a file and DIR_READ_LIMIT bytes of a
whole directory, whatever the file's size or what its headers claim. Detection that reaches a
bound raises ReadLimit (a FormatError that says so), never reads on. Only regular files are
opened (a FIFO would block, a device could act), and inside a directory symlinks are not
followed.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from runner.worker.shared import tree as _tree


class Format(StrEnum):
    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"
    TORCH = "torch"  # torch.save output: a full module, a state dict or any pickled object
    SAFETENSORS = "safetensors"
    PICKLE = "pickle"  # a plain pickle stream
    TORCH_PACKAGE = "torch-package"  # torch.package.PackageExporter output: code and pickles
    # a Hugging Face repository (config.json beside the weights), loaded as transformers
    # would; never the answer of detect(), which names the weights' own format
    HUGGINGFACE = "huggingface"
    GGUF = "gguf"  # llama.cpp's single-file format: metadata, tensor table, tensor data
    KERAS = "keras"  # a Keras 3 .keras archive: config.json, metadata.json, model.weights.h5
    KERAS_H5 = "keras-h5"  # an HDF5 file: a legacy Keras .h5 model
    TFLITE = "tflite"  # a TFLite (LiteRT) flatbuffer, identifier TFL3
    SAVEDMODEL = "savedmodel"  # a TensorFlow SavedModel directory (saved_model.pb)
    JOBLIB = "joblib"  # a compressed joblib dump (plain ones are pickles, read the same way)
    SKOPS = "skops"  # a skops archive: schema.json and the arrays it names
    NUMPY = "numpy"  # a NumPy .npy array or .npz archive of them


# Files in a model directory that are configuration, not weights.
CONFIG_SUFFIXES = {".json", ".txt", ".md", ".yaml", ".yml", ".model", ".tiktoken", ".py"}
_PICKLE_HINTS = {".pkl", ".pickle", ".pck", ".joblib"}
# Compressed joblib dumps: the stream's own magic (joblib.numpy_pickle_utils); gzip, bz2 and lz4
# are told apart from other files of theirs by the .joblib/.pkl suffix (see _compressed).
_JOBLIB_MAGIC = {
    b"\x78\x01": "zlib",
    b"\x78\x5e": "zlib",
    b"\x78\x9c": "zlib",
    b"\x78\xda": "zlib",
    b"\xfd7zXZ\x00": "xz",
    b"\x5d\x00\x00": "lzma",
}
_JOBLIB_MAGIC_BY_SUFFIX = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\x04\x22\x4d\x18": "lz4"}
_JOBLIB_SUFFIXES = {".joblib", ".pkl", ".pickle", ".gz", ".bz2", ".xz", ".lzma", ".z", ".lz4"}
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
SAVEDMODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
# Legacy (non-zip) torch.save streams begin with protocol 2 and a LONG1 magic number.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_ONNX_FIELDS = {1, 2, 3, 4, 5, 6, 7, 8, 14, 20, 21, 25}

HEAD_BYTES = 64
ZIP_TAIL_BYTES = 65_557  # the end record and the longest comment
ZIP64_RECORDS = 76  # the zip64 end record and its locator
MAX_CENTRAL_DIRECTORY = 16 << 20  # about 150,000 members
ONNX_FIRST_BYTES = 4096
ONNX_CHUNK = 512  # read after a seek past a length-delimited field
ONNX_READ_BYTES = 1 << 20  # all the reads of one file's top-level ONNX fields
ONNX_MAX_FIELDS = 100_000  # top-level fields walked (a ModelProto has a handful)
FILE_READ_LIMIT = HEAD_BYTES + max(
    ZIP_TAIL_BYTES + ZIP64_RECORDS + MAX_CENTRAL_DIRECTORY, ONNX_READ_BYTES
)
DIR_READ_LIMIT = 64 << 20


class FormatError(ValueError):
    """The bytes are not a model Airlock recognises, or they are damaged."""


class ReadLimit(FormatError):
    """Detection reached its read bound: the file was not examined to the end."""

    def __init__(self, message: str, budget: Budget | None = None) -> None:
        super().__init__(message)
        self.budget = budget  # the bound reached; None: a header too large to read


@dataclass(frozen=True)
class Detection:
    format: Format
    path: Path  # the file that holds the model (inside a directory: the primary weights file)
    reason: str  # which evidence decided
    unread: tuple[str, ...] = ()  # files of a directory whose detection reached its bound


class Budget:
    """Bytes a detection may still read; a child budget charges its parent too (a caller that
    detects many files shares one, and tells its own bound by `ReadLimit.budget`)."""

    def __init__(self, limit: int, what: str, parent: Budget | None = None) -> None:
        self.left, self.limit, self.what, self.parent = limit, limit, what, parent

    def take(self, n: int) -> None:
        if n > self.left:
            raise ReadLimit(
                f"{self.what}: format detection stopped at its read bound ({self.limit} bytes)",
                self,
            )
        if self.parent is not None:
            self.parent.take(n)
        self.left -= n


def _open(path: Path, follow: bool) -> BinaryIO:
    """A regular file, opened for reading without blocking and, unless `follow`, without
    following a symlink; anything else is a FormatError and is never opened."""
    st = os.stat(path) if follow else os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise FormatError(f"{path.name}: a {_tree.kind_of(st.st_mode)}, not a regular file")
    nofollow = 0 if follow else getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | nofollow)
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since the stat
        os.close(fd)
        raise FormatError(f"{path.name}: not a regular file")
    return os.fdopen(fd, "rb", buffering=0)


def _read(f: BinaryIO, n: int, budget: Budget) -> bytes:
    budget.take(n)
    return f.read(n) or b""


def detect(path: Path, shared: Budget | None = None) -> Detection:
    """Detect the format of a model file or model directory, by content; `shared`, a budget
    the reads are charged to as well."""
    if stat.S_ISDIR(os.stat(path).st_mode):
        return _detect_dir(path, shared)
    budget = Budget(FILE_READ_LIMIT, path.name, shared)
    with _open(path, follow=True) as f:
        fmt, reason = _detect_file(f, path, budget)
    return Detection(fmt, path, reason)


def _detect_file(f: BinaryIO, path: Path, budget: Budget) -> tuple[Format, str]:
    size = os.fstat(f.fileno()).st_size
    if size == 0:
        raise FormatError(f"{path.name} is empty")
    head = _read(f, HEAD_BYTES, budget)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _detect_zip(f, path, size, budget)
    if len(head) >= 9 and head[8:9] == b"{":
        (header_len,) = struct.unpack("<Q", head[:8])
        if header_len > size - 8:
            raise FormatError(
                f"{path.name}: safetensors header length {header_len} runs past the end of "
                f"the file ({size} bytes); the file is truncated or tampered with"
            )
        return Format.SAFETENSORS, "safetensors header"
    if head.startswith(_LEGACY_TORCH_MAGIC):
        return Format.TORCH, "legacy torch.save stream"
    magic = _detect_magic(head, path)
    if magic is not None:
        return magic
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return Format.PICKLE, f"pickle protocol {head[1]}"
    if _looks_like_onnx(f, size, Budget(ONNX_READ_BYTES, path.name, budget)):
        return Format.ONNX, "ONNX ModelProto fields"
    if path.suffix.lower() in _PICKLE_HINTS and head[:1] in (b"(", b"c", b"]", b"}", b"I", b"S"):
        return Format.PICKLE, "protocol 0/1 pickle"
    raise FormatError(
        f"{path.name}: not a recognised model (ONNX, TorchScript, torch.save, torch.package, "
        "safetensors, pickle, joblib, NumPy, skops, GGUF, Keras, TFLite or a TensorFlow "
        "SavedModel directory)"
    )


def _detect_magic(head: bytes, path: Path) -> tuple[Format, str] | None:
    """The formats a fixed magic number at the start names (HDF5 may also follow a user block
    of 512 bytes or more: such files are read as HDF5 by h5py, and are not recognised here)."""
    if head.startswith(b"GGUF"):
        return Format.GGUF, "GGUF magic"
    if head[4:8] == b"TFL3":
        return Format.TFLITE, "TFLite flatbuffer identifier TFL3"
    if head.startswith(_HDF5_MAGIC):
        return Format.KERAS_H5, "HDF5 signature"
    if head.startswith(b"\x93NUMPY"):
        return Format.NUMPY, "NumPy .npy magic"
    for magic, kind in _JOBLIB_MAGIC.items():
        if head.startswith(magic):
            return Format.JOBLIB, f"{kind}-compressed stream (joblib)"
    if path.suffix.lower() in _JOBLIB_SUFFIXES:
        for magic, kind in _JOBLIB_MAGIC_BY_SUFFIX.items():
            if head.startswith(magic):
                return Format.JOBLIB, f"{kind}-compressed stream (joblib)"
    if path.name in SAVEDMODEL_FILES:
        return Format.SAVEDMODEL, f"{path.name} (a SavedModel's graph)"
    return None


def _detect_zip(f: BinaryIO, path: Path, size: int, budget: Budget) -> tuple[Format, str]:
    names = _zip_names(f, path, size, budget)
    if _is_torch_package(names):  # before TorchScript: a packaged module may live in code/
        return Format.TORCH_PACKAGE, "zip with .data/extern_modules (torch.package)"
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        return Format.TORCHSCRIPT, "zip with TorchScript code/"
    if any(n.endswith("data.pkl") for n in names):
        return Format.TORCH, "zip with data.pkl (torch.save)"
    top = {n for n in names if "/" not in n}
    if {"config.json", "metadata.json"} <= top:
        return Format.KERAS, "zip with config.json and metadata.json (Keras 3)"
    if "schema.json" in top:
        return Format.SKOPS, "zip with schema.json (skops)"
    if names and all(n.endswith(".npy") for n in names):
        return Format.NUMPY, "zip of .npy members (NumPy .npz)"
    raise FormatError(
        f"{path.name}: a zip archive that is none of a torch checkpoint, a Keras archive, "
        "a skops archive or a NumPy .npz"
    )


def _is_torch_package(names: list[str]) -> bool:
    """torch.package archives hold .data/version and .data/extern_modules under their root."""
    found = {n.split("/", 1)[1] for n in names if n.count("/") == 2 and "/.data/" in n}
    return {".data/version", ".data/extern_modules"} <= found


def _damaged(path: Path, why: str) -> FormatError:
    return FormatError(f"{path.name}: a damaged zip archive ({why})")


def _central_directory(f: BinaryIO, path: Path, size: int, budget: Budget) -> tuple[int, int]:
    """(offset, size) of the zip's central directory, from its end records (zip64 followed);
    offsets are corrected for bytes prepended to the archive, as zipfile does."""
    window = min(size, ZIP_TAIL_BYTES)
    f.seek(size - window)
    tail = _read(f, window, budget)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        raise _damaged(path, "no end of central directory record")
    eocd = size - window + at
    cd_size, cd_offset = struct.unpack_from("<II", tail, at + 12)
    where = eocd  # the record that follows the central directory
    if eocd >= 20:
        f.seek(eocd - 20)
        locator = _read(f, 20, budget)
        if locator[:4] == b"PK\x06\x07":
            (rec_pos,) = struct.unpack_from("<Q", locator, 8)
            if rec_pos + 56 > size:
                raise _damaged(path, "the zip64 end record is past the end of the file")
            f.seek(rec_pos)
            rec = _read(f, 56, budget)
            if rec[:4] != b"PK\x06\x06":
                raise _damaged(path, "no zip64 end record where its locator points")
            cd_size, cd_offset = struct.unpack_from("<QQ", rec, 40)
            where = eocd - 20 - 56
    concat = where - cd_size - cd_offset
    if concat < 0 or cd_offset + concat + cd_size > size:
        raise _damaged(path, "the central directory is outside the file")
    if cd_size > MAX_CENTRAL_DIRECTORY:
        raise ReadLimit(
            f"{path.name}: a zip central directory of {cd_size} bytes, more than format "
            f"detection reads ({MAX_CENTRAL_DIRECTORY})"
        )
    return cd_offset + concat, cd_size


def _zip_names(f: BinaryIO, path: Path, size: int, budget: Budget) -> list[str]:
    start, length = _central_directory(f, path, size, budget)
    f.seek(start)
    cd = _read(f, length, budget)
    names: list[str] = []
    pos = 0
    while pos + 46 <= len(cd):
        if cd[pos : pos + 4] != b"PK\x01\x02":
            raise _damaged(path, f"a bad central directory entry at offset {start + pos}")
        (flags,) = struct.unpack_from("<H", cd, pos + 8)
        nlen, xlen, clen = struct.unpack_from("<HHH", cd, pos + 28)
        raw = cd[pos + 46 : pos + 46 + nlen]
        names.append(raw.decode("utf-8" if flags & 0x800 else "cp437", "replace"))
        pos += 46 + nlen + xlen + clen
    if pos != len(cd):
        raise _damaged(path, "the central directory breaks off")
    return names


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _looks_like_onnx(f: BinaryIO, size: int, budget: Budget) -> bool:
    """Walk the top-level protobuf fields: an ONNX ModelProto has a graph (field 7). Fields are
    read from a small buffer; a length-delimited field past it is skipped by a seek."""
    if size > 64 << 30:
        return False
    f.seek(0)
    buf = _read(f, min(size, ONNX_FIRST_BYTES), budget)
    offset, pos = 0, 0  # buf[0] is at file offset `offset`
    seen: set[int] = set()
    fields = 0
    while offset + pos < size:
        fields += 1
        if fields > ONNX_MAX_FIELDS:
            raise ReadLimit(
                f"{budget.what}: more than {ONNX_MAX_FIELDS} top-level protobuf fields, more "
                "than format detection walks"
            )
        if len(buf) - pos < 20 and offset + len(buf) < size:  # a varint may straddle the end
            chunk = ONNX_CHUNK if not buf else ONNX_FIRST_BYTES  # after a seek, or walking on
            offset += pos
            f.seek(offset)
            buf, pos = _read(f, min(size - offset, chunk), budget), 0
        try:
            key, pos = _read_varint(buf, pos)
            field, wire = key >> 3, key & 7
            if field not in _ONNX_FIELDS:
                return False
            if wire == 0:
                _, pos = _read_varint(buf, pos)
            elif wire == 2:
                length, pos = _read_varint(buf, pos)
                target = offset + pos + length
                if target > size:
                    return False
                if target - offset > len(buf):
                    offset, pos, buf = target, 0, b""
                else:
                    pos = target - offset
            else:
                return False
        except ValueError:
            return False
        seen.add(field)
    return 7 in seen and 1 in seen


def _detect_dir(path: Path, shared: Budget | None) -> Detection:
    budget = Budget(DIR_READ_LIMIT, f"{path.name}/", shared)
    for name in SAVEDMODEL_FILES:  # a SavedModel is its directory: graph, variables, assets
        graph = path / name
        if stat.S_ISREG(os.lstat(graph).st_mode if os.path.lexists(graph) else 0):
            return Detection(Format.SAVEDMODEL, graph, f"model directory: {name} (SavedModel)")
    found: list[tuple[Format, Path, str]] = []
    unread: list[str] = []
    for e in _tree.scan(path).files:
        parts = e.rel.split("/")
        if any(p.startswith(".") for p in parts) or e.path.suffix.lower() in CONFIG_SUFFIXES:
            continue
        try:
            with _open(e.path, follow=False) as f:
                fmt, reason = _detect_file(f, e.path, budget)
        except ReadLimit as limit:
            if limit.budget is budget or limit.budget is shared:  # the directory's: stop here
                raise
            unread.append(_tree.shown(e.rel))
            continue
        except (FormatError, OSError):
            continue
        found.append((fmt, e.path, reason))
    if not found:
        if unread:
            where = f"{path.name}/{unread[0]}"
            raise ReadLimit(f"{where}: format detection stopped at its read bound")
        raise FormatError(f"{path}: a directory with no model file in it")
    order = [Format.ONNX, Format.TORCHSCRIPT, Format.SAFETENSORS, Format.TORCH]
    order += [Format.PICKLE, Format.TORCH_PACKAGE, Format.GGUF, Format.KERAS, Format.KERAS_H5]
    order += [Format.TFLITE, Format.SKOPS, Format.JOBLIB, Format.NUMPY, Format.SAVEDMODEL]
    found.sort(key=lambda t: (order.index(t[0]), str(t[1])))
    fmt, primary, reason = found[0]
    rel = primary.relative_to(path)
    return Detection(fmt, primary, f"model directory: {reason} in {rel}", tuple(unread))
