"""Signs of tampering in a model file's bytes, found on the host without deserializing it.

These are the cases where a file that fails (or happens not to fail) to load points to
tampering rather than to a plain mistake: a safetensors header or tensor offsets past the end
of the file, a zip member whose CRC does not match, bytes after a pickle's STOP opcode, and a
pickle+zip polyglot (one file that is both).
"""

from __future__ import annotations

import json
import pickletools
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .worker.formats import Format

MAX_HEADER_BYTES = 100 << 20
MAX_PICKLE_SCAN_BYTES = 512 << 20


@dataclass(frozen=True)
class Tamper:
    check: str
    evidence: str


def check(path: Path, fmt: Format | None) -> list[Tamper]:
    """Run the checks that apply to this file; never raises for a hostile file."""
    if not path.is_file():
        return []
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(16)
        found: list[Tamper] = []
        if len(head) >= 9 and head[8:9] == b"{":
            found += _safetensors(path, size)
        if head[:1] == b"\x80" or fmt is Format.PICKLE:
            found += _pickle(path, size)
        if head.startswith(b"PK") or fmt in (Format.TORCH, Format.TORCHSCRIPT):
            found += _zip(path, size, head)
        elif _has_zip_directory(path, size):
            found.append(Tamper("polyglot", "the file does not start as a zip archive but "
                                "carries a zip central directory (a pickle+zip polyglot)"))
        return found
    except OSError as e:
        return [Tamper("unreadable", f"the file could not be read: {e.strerror}")]


def _safetensors(path: Path, size: int) -> list[Tamper]:
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > size - 8:
            return [Tamper("safetensors-header", f"header length {n} runs past the end of the "
                           f"file ({size} bytes)")]
        if n > MAX_HEADER_BYTES:
            return [Tamper("safetensors-header", f"header length {n} exceeds 100 MiB")]
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError):
            return [Tamper("safetensors-header", "the header is not valid JSON")]
    data_len = size - 8 - n
    if not isinstance(header, dict):
        return [Tamper("safetensors-header", "the header is not a JSON object")]
    for name, info in header.items():
        if name == "__metadata__" or not isinstance(info, dict):
            continue
        offsets = info.get("data_offsets")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) for o in offsets)):
            return [Tamper("safetensors-offsets", f"tensor {name[:80]!r} has malformed offsets")]
        if offsets[1] > data_len or offsets[0] > offsets[1] or offsets[0] < 0:
            return [Tamper("safetensors-offsets", f"tensor {name[:80]!r} spans bytes "
                           f"{offsets[0]}..{offsets[1]}, past the {data_len} bytes of data")]
    return []


def _pickle(path: Path, size: int) -> list[Tamper]:
    if size > MAX_PICKLE_SCAN_BYTES:
        return []
    data = path.read_bytes()
    stop = None
    try:
        for op, _arg, pos in pickletools.genops(data):
            if op.name == "STOP":
                stop = pos
                break
    except (ValueError, EOFError, struct.error) as e:
        return [Tamper("pickle-truncated", f"the pickle stream breaks off: {e}"[:200])]
    if stop is None:
        return [Tamper("pickle-truncated", "the pickle stream has no STOP opcode")]
    trailing = size - (stop + 1)
    if trailing > 0:
        polyglot = b"PK\x03\x04" in data[stop + 1:] or b"PK\x05\x06" in data[stop + 1:]
        what = "a zip archive (a pickle+zip polyglot)" if polyglot else f"{trailing} bytes"
        return [Tamper("polyglot" if polyglot else "pickle-trailing-data",
                       f"{what} after the pickle's STOP opcode at offset {stop}")]
    return []


def _has_zip_directory(path: Path, size: int) -> bool:
    with path.open("rb") as f:
        f.seek(max(0, size - 65_557))
        return b"PK\x05\x06" in f.read()


def _zip(path: Path, size: int, head: bytes) -> list[Tamper]:
    found: list[Tamper] = []
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if infos:
                first = min(i.header_offset for i in infos)
                if first > 0 or not head.startswith(b"PK"):
                    found.append(Tamper("polyglot", f"{first} bytes of other data precede the "
                                        "zip archive (a pickle+zip polyglot)"))
            bad = zf.testzip()
            if bad is not None:
                found.append(Tamper("zip-crc", f"member {bad[:120]!r} fails its CRC check"))
    except zipfile.BadZipFile as e:
        if "CRC" in str(e):
            found.append(Tamper("zip-crc", str(e)[:200]))
        # other damage (a truncated download, say) is a broken file, not a sign of tampering
    except (OSError, ValueError, NotImplementedError, EOFError):
        pass
    return found
