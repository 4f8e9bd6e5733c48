"""NumPy .npy and .npz files read on the host, by bytes only: headers, and object arrays'
pickles.

An .npy file is a magic string, a version, a header length (2 bytes in version 1, 4 in 2 and 3)
and a header that is a Python literal dict (descr, fortran_order, shape), read here with
ast.literal_eval under a size bound (numpy's own bound is 10 000 bytes), then the data: shape
x itemsize bytes, or, for an object dtype, a pickle (np.load(allow_pickle=True) unpickles it):
AL940, and the pickle's imports are judged as any pickle's. An .npz is a zip of .npy members,
each read the same way from its (inflated) member stream. A header that is cut short, over its
bound, not a literal of that shape, or that claims more bytes than the file holds is AL941:
what the array holds was not checked.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import struct
import zipfile
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from runner.static.signs import Signs

MAGIC = b"\x93NUMPY"
MAX_HEADER = 64 << 10
MAX_MEMBERS = 10_000  # .npz members read
MAX_DIMS = 64
MAX_FIELDS = 1_000  # of a structured dtype, looked through for objects
_SIMPLE = re.compile(r"[<>=|]?([biufcOSUVMm?])(\d*)(\[\w+\])?")


@dataclasses.dataclass(frozen=True)
class Header:
    objects: bool  # the data is a pickle
    nbytes: int | None  # the data's size, when the dtype's is known
    data_at: int  # where the data starts


class Unreadable(ValueError):
    """The header cannot be read: the message says why (AL941)."""


def read_header(f: IO[bytes], size: int) -> Header:
    """The header of the .npy stream at f's position (of `size` bytes from there)."""
    start = f.tell()
    head = f.read(10)
    if len(head) < 10 or not head.startswith(MAGIC):
        raise Unreadable("no .npy magic and version")
    major = head[6]
    if major == 1:
        (n,), at = struct.unpack("<H", head[8:10]), 10
    elif major in (2, 3):
        head += f.read(2)
        if len(head) < 12:
            raise Unreadable("the header length is cut short")
        (n,), at = struct.unpack("<I", head[8:12]), 12
    else:
        raise Unreadable(f"format version {major} is not one numpy writes")
    if n > MAX_HEADER:
        raise Unreadable(f"a header of {n} bytes, over the bound of {MAX_HEADER}")
    if at + n > size:
        raise Unreadable(f"a header of {n} bytes runs past the end ({size} bytes)")
    raw = f.read(n)
    try:
        text = raw.decode("utf-8" if major == 3 else "latin-1")
        d = ast.literal_eval(text)
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError) as e:
        raise Unreadable(f"the header is not a Python literal ({type(e).__name__})") from e
    if not isinstance(d, dict) or not {"descr", "shape", "fortran_order"} <= set(d):
        raise Unreadable("the header is not a dict of descr, fortran_order and shape")
    shape = d["shape"]
    if not isinstance(shape, tuple) or len(shape) > MAX_DIMS:
        raise Unreadable("the shape is not a tuple of at most 64 dimensions")
    count = 1
    for dim in shape:
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
            raise Unreadable("the shape holds something other than sizes")
        count = min(count * dim, 1 << 62)
    objects, itemsize = _descr(d["descr"])
    data_at = start + at + n
    nbytes = None if objects or itemsize is None else min(count * itemsize, 1 << 62)
    if nbytes is not None and at + n + nbytes > size:
        raise Unreadable(
            f"shape {shape!r:.80} claims {nbytes} bytes of data; the file holds {size - at - n}"
        )
    return Header(objects, nbytes, data_at)


def _descr(descr: object) -> tuple[bool, int | None]:
    """(holds objects, itemsize when simple) of a header's descr."""
    if isinstance(descr, str):
        m = _SIMPLE.fullmatch(descr)
        if m is None:
            raise Unreadable(f"descr {descr[:40]!r} is not one the host can read")
        kind, digits = m.group(1), m.group(2)
        if kind == "O":
            return True, None
        n = int(digits) if digits else (1 if kind in "b?" else 0)
        return False, (n * 4 if kind == "U" else n) if n else None
    if isinstance(descr, list):  # a structured dtype: any object field makes it a pickle
        todo, seen = [descr], 0
        while todo:
            for field in todo.pop():
                seen += 1
                if seen > MAX_FIELDS:
                    raise Unreadable(f"a structured dtype of more than {MAX_FIELDS} fields")
                if not isinstance(field, tuple) or len(field) < 2:
                    raise Unreadable("a structured dtype's field is not a (name, type) pair")
                sub = field[1]
                if isinstance(sub, list):
                    todo.append(sub)
                elif _descr(sub)[0]:
                    return True, None
        return False, None
    raise Unreadable("descr is neither a type string nor a list of fields")


def examine(primary: Path) -> Signs:
    from runner.static.signs import Signs

    out = Signs()
    with primary.open("rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"
        f.seek(0)
        if not zipped:
            _one(f, primary.stat().st_size, "", out)
            return out
    try:
        with zipfile.ZipFile(primary) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            for info in infos[:MAX_MEMBERS]:
                with zf.open(info) as member:
                    _one(member, info.file_size, info.filename, out)
            if len(infos) > MAX_MEMBERS:
                _unreadable(out, f"the .npz has {len(infos)} members: the first {MAX_MEMBERS} read")
    except (zipfile.BadZipFile, NotImplementedError, EOFError, OSError, ValueError) as e:
        _unreadable(out, f"the .npz could not be read ({type(e).__name__}: {str(e)[:120]})")
    return out


def _unreadable(out: Signs, why: str, member: str = "") -> None:
    from runner.errors import untrusted_text
    from runner.static.tamper import Tamper, TamperKind

    where = f"{member}: " if member else ""
    out.tamper.append(Tamper(TamperKind.ARRAY_HEADER_MALFORMED, untrusted_text(where + why, 300)))


def _one(f: IO[bytes], size: int, member: str, out: Signs) -> None:
    from runner.errors import untrusted_text
    from runner.static import pickles
    from runner.static.tamper import Tamper, TamperKind, pickle_notes

    try:
        header = read_header(f, size)
    except Unreadable as e:
        _unreadable(out, str(e), member)
        return
    if not header.objects:
        return
    where = f"{member!r}" if member else "the .npy file"
    out.tamper.append(
        Tamper(
            TamperKind.NUMPY_OBJECT_ARRAY,
            untrusted_text(f"{where} is an object array: its data is a pickle", 300),
        )
    )
    walked = pickles.walk_pickle_file(f, size, joblib=False)  # pickle.load reads it
    out.imports += [dataclasses.replace(i, member=member or i.member) for i in walked.imports]
    out.tamper += pickle_notes(walked.notes)
    if walked.error:
        why = f"the pickle of {where} breaks off: {walked.error}"
        out.tamper.append(Tamper(TamperKind.PICKLE_TRUNCATED, untrusted_text(why, 300)))
