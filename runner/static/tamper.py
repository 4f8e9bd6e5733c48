"""Signs of tampering in a model file's bytes, found on the host without deserializing it.

These are the cases where a file that fails (or happens not to fail) to load points to
tampering rather than to a plain mistake: a safetensors header or tensor offsets past the end
of the file, a zip member whose CRC does not match, bytes after a pickle's STOP opcode, and a
pickle+zip polyglot (one file that is both).
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path
from typing import BinaryIO

from runner.static.pickles import MAX_OPS, Note, Walkable, ops, walk_path
from runner.static.tamper_kinds import Tamper as Tamper  # re-exported
from runner.static.tamper_kinds import TamperKind as TamperKind
from runner.worker.shared import onnx_data, tree
from runner.worker.shared.formats import Format

MAX_HEADER_BYTES = 100 << 20
TAIL_SCAN_BYTES = 64 << 20
MAX_MEMBER_SCAN_BYTES = 256 << 20


def check_model(path: Path, primary: Path | None, fmt: Format | None) -> list[Tamper]:
    """All checks for a model (a file, or a directory and its primary weights file)."""
    found: list[Tamper] = []
    if path.is_dir():
        walked = tree.scan(path)  # bounded, iterative, never follows a link or opens a file
        found += _symlinks(walked)
        for onnx_file in sorted(e.path for e in walked.files if e.rel.endswith(".onnx")):
            found += _onnx_external(onnx_file)
    elif fmt is Format.ONNX:
        found += _onnx_external(path)
    target = primary or path
    if target.is_file():
        found += check(target, fmt)
    return found


def check(path: Path, fmt: Format | None) -> list[Tamper]:
    """Run the byte-level checks that apply to this file; never raises for a hostile file."""
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
        elif not found and _has_zip_directory(path, size):
            found.append(
                Tamper(
                    TamperKind.POLYGLOT,
                    "the file does not start as a zip archive but "
                    "carries a zip central directory (a pickle+zip polyglot)",
                )
            )
        return found
    except OSError as e:
        return [Tamper(TamperKind.UNREADABLE, f"the file could not be read: {e.strerror}")]


def _safetensors(path: Path, size: int) -> list[Tamper]:
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > size - 8:
            return [
                Tamper(
                    TamperKind.SAFETENSORS_HEADER,
                    f"header length {n} runs past the end of the file ({size} bytes)",
                )
            ]
        if n > MAX_HEADER_BYTES:
            return [Tamper(TamperKind.SAFETENSORS_HEADER, f"header length {n} exceeds 100 MiB")]
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError):
            return [Tamper(TamperKind.SAFETENSORS_HEADER, "the header is not valid JSON")]
    data_len = size - 8 - n
    if not isinstance(header, dict):
        return [Tamper(TamperKind.SAFETENSORS_HEADER, "the header is not a JSON object")]
    for name, info in header.items():
        if name == "__metadata__" or not isinstance(info, dict):
            continue
        offsets = info.get("data_offsets")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
        ):
            return [
                Tamper(
                    TamperKind.SAFETENSORS_OFFSETS, f"tensor {name[:80]!r} has malformed offsets"
                )
            ]
        if offsets[1] > data_len or offsets[0] > offsets[1] or offsets[0] < 0:
            return [
                Tamper(
                    TamperKind.SAFETENSORS_OFFSETS,
                    f"tensor {name[:80]!r} spans bytes "
                    f"{offsets[0]}..{offsets[1]}, past the {data_len} bytes of data",
                )
            ]
    return []


def pickle_notes(notes: list[Note]) -> list[Tamper]:
    """What the pickle walk could not see, as Tamper entries (the rules judge them)."""
    return [Tamper(TamperKind(n.issue.value), n.evidence) for n in notes]


def _pickle(path: Path, size: int) -> list[Tamper]:
    """Bytes after the pickle's STOP, and what the walk could not see (an extension code, a
    bound reached). Opcodes are streamed and large arguments skipped."""
    walk = walk_path(path)
    found = pickle_notes(walk.notes)
    if walk.error:
        evidence = f"the pickle stream breaks off: {walk.error}"[:200]
        return [*found, Tamper(TamperKind.PICKLE_TRUNCATED, evidence)]
    if walk.end is None or walk.legacy:
        return found  # cut short by the opcode bound (in the notes), or storage bytes by design
    end = walk.end
    trailing = size - end
    if trailing <= 0:
        return found
    with path.open("rb") as f:
        f.seek(end)
        tail = f.read(min(trailing, TAIL_SCAN_BYTES))
    polyglot = b"PK\x03\x04" in tail or b"PK\x05\x06" in tail or _has_zip_directory(path, size)
    what = "a zip archive (a pickle+zip polyglot)" if polyglot else f"{trailing} bytes"
    return [
        *found,
        Tamper(
            TamperKind.POLYGLOT if polyglot else TamperKind.PICKLE_TRAILING_DATA,
            f"{what} after the pickle's STOP opcode at offset {end - 1}",
        ),
    ]


def _has_zip_directory(path: Path, size: int) -> bool:
    with path.open("rb") as f:
        f.seek(max(0, size - 65_557))
        return b"PK\x05\x06" in f.read()


BOMB_MIN_BYTES = 100 << 20
BOMB_MIN_RATIO = 100


def _zip(path: Path, size: int, head: bytes) -> list[Tamper]:
    found: list[Tamper] = _zip_end(path, size)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if infos:
                first = min(i.header_offset for i in infos)
                if first > 0 or not head.startswith(b"PK"):
                    found.append(
                        Tamper(
                            TamperKind.POLYGLOT,
                            f"{first} bytes of other data precede the "
                            "zip archive (a pickle+zip polyglot)",
                        )
                    )
            bombs = [
                i
                for i in infos
                if i.file_size >= BOMB_MIN_BYTES
                and i.file_size >= BOMB_MIN_RATIO * max(i.compress_size, 1)
            ]
            for b in bombs[:3]:
                found.append(
                    Tamper(
                        TamperKind.ZIP_BOMB,
                        f"member {b.filename[:120]!r} inflates "
                        f"{b.compress_size} bytes to {b.file_size}",
                    )
                )
            if bombs:
                return found  # do not inflate a bomb to check its CRC
            with path.open("rb") as f:
                found += _zip_layout(f, size, infos)
            found += _unreferenced(zf, infos)
            if any(t.check is TamperKind.ZIP_HEADER for t in found):
                return found  # testzip would blame the CRC for a header mismatch
            bad = zf.testzip()
            if bad is not None:
                found.append(
                    Tamper(TamperKind.ZIP_CRC, f"member {bad[:120]!r} fails its CRC check")
                )
    except zipfile.BadZipFile as e:
        if "CRC" in str(e):
            found.append(Tamper(TamperKind.ZIP_CRC, str(e)[:200]))
        # other damage (a truncated download, say) is a broken file, not a sign of tampering
    except (OSError, ValueError, NotImplementedError, EOFError):
        pass
    return found


_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # a zip local file header
_DESCRIPTOR_MAX = 24  # a data descriptor after the member's data: 12 to 24 bytes


def _zip_layout(f: BinaryIO, size: int, infos: list[zipfile.ZipInfo]) -> list[Tamper]:
    """Each local header against its central-directory entry, bytes that no member accounts
    for between the members, and bytes after the end of the archive."""
    found: list[Tamper] = []
    spans: list[tuple[int, int, int]] = []  # start, end of data, slack allowed after it
    for i in infos:
        f.seek(i.header_offset)
        raw = f.read(_LOCAL.size)
        if len(raw) < _LOCAL.size or raw[:4] != b"PK\x03\x04":
            found.append(
                Tamper(
                    TamperKind.ZIP_HEADER,
                    f"member {i.filename[:120]!r}: no local header at offset {i.header_offset}",
                )
            )
            continue
        _sig, _ver, flags, method, _t, _d, crc, csize, _usize, nlen, xlen = _LOCAL.unpack(raw)
        name = f.read(nlen).decode("utf-8" if flags & 0x800 else "cp437", "replace")
        if name != i.orig_filename:
            found.append(
                Tamper(
                    TamperKind.ZIP_HEADER,
                    f"the local header names {name[:80]!r}, the "
                    f"central directory {i.orig_filename[:80]!r}",
                )
            )
        if method != i.compress_type or (
            not flags & 0x8 and (crc != i.CRC or csize not in (i.compress_size, 0xFFFFFFFF))
        ):
            found.append(
                Tamper(
                    TamperKind.ZIP_HEADER,
                    f"member {i.filename[:120]!r}: the local header "
                    "and the central directory disagree (method, CRC or size)",
                )
            )
        end = i.header_offset + _LOCAL.size + nlen + xlen + i.compress_size
        spans.append((i.header_offset, end, _DESCRIPTOR_MAX if flags & 0x8 else 0))
        if len(found) >= 5:
            return found
    eocd = _end_of_central_directory(f, size)
    if eocd is not None:
        spans.sort()
        hidden = 0
        for (_, end, slack), (start, _, _) in zip(
            spans, [*spans[1:], (eocd[0], 0, 0)], strict=True
        ):
            if start > end + slack:
                hidden += start - end
        if hidden:
            found.append(
                Tamper(
                    TamperKind.ZIP_HIDDEN_DATA,
                    f"{hidden} bytes between the zip's members belong to none of them",
                )
            )
    return found


def _zip_end(path: Path, size: int) -> list[Tamper]:
    """The archive's end: bytes after it, a long comment, and bytes between the central
    directory and its end records (where a second, fake end record would put them)."""
    found: list[Tamper] = []
    with path.open("rb") as f:
        eocd = _end_of_central_directory(f, size)
    if eocd is None:
        return found
    _cd_offset, cd_end, record_at, end_of_archive, comment = eocd
    if size > end_of_archive:
        found.append(
            Tamper(
                TamperKind.ZIP_TRAILING_DATA,
                f"{size - end_of_archive} bytes after the end of the zip archive",
            )
        )
    if comment > 1024:
        found.append(Tamper(TamperKind.ZIP_TRAILING_DATA, f"a {comment}-byte archive comment"))
    if record_at != cd_end:
        found.append(
            Tamper(
                TamperKind.ZIP_HIDDEN_DATA,
                f"{abs(record_at - cd_end)} bytes between the central directory and its end record",
            )
        )
    return found


def _end_of_central_directory(f: BinaryIO, size: int) -> tuple[int, int, int, int, int] | None:
    """(central directory offset, where it ends, where its end records begin, end of the
    archive, comment length), from the last end record; zip64 records are followed."""
    window = min(size, 65_557)
    f.seek(size - window)
    tail = f.read(window)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return None
    eocd = size - window + at
    cd_size, cd_offset = struct.unpack_from("<II", tail, at + 12)
    (comment,) = struct.unpack_from("<H", tail, at + 20)
    record_at = eocd
    if eocd >= 20:  # a zip64 end record and its locator precede it (torch always writes them)
        f.seek(eocd - 20)
        locator = f.read(20)
        if locator[:4] == b"PK\x06\x07":
            (rec_pos,) = struct.unpack_from("<Q", locator, 8)
            f.seek(rec_pos)
            rec = f.read(56)
            if len(rec) == 56 and rec[:4] == b"PK\x06\x06":
                cd_size, cd_offset = struct.unpack_from("<QQ", rec, 40)
                # the zip64 record, its locator and the end record follow one another
                record_at = rec_pos if rec_pos + 56 + 20 == eocd else eocd
            else:
                record_at = eocd - 20
    return cd_offset, cd_offset + cd_size, record_at, eocd + 22 + comment, comment


_TORCH_NAMES = {
    "data.pkl",
    "version",
    ".format_version",
    ".storage_alignment",
    "byteorder",
    "constants.pkl",
    "attributes.pkl",
}
_TORCH_DIRS = ("data/", ".data/", "code/", "constants/", "extra/")


def _unreferenced(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> list[Tamper]:
    """In a torch checkpoint: tensor members no pickle refers to, and members outside the
    layout torch writes. Either is room for a payload that loading never shows."""
    pkls = [i for i in infos if i.filename.endswith("/data.pkl")]
    if not pkls:
        return []
    prefix = pkls[0].filename[: -len("data.pkl")]
    # TorchScript archives hold code, debug info, traced inputs, bytecode...: only their
    # tensors are checked; a torch.save checkpoint has a fixed layout
    scripted = any(
        i.filename.startswith((prefix + "code/", prefix + "constants.pkl")) for i in infos
    )
    keys, cut = _pickle_keys(zf, infos)
    found: list[Tamper] = [cut] if cut is not None else []
    for i in infos:
        rel = i.filename[len(prefix) :] if i.filename.startswith(prefix) else i.filename
        if rel.startswith("data/") and cut is None and rel[5:] not in keys and not i.is_dir():
            found.append(
                Tamper(
                    TamperKind.ZIP_UNREFERENCED,
                    f"member {i.filename[:120]!r} is never referenced by the checkpoint's pickle",
                )
            )
        elif not scripted and (
            not i.filename.startswith(prefix)
            or not (rel in _TORCH_NAMES or rel.startswith(_TORCH_DIRS))
        ):
            found.append(
                Tamper(
                    TamperKind.ZIP_UNREFERENCED,
                    f"member {i.filename[:120]!r} is not part of a torch checkpoint's layout",
                )
            )
        if len(found) >= 5:
            break
    return found


def _pickle_keys(
    zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]
) -> tuple[set[str], Tamper | None]:
    """The short strings of the archive's pickles (its tensor keys among them), read within
    MAX_OPS opcodes for all of them; past the bound, a Tamper entry says the members were not
    checked against the keys. A member that does not read leaves its keys out (its tensors
    then read as unreferenced)."""
    keys: set[str] = set()
    left = MAX_OPS
    for i in infos:
        if not i.filename.endswith(".pkl") or i.file_size > MAX_MEMBER_SCAN_BYTES:
            continue
        try:
            with zf.open(i) as member:
                for op, arg, _pos in ops(Walkable(member, i.file_size)):
                    left -= 1
                    if left < 0:
                        return keys, Tamper(
                            TamperKind.PICKLE_OPCODE_CAP,
                            f"the tensor keys of the archive's pickles were read up to their "
                            f"bound of {MAX_OPS} opcodes (in {i.filename[:120]!r}): members "
                            "were not checked against them",
                        )
                    if isinstance(arg, str) and len(arg) < 64:
                        keys.add(arg)
                    if op.name == "STOP":
                        break
        except MemoryError:
            raise
        except Exception:  # noqa: S112 - a member that does not read: its keys are missing
            continue
    return keys, None


def _symlinks(walked: tree.Tree) -> list[Tamper]:
    """Symlinks that lead outside the model's directory (resolved without raising: a loop is
    the walk's own finding)."""
    found = []
    base = os.path.realpath(walked.root)
    for e in walked.of(tree.Kind.SYMLINK):
        try:
            target = os.readlink(e.path)
        except OSError:
            continue
        resolved = os.path.realpath(e.path)
        if os.path.isabs(target) or not (resolved == base or resolved.startswith(base + "/")):
            found.append(
                Tamper(
                    TamperKind.SYMLINK_ESCAPE,
                    f"{tree.shown(e.rel)} is a symlink to "
                    f"{tree.shown(target)!r}, outside the model's directory",
                )
            )
    return found[:10]


# --- ONNX external data, read from the protobuf's bytes (no onnx package on the host) ---------


def _onnx_external(path: Path) -> list[Tamper]:
    """External data that leaves the model's directory, found as the worker finds it."""
    try:
        return [Tamper(TamperKind.ONNX_EXTERNAL_DATA, p) for p in onnx_data.escapes(path)][:10]
    except (OSError, ValueError):
        return []
