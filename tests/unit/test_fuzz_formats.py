"""Format detection reads hostile bytes on the host: fuzzed, it raises nothing but FormatError,
and it reads at most its bound, measured by wrapping every file object it opens."""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.worker.shared import formats
from runner.worker.shared.formats import FormatError, ReadLimit, detect

PREFIXES = [
    b"",
    b"PK\x03\x04",
    b"PK\x05\x06",
    struct.pack("<Q", 20) + b"{",
    b"\x80\x02",
    b"\x80\x04\x95",
    b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19",
    b"\x08\x07",  # ONNX ir_version
    b"\x08\x07\x42\x00\x42\x00",  # ir_version, then empty doc_string fields
    b"\x3a\x80\x80\x04",  # a graph field that claims 64 KiB
    b"(",
    b"c",
]


def _eocd(cd_size: int, cd_offset: int, entries: int) -> bytes:
    return b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, entries, entries, cd_size, cd_offset, 0)


class Counting:
    """A file object that counts what is read through it."""

    def __init__(self, f: Any, log: list[int]) -> None:
        self.f, self.log = f, log

    def read(self, n: int = -1) -> bytes:
        assert n is not None and n >= 0, "detection never reads to the end of a file"
        data: bytes = self.f.read(n)
        self.log.append(len(data))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)

    def __enter__(self) -> Counting:
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="airlock-fuzz-") as d:
        yield Path(d)


def _detect_counted(path: Path) -> tuple[BaseException | None, int]:
    log: list[int] = []
    real = formats._open
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(formats, "_open", lambda p, follow: Counting(real(p, follow), log))
        try:
            detect(path)
            error: BaseException | None = None
        except FormatError as e:
            error = e
    return error, sum(log)


hostile_file = st.tuples(
    st.sampled_from(PREFIXES),
    st.binary(max_size=2048),
    st.one_of(
        st.just(b""),
        st.builds(
            _eocd, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 65535)
        ),
        st.binary(min_size=20, max_size=20).map(lambda b: b"PK\x06\x07" + b[:16]),
    ),
    st.integers(0, 3 << 30),  # a sparse length to extend the file to: cheap to make
    st.sampled_from(["m.bin", "m.pkl", "m.onnx", "m"]),
)


@st.composite
def claiming_file(draw: st.DrawFn) -> tuple[bytes, bytes, bytes, int, str]:
    """Headers whose claims agree with the file's size, so they are followed: a central
    directory said to span most of the file, or ONNX fields padded out for megabytes."""
    size = draw(st.integers(1 << 10, 1 << 30))
    if draw(st.booleans()):
        offset = draw(st.integers(0, size - 22))
        tail = _eocd(size - 22 - offset, offset, draw(st.integers(0, 65535)))
        return b"PK\x03\x04", b"", tail, size, "m.pt"
    pad = b"\x42\x00" * draw(st.integers(0, 3 << 20))
    return b"\x08\x07", pad + draw(st.binary(max_size=64)), b"", 0, "m.onnx"


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(hostile_file, claiming_file()))
def test_detect_on_random_bytes_raises_only_format_errors_and_reads_at_most_its_bound(
    scratch: Path, case: tuple[bytes, bytes, bytes, int, str]
) -> None:
    prefix, body, tail, extend, name = case
    path = scratch / name
    with path.open("wb") as f:
        f.write(prefix + body)
        if extend > f.tell() + len(tail):
            f.truncate(extend - len(tail))
            f.seek(0, os.SEEK_END)
        f.write(tail)
    _, read = _detect_counted(path)
    assert read <= formats.FILE_READ_LIMIT
    path.unlink()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PREFIXES), st.binary(max_size=512)), max_size=6))
def test_detect_on_a_directory_of_random_files_reads_at_most_its_bound(
    scratch: Path, files: list[tuple[bytes, bytes]]
) -> None:
    d = Path(tempfile.mkdtemp(dir=scratch))
    for i, (prefix, body) in enumerate(files):
        (d / f"w{i}.bin").write_bytes(prefix + body)
    _, read = _detect_counted(d)
    assert read <= formats.DIR_READ_LIMIT


def test_padding_after_onnx_magic_stops_at_the_bound(tmp_path: Path) -> None:
    """ONNX's first field, then 4 MiB of empty fields: a walk that read a buffer per field
    would read gigabytes; this one stops at its bound and says so."""
    p = tmp_path / "padded.onnx"
    p.write_bytes(b"\x08\x07" + b"\x42\x00" * (2 << 20) + b"\x3a\x00")
    error, read = _detect_counted(p)
    assert isinstance(error, ReadLimit), error
    assert read <= formats.ONNX_READ_BYTES + formats.HEAD_BYTES


def test_a_central_directory_that_claims_the_whole_file_is_not_read(tmp_path: Path) -> None:
    """Zip magic, 40 MiB of holes, and an end record whose central directory spans them all."""
    p = tmp_path / "claims.pt"
    size = 40 << 20
    with p.open("wb") as f:
        f.write(b"PK\x03\x04")
        f.truncate(size - 22)
        f.seek(size - 22)
        f.write(_eocd(size - 22, 0, 1))
    error, read = _detect_counted(p)
    assert isinstance(error, ReadLimit), error
    assert read <= formats.HEAD_BYTES + formats.ZIP_TAIL_BYTES + formats.ZIP64_RECORDS


def test_a_fifo_is_never_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "weights.bin"
    os.mkfifo(fifo)
    with pytest.raises(FormatError, match="FIFO"):
        detect(fifo)  # opening it for reading would block for ever
    (tmp_path / "real.pkl").write_bytes(b"\x80\x04N.")
    assert detect(tmp_path).path == tmp_path / "real.pkl"
