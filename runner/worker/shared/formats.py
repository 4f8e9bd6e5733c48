"""Identify a model's format from its bytes.

Shared by the host (which must never deserialize the model) and the worker, so this module
only reads bytes: magic numbers, the zip central directory, the safetensors header length,
and the top-level field layout of an ONNX protobuf. It imports nothing outside the standard
library.
"""

from __future__ import annotations

import os
import struct
import zipfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class Format(StrEnum):
    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"
    TORCH = "torch"  # torch.save output: a full module, a state dict or any pickled object
    SAFETENSORS = "safetensors"
    PICKLE = "pickle"  # a plain pickle stream


# Files in a model directory that are configuration, not weights.
CONFIG_SUFFIXES = {".json", ".txt", ".md", ".yaml", ".yml", ".model", ".tiktoken", ".py"}
_PICKLE_HINTS = {".pkl", ".pickle", ".pck", ".joblib"}
# Legacy (non-zip) torch.save streams begin with protocol 2 and a LONG1 magic number.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_ONNX_FIELDS = {1, 2, 3, 4, 5, 6, 7, 8, 14, 20, 21, 25}


class FormatError(ValueError):
    """The bytes are not a model Airlock recognises, or they are damaged."""


@dataclass(frozen=True)
class Detection:
    format: Format
    path: Path  # the file that holds the model (inside a directory: the primary weights file)
    reason: str  # which evidence decided


def detect(path: Path) -> Detection:
    """Detect the format of a model file or model directory, by content."""
    if path.is_dir():
        return _detect_dir(path)
    fmt, reason = _detect_file(path)
    return Detection(fmt, path, reason)


def _detect_file(path: Path) -> tuple[Format, str]:
    size = path.stat().st_size
    if size == 0:
        raise FormatError(f"{path.name} is empty")
    with path.open("rb") as f:
        head = f.read(64)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _detect_zip(path)
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
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return Format.PICKLE, f"pickle protocol {head[1]}"
    if _looks_like_onnx(path, size):
        return Format.ONNX, "ONNX ModelProto fields"
    if path.suffix.lower() in _PICKLE_HINTS and head[:1] in (b"(", b"c", b"]", b"}", b"I", b"S"):
        return Format.PICKLE, "protocol 0/1 pickle"
    raise FormatError(
        f"{path.name}: not a recognised model (ONNX, TorchScript, torch.save, safetensors "
        "or pickle)"
    )


def _detect_zip(path: Path) -> tuple[Format, str]:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise FormatError(f"{path.name}: a damaged zip archive ({e})") from e
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        return Format.TORCHSCRIPT, "zip with TorchScript code/"
    if any(n.endswith("data.pkl") for n in names):
        return Format.TORCH, "zip with data.pkl (torch.save)"
    raise FormatError(f"{path.name}: a zip archive that is not a torch checkpoint")


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


def _looks_like_onnx(path: Path, size: int) -> bool:
    """Walk the top-level protobuf fields: an ONNX ModelProto has a graph (field 7)."""
    if size > 64 << 30:
        return False
    with path.open("rb") as f:
        # Top-level fields other than the graph are small; the graph is skipped by length.
        buf = f.read(1 << 16)
        pos = 0
        seen: set[int] = set()
        offset = 0  # file offset of buf[0]
        while offset + pos < size:
            try:
                key, pos = _read_varint(buf, pos)
                field, wire = key >> 3, key & 7
                if field not in _ONNX_FIELDS:
                    return False
                if wire == 0:
                    _, pos = _read_varint(buf, pos)
                elif wire == 2:
                    length, pos = _read_varint(buf, pos)
                    if offset + pos + length > size:
                        return False
                    target = offset + pos + length
                    f.seek(target)
                    buf = f.read(1 << 16)
                    offset, pos = target, 0
                else:
                    return False
            except ValueError:
                return False
            seen.add(field)
        return 7 in seen and 1 in seen


def _detect_dir(path: Path) -> Detection:
    found: list[tuple[Format, Path, str]] = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            p = Path(root) / name
            if name.startswith(".") or p.suffix.lower() in CONFIG_SUFFIXES or p.is_symlink():
                continue
            try:
                fmt, reason = _detect_file(p)
            except FormatError:
                continue
            found.append((fmt, p, reason))
    if not found:
        raise FormatError(f"{path}: a directory with no model file in it")
    order = [Format.ONNX, Format.TORCHSCRIPT, Format.SAFETENSORS, Format.TORCH, Format.PICKLE]
    found.sort(key=lambda t: (order.index(t[0]), str(t[1])))
    fmt, primary, reason = found[0]
    return Detection(fmt, primary, f"model directory: {reason} in {primary.relative_to(path)}")
