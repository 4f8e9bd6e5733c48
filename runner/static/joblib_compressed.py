"""Compressed joblib dumps read on the host: a zlib, gzip, bz2, xz or lzma stream (lz4 when the
lz4 package is installed) is inflated as a stream, never held whole, up to a bound, and its
pickle walked with joblib's layout (runner.static.joblib_layout); a stream that inflates past its
bound is a finding (AL941), never an out-of-memory.
"""

from __future__ import annotations

import bz2
import io
import lzma
import zlib
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.static.signs import Signs

OUTPUT_FLOOR = 256 << 20
OUTPUT_RATIO = 100  # bytes a compressed dump may inflate to, per byte of it
OUTPUT_CAP = 4 << 30
CHUNK = 1 << 16


def _kind(head: bytes) -> str:
    if head.startswith(b"\x78"):
        return "zlib"
    for magic, kind in (
        (b"\x1f\x8b", "gzip"),
        (b"BZh", "bz2"),
        (b"\xfd7zXZ\x00", "xz"),
        (b"\x5d\x00\x00", "lzma"),
        (b"\x04\x22\x4d\x18", "lz4"),
    ):
        if head.startswith(magic):
            return kind
    return ""


def _decompressor(kind: str, following: bool = False) -> Any:
    """A decompressor for the stream's kind; `following`: for a stream after the first, which
    lzma.LZMAFile reads as xz or lzma alike."""
    if kind == "zlib":
        return zlib.decompressobj()
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if kind == "bz2":
        return bz2.BZ2Decompressor()
    if kind in ("xz", "lzma"):
        form = lzma.FORMAT_XZ if kind == "xz" else lzma.FORMAT_ALONE
        return lzma.LZMADecompressor(lzma.FORMAT_AUTO if following else form)
    import importlib

    return importlib.import_module("lz4.frame").LZ4FrameDecompressor()  # optional: ImportError


class Inflated(io.RawIOBase):
    """A compressed file as the stream of its inflated bytes: read, readline, tell and forward
    seeks (by inflating and dropping), at most `bound` bytes in all (`bombed` past it), never
    more than CHUNK-sized pieces in memory at once."""

    def __init__(self, f: IO[bytes], kind: str, bound: int) -> None:
        super().__init__()
        self.f, self.kind, self.bound = f, kind, bound
        self.d = _decompressor(kind)
        self.buf = b""
        self.pos = 0  # inflated bytes handed out
        self.made = 0  # inflated bytes produced
        self.bombed = False
        self.eof = False
        self.trailing = 0  # compressed bytes after the end of the stream

    def readable(self) -> bool:
        return True

    def _more(self) -> bool:
        if self.eof or self.bombed:
            return False
        room = self.bound - self.made
        if room <= 0:
            self.bombed = True
            return False
        d = self.d
        if self.kind in ("zlib", "gzip"):
            data = d.unconsumed_tail or self.f.read(CHUNK)
            out = d.decompress(data, min(CHUNK, room)) if data else d.flush()
            done = d.eof or not data
            rest = d.unused_data
        elif d.eof:  # bz2.BZ2File and lzma.LZMAFile (joblib's readers) go on to a next stream
            return self._next_stream(room)
        else:
            data = self.f.read(CHUNK) if d.needs_input else b""
            out = d.decompress(data, min(CHUNK, room)) if (data or not d.needs_input) else b""
            done = not data and d.needs_input and not d.eof
            rest = b""
        self.made += len(out)
        self.buf += out
        if done:
            self.eof = True
            self.trailing = len(rest) + len(self.f.read(CHUNK))
        return bool(out) or not done

    def _next_stream(self, room: int) -> bool:
        """What Python's DecompressReader does at the end of a bz2, xz or lzma stream: the
        bytes after it are the next stream (xz or lzma alike), or, when they are none, trailing
        bytes it ignores."""
        data = self.d.unused_data or self.f.read(CHUNK)
        if data:
            try:
                self.d = _decompressor(self.kind, following=True)
                out = self.d.decompress(data, min(CHUNK, room))
            except (OSError, EOFError, lzma.LZMAError):
                pass  # not a stream: the reader stops here, as joblib's does
            else:
                self.made += len(out)
                self.buf += out
                return True
        self.eof = True
        self.trailing = len(data) + len(self.f.read(CHUNK))
        return False

    def read(self, n: int | None = -1) -> bytes:
        want = (1 << 62) if n is None or n < 0 else n
        while len(self.buf) < want and self._more():
            pass
        out, self.buf = self.buf[:want], self.buf[want:]
        self.pos += len(out)
        return out

    def readline(self, limit: int | None = -1) -> bytes:
        cap = (1 << 62) if limit is None or limit < 0 else limit
        while b"\n" not in self.buf[:cap] and len(self.buf) < cap and self._more():
            pass
        at = self.buf.find(b"\n", 0, cap)
        return self.read(at + 1 if at >= 0 else min(cap, len(self.buf)))

    def tell(self) -> int:
        return self.pos

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self.pos + offset
        if whence not in (io.SEEK_SET, io.SEEK_CUR) or target < self.pos:
            raise OSError("an inflated stream seeks forward only")
        while self.pos < target:
            if not self.read(min(target - self.pos, 1 << 20)):
                break
        return self.pos


def output_bound(size: int) -> int:
    return min(OUTPUT_CAP, max(OUTPUT_FLOOR, OUTPUT_RATIO * size))


def examine(primary: Path) -> Signs:
    """A compressed joblib dump: its pickle's imports, and what could not be read."""
    from runner.errors import untrusted_text
    from runner.static import pickles
    from runner.static.signs import Signs
    from runner.static.tamper import Tamper, TamperKind, pickle_notes

    out = Signs()
    size = primary.stat().st_size
    with primary.open("rb") as f:
        kind = _kind(f.read(8))
        f.seek(0)
        if not kind:
            return out
        bound = output_bound(size)
        try:
            stream = Inflated(f, kind, bound)
        except ImportError:
            why = f"a {kind}-compressed joblib dump: no {kind} reader on the host, not read"
            out.tamper.append(Tamper(TamperKind.ARRAY_HEADER_MALFORMED, why))
            return out
        try:
            walked = pickles.walk_pickle_file(stream, bound, plain_check=False)  # type: ignore[arg-type]
            error = walked.error
        except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as e:
            walked, error = None, f"{type(e).__name__}: {e}"
        if walked is not None:
            out.imports, out.tamper = walked.imports, pickle_notes(walked.notes)
        if stream.bombed:
            why = (
                f"the {kind} stream inflates to more than {bound} bytes (from {size}): what "
                "follows was not read"
            )
            out.tamper.append(Tamper(TamperKind.ARRAY_HEADER_MALFORMED, why))
        elif error:
            why = untrusted_text(f"the {kind}-compressed pickle breaks off: {error}", 300)
            out.tamper.append(Tamper(TamperKind.PICKLE_TRUNCATED, why))
        elif walked is not None and walked.end is not None:
            extra = len(stream.read(CHUNK)) + stream.trailing
            if extra:
                why = f"bytes after the pickle's STOP in the {kind} stream (at {walked.end - 1})"
                out.tamper.append(Tamper(TamperKind.PICKLE_TRAILING_DATA, why))
    return out
