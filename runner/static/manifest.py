"""The manifest: every file of a model with its size and sha256, the root digest over them
(computed the way OpenSSF model signing computes it, so it can be matched with any model
signature), and what a model directory should not hold.

The tree is walked with bounds (runner.worker.shared.tree): symlinks are not followed, only
regular files are opened, and never a FIFO or a device. A sparse file (more than 1 GiB of holes)
is hashed by its data alone, so a 1 TB file of holes costs what it holds on disk; its digest
says so (`sparse`), and the walk's finding (AL707) keeps the verdict from clean.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, Field

from runner.worker.shared import tree

CHUNK = 1 << 20


class FileDigest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    size_bytes: int
    sha256: str
    sparse: bool = Field(
        default=False,
        description="the file has more than 1 GiB of holes: sha256 is over its data extents and "
        "their offsets (the holes were not read), not over its bytes",
    )


def open_regular(f: Path, follow: bool = True) -> int:
    """A descriptor of a regular file, opened without blocking (and, unless `follow`, without
    following a symlink); OSError for anything else, which is never opened."""
    st = os.stat(f) if follow else os.lstat(f)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, f"not a regular file ({tree.kind_of(st.st_mode)})", str(f))
    nofollow = 0 if follow else os.O_NOFOLLOW
    fd = os.open(f, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | nofollow)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(f))
    return fd


def sha256_file(f: Path, follow: bool = True) -> str:
    """sha256 of a regular file's bytes."""
    h = hashlib.sha256()
    fd = open_regular(f, follow)
    with os.fdopen(fd, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def data_extents(fd: int, size: int) -> list[tuple[int, int]] | None:
    """(start, end) of each run of data in the file, holes left out; None when the filesystem
    cannot tell holes from data."""
    out: list[tuple[int, int]] = []
    pos = 0
    try:
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:  # nothing but holes from here on
                    break
                raise
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            if end <= start:
                break
            out.append((start, end))
            pos = end
    except OSError:
        return None
    return out


def _sparse_sha256(f: Path, size: int, follow: bool) -> str:
    """sha256 over a sparse file's size and, for each run of data, its offset, its length and
    its bytes: what the file holds, read without reading its holes."""
    h = hashlib.sha256(b"airlock sparse file v1\0" + size.to_bytes(8, "little"))
    fd = open_regular(f, follow)
    try:
        extents = data_extents(fd, size)
        for start, end in extents if extents is not None else [(0, size)]:
            h.update(start.to_bytes(8, "little") + (end - start).to_bytes(8, "little"))
            pos = start
            while pos < end:
                chunk = os.pread(fd, min(CHUNK, end - pos), pos)
                if not chunk:
                    break
                h.update(chunk)
                pos += len(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def parse_sha256(text: str) -> str | None:
    """A sha256 digest as lower-case hex, from "sha256:HEX" or "HEX"; None if it is not one."""
    value = text.strip().lower().removeprefix("sha256:")
    return value if _HEX64.match(value) else None


def shown(path: Path | str) -> str:
    """A path as text that always encodes: undecodable bytes in a name become escapes."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def file_digests(path: Path) -> list[FileDigest]:
    """Every regular file of the model (symlinks are not followed, special files never
    opened: the walk's findings name them), in name order."""
    walked = tree.scan(path)
    digests = []
    for e in sorted(walked.files, key=lambda e: PurePosixPath(e.rel).parts):
        follow = e.path == path  # the path the caller named; nothing inside is followed
        sparse = e.sparse
        digest = _sparse_sha256(e.path, e.size, follow) if sparse else sha256_file(e.path, follow)
        digests.append(
            FileDigest(path=shown(e.rel), size_bytes=e.size, sha256=digest, sparse=sparse)
        )
    return digests


def root_digest(digests: list[FileDigest]) -> str:
    """The root digest OpenSSF model signing signs: sha256 over the per-file sha256 digests,
    ordered by path components ('a/b' before 'a-c'), for a single file too (so a file's root
    digest is the sha256 of its sha256, not its sha256)."""
    h = hashlib.sha256()
    for d in sorted(digests, key=lambda d: PurePosixPath(d.path).parts):
        h.update(bytes.fromhex(d.sha256))
    return h.hexdigest()


# What any repository holds beside a model (git attributes, licences, read-mes, pictures for
# its card, tokenizer vocabularies): not anomalies when that is all they are. They are still
# read by detection first, so a model file named like one is a model file all the same.
ORDINARY_NAMES = {".gitattributes", ".gitignore", ".gitkeep"}
ORDINARY_STEMS = {
    "LICENSE", "LICENCE", "COPYING", "NOTICE", "README", "AUTHORS", "CONTRIBUTORS",
    "CHANGELOG", "CITATION", "USE_POLICY", "MODEL_CARD",
}  # fmt: skip
ORDINARY_SUFFIXES = {
    ".rst", ".cff", ".csv", ".tsv", ".jsonl", ".vocab", ".bpe", ".codes",
    ".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp",
}  # fmt: skip


def ordinary(rel: str) -> bool:
    """An ordinary repository file by its name (outside .git)."""
    name = PurePosixPath(rel).name
    stem = name.split(".", 1)[0].upper()
    suffix = PurePosixPath(name).suffix.lower()
    return name in ORDINARY_NAMES or stem in ORDINARY_STEMS or suffix in ORDINARY_SUFFIXES


# A TensorFlow SavedModel's own files beside saved_model.pb (its checkpoint and fingerprint)
_SAVEDMODEL_FILES = re.compile(r"variables/variables\.(index|data-\d{5}-of-\d{5})|fingerprint\.pb")


def anomalies(path: Path) -> list[str]:
    """What a model directory should not hold, or should hold only with a reason. Symlinks,
    special files, executables, Python code and git content always; empty and unknown files
    unless they are ordinary repository files (`ordinary`)."""
    from runner.worker.shared.formats import (
        CONFIG_SUFFIXES,
        DIR_READ_LIMIT,
        Budget,
        FormatError,
        ReadLimit,
        detect,
    )

    try:
        walked = tree.scan(path)
    except OSError:
        return []
    if not stat.S_ISDIR(os.stat(path).st_mode):
        return []
    out = []
    budget: Budget | None = Budget(DIR_READ_LIMIT, path.name)  # all the files together
    savedmodel = (path / "saved_model.pb").is_file()
    for e in sorted(walked.entries, key=lambda e: e.rel):
        rel, suffix = shown(e.rel), PurePosixPath(e.rel).suffix
        own = savedmodel and e.kind is tree.Kind.FILE and _SAVEDMODEL_FILES.fullmatch(e.rel)
        if own and not e.mode & 0o111:
            continue
        if ".git" in e.rel.split("/"):
            out.append(f"{rel}: git content")
        elif e.kind is tree.Kind.SYMLINK:
            out.append(f"{rel}: a symlink to {shown(tree.link_target(e.path))[:200]}")
        elif e.kind is tree.Kind.DIR:
            continue
        elif e.kind is not tree.Kind.FILE:
            out.append(f"{rel}: a {e.kind}")
        elif e.size == 0 and not ordinary(e.rel):
            out.append(f"{rel}: an empty file")
        elif e.mode & 0o111:
            out.append(f"{rel}: executable")
        elif suffix == ".py":
            out.append(f"{rel}: Python code")
        elif e.size and suffix.lower() not in CONFIG_SUFFIXES and budget is not None:
            try:
                detect(e.path, budget)
            except ReadLimit as limit:
                if limit.budget is budget:
                    out.append(f"{rel} and what follows: not identified (detection's read bound)")
                    budget = None
                else:
                    out.append(f"{rel}: an unknown file")
            except (FormatError, OSError):
                if not ordinary(e.rel):
                    out.append(f"{rel}: an unknown file")
        if len(out) >= 100:
            break
    return out
