"""Hostile models aimed at the host's own work (issue class 6): the walks, opens, detection,
hashing, staging and static read the host does before and around a sandbox.

Each builder is (directory, marker) -> model path, harmless outside the sandbox: the only
payload is a shell that writes the marker (under /tmp), and it runs only if the model is
loaded. Every size is bounded; the large files are sparse (holes cost no disk).

The harness runs a model in a real sandbox and checks from the host: no marker, the host's
files unchanged (stat'ed, never opened when they are not regular files), the container, its
session directory and its mounts gone, and the host's disk not filled.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from runner.controller import sessions
from tests.fixtures import hostile

GIB = 1 << 30
DEEP = 5000


@dataclass(frozen=True)
class Case:
    name: str
    technique: str
    build: Callable[[Path, str], Path]
    expect: frozenset[str]
    needs_copy: bool = False  # not world-readable: the host makes a private copy
    patch: dict[str, float] = field(default_factory=dict)  # runner.static.preflight constants


def _model_dir(d: Path, marker: str, name: str = "repo") -> Path:
    """A model directory: a config, and weights whose loading writes the marker."""
    m = d / name
    m.mkdir()
    (m / "config.json").write_text("{}")
    hostile.write(m / "weights.pkl", hostile.shell_marker(marker))
    return m


# --- special files: opening a FIFO blocks for ever, a socket cannot be read ------------------


def fifo_as_shard(d: Path, marker: str) -> Path:
    # A FIFO where a second weights shard would be: a reader that opens it never returns.
    m = _model_dir(d, marker)
    os.mkfifo(m / "pytorch_model-00002.bin")
    return m


def fifo_config_and_socket(d: Path, marker: str) -> Path:
    # A FIFO named like a config file in a subdirectory, and a Unix socket file beside it.
    m = _model_dir(d, marker)
    (m / "tokenizer").mkdir()
    os.mkfifo(m / "tokenizer" / "tokenizer_config.json")
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(m / "model.sock"))
    finally:
        s.close()  # the socket file stays, with nobody behind it
    return m


# --- symlink loops -----------------------------------------------------------------------------


def self_loop(d: Path, marker: str) -> Path:
    # weights.bin -> weights.bin: resolving it fails with ELOOP (pathlib raises RuntimeError).
    m = _model_dir(d, marker)
    os.symlink("weights.bin", m / "weights.bin")
    os.symlink("b.bin", m / "a.bin")
    os.symlink("a.bin", m / "b.bin")
    return m


def directory_cycle(d: Path, marker: str) -> Path:
    # sub/back -> ..: a walker that follows links never ends (and rglob would, with followlinks).
    m = _model_dir(d, marker)
    (m / "sub").mkdir()
    os.symlink("..", m / "sub" / "back")
    os.symlink(".", m / "here")
    return m


# --- trees past the walk's bounds ----------------------------------------------------------------


def nested_5000(d: Path, marker: str) -> Path:
    # 5000 nested directories (made through directory descriptors: the path is longer than
    # PATH_MAX), with the shell payload at the bottom. Recursive walkers hit Python's limit.
    m = _model_dir(d, marker)
    fd = os.open(m, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(DEEP):
            os.mkdir("x", dir_fd=fd)
            nfd = os.open("x", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        wfd = os.open("deep.pkl", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(wfd, hostile.shell_marker(marker))
        os.close(wfd)
    finally:
        os.close(fd)
    return m


def long_names(d: Path, marker: str) -> Path:
    # 40 levels of 250-character names: the paths outgrow PATH_MAX long before the depth bound.
    m = _model_dir(d, marker)
    fd = os.open(m, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(40):
            name = f"{i:03d}" + "n" * 247
            os.mkdir(name, dir_fd=fd)
            nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
    finally:
        os.close(fd)
    return m


# --- sparse files that need a private copy ------------------------------------------------------


def sparse_50g(d: Path, marker: str) -> Path:
    # A 50 GB file of holes after a small pickle, 0600: the sandbox's uid cannot read it, so
    # the host copies it. A dense copy would write 50 GB; hashing it whole would read 50 GB.
    p = d / "huge.pkl"
    with p.open("wb") as f:
        f.write(hostile.shell_marker(marker))
        f.truncate(50 * 10**9)
    p.chmod(0o600)
    return p


def sparse_shard_in_private_dir(d: Path, marker: str) -> Path:
    # A 0700 model directory whose second shard is 20 GB of holes with data at both ends.
    m = _model_dir(d, marker)
    shard = m / "pytorch_model-00002.bin"
    with shard.open("wb") as f:
        f.write(b"\x80\x04N.")
        f.seek(20 * 10**9)
        f.write(b"tail")
    shard.chmod(0o600)
    m.chmod(0o700)
    return m


# --- detection's read bound ----------------------------------------------------------------------


def onnx_padding(d: Path, marker: str) -> Path:
    # ONNX's first field, then 6 MiB of empty doc_string fields before the graph: the old walk
    # read a 64 KiB buffer for every two-byte field (hundreds of GB from the page cache).
    p = d / "padded.onnx"
    p.write_bytes(b"\x08\x07" + b"\x42\x00" * (3 << 20) + b"\x3a\x00")
    return p


def zip_directory_claims_everything(d: Path, marker: str) -> Path:
    # Zip magic, 64 MiB of holes, and an end record whose central directory spans them all.
    p = d / "claims.pt"
    size = 64 << 20
    with p.open("wb") as f:
        f.write(b"PK\x03\x04")
        f.truncate(size - 22)
        f.seek(size - 22)
        f.write(b"PK\x05\x06" + (0).to_bytes(4, "little") + (1).to_bytes(2, "little") * 2)
        f.write((size - 22).to_bytes(4, "little") + (0).to_bytes(4, "little") + b"\0\0")
    return p


# --- a static read that finishes after its bound -------------------------------------------------


def opcode_flood(d: Path, marker: str) -> Path:
    # Four million EMPTY_TUPLE/POP pairs before the payload: seconds of work for the walker.
    p = d / "flood.pkl"
    body = hostile.shell_marker(marker)
    p.write_bytes(body[:2] + b")0" * 4_000_000 + body[2:])
    return p


def slow_crc(d: Path, marker: str) -> Path:
    # A torch-like zip whose stored member is 1.5 GB of holes: checking its CRC reads them all.
    p = d / "slow.pt"
    n = 1_500_000_000
    name = b"archive/data/0"
    local = b"PK\x03\x04" + bytes(10) + (1234).to_bytes(4, "little")
    local += (n).to_bytes(4, "little") * 2 + len(name).to_bytes(2, "little") + bytes(2)
    with p.open("wb") as f:
        f.write(local + name)
        f.seek(len(local) + len(name) + n)
        cd_at = f.tell()
        central = b"PK\x01\x02" + bytes(12) + (1234).to_bytes(4, "little")
        central += (n).to_bytes(4, "little") * 2 + len(name).to_bytes(2, "little") + bytes(12)
        central += (0).to_bytes(4, "little")
        f.write(central + name)
        size = len(central) + len(name)
        f.write(b"PK\x05\x06" + bytes(4) + (1).to_bytes(2, "little") * 2)
        f.write(size.to_bytes(4, "little") + cd_at.to_bytes(4, "little") + b"\0\0")
    return p


# --- the harness ---------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, str]:
    """What the host's files are, without opening any that is not a small regular file and
    without recursion (a 5000-deep tree is followed through directory descriptors)."""
    out: dict[str, str] = {}
    stack = [(os.open(root, os.O_RDONLY | os.O_DIRECTORY), str(root))]
    while stack:
        fd, where = stack.pop()
        try:
            for name in sorted(os.listdir(fd)):
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                key = f"{where}/{name}"
                if stat.S_ISDIR(st.st_mode):
                    stack.append((os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), key))
                    out[key] = f"dir {st.st_mode:o}"
                elif stat.S_ISREG(st.st_mode) and st.st_size <= 1 << 20:
                    with os.fdopen(os.open(name, os.O_RDONLY, dir_fd=fd), "rb") as f:
                        out[key] = hashlib.sha256(f.read()).hexdigest()
                elif stat.S_ISLNK(st.st_mode):
                    out[key] = "link:" + os.readlink(name, dir_fd=fd)
                else:
                    out[key] = f"{st.st_mode:o} {st.st_size} {st.st_mtime_ns}"
        finally:
            os.close(fd)
    return out


def remove_deep(root: Path) -> None:
    """Remove a tree that may be thousands of levels deep (shutil.rmtree recurses; rm walks
    it with descriptors)."""
    subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=False, timeout=120)


def containers(session: str) -> list[str]:
    return subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=airlock.session={session}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


def allocated(path: Path) -> int:
    """Bytes on disk under `path` (st_blocks), never following a link."""
    if not path.is_dir() or path.is_symlink():
        return os.lstat(path).st_blocks * 512
    return sum(
        os.lstat(Path(top, n)).st_blocks * 512 for top, _d, files in os.walk(path) for n in files
    )


def session_leftovers(session: str) -> list[str]:
    root = sessions.tmp_base() / f"{sessions.DIR_PREFIX}{session}"
    mounts = Path("/proc/mounts").read_text()
    return ([str(root)] if root.exists() else []) + [
        line for line in mounts.splitlines() if session in line
    ]
