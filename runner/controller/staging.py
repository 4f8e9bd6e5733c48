"""Staging: how a model's files reach the container's read-only /model directory.

A model is bind-mounted as it is when the sandbox's uid can read every file of it. Otherwise
(safetensors writes 0600 files), and when a pre-started sandbox is claimed, the files are put in
the session's own directory: hard links when they are world-readable and on the same filesystem,
private copies otherwise.

A private copy is bounded. The tree is walked with bounds and nothing in it is followed:
symlinks are recreated as symlinks, FIFOs, sockets and devices are never opened nor copied (the
static read's findings name them, AL704), and what lies past the walk's bounds is not copied
(AL706). A sparse file stays sparse: only its runs of data are written, its holes are not. And
the bytes written may not pass what the session directory's filesystem can spare (its free
space less a reserve): past that the copy is removed and the run stops with a usage error
saying how to avoid the copy.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from runner.errors import UsageError
from runner.static.manifest import CHUNK, data_extents, open_regular
from runner.worker.shared import tree

_SAFE_NAME = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
RESERVE_BYTES = 1 << 30  # left free on the staging filesystem, at least
RESERVE_FRACTION = 0.05  # and at least this share of it


def container_name(path: Path) -> str:
    """The model's name inside /model: its own when it is plain, else 'model'."""
    name = path.name if path.name and set(path.name) <= _SAFE_NAME else "model"
    return name if not name.startswith(".") else "model" + name


def _readable_mode(mode: int) -> bool:
    if stat.S_ISLNK(mode):
        return True
    need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
    return (mode & need) == need


def world_readable(p: Path) -> bool:
    return _readable_mode(p.lstat().st_mode)


def _all_readable(path: Path, walked: tree.Tree) -> bool:
    return _readable_mode(os.stat(path).st_mode) and all(
        _readable_mode(e.mode) for e in walked.entries
    )


class CopyBudget:
    """What a private copy may write: the staging filesystem's free space less a reserve."""

    def __init__(self, model: Path, into: Path) -> None:
        st = os.statvfs(into)
        reserve = max(RESERVE_BYTES, int(st.f_blocks * st.f_frsize * RESERVE_FRACTION))
        self.model, self.into = model, into
        self.limit = max(0, st.f_bavail * st.f_frsize - reserve)
        self.used = 0

    def take(self, n: int) -> None:
        self.fits(n)
        self.used += n

    def fits(self, n: int) -> None:
        """Raise the usage error unless `n` more bytes fit."""
        if self.used + n > self.limit:
            raise UsageError(
                f"{self.model.name} is not readable by the sandbox's uid, and a private copy "
                f"needs more than the {self.limit} bytes the disk of {self.into} can spare",
                "make the model world-readable (chmod -R o+rX MODEL) so it is mounted as it "
                "is, without a copy",
            )


def copy_file(src: Path, dst: Path, budget: CopyBudget, follow: bool = False) -> None:
    """A private copy of a regular file: its runs of data only (holes stay holes), each byte
    counted against the budget; `dst` is created, never followed or overwritten."""
    fd_in = open_regular(src, follow)
    try:
        size = os.fstat(fd_in).st_size
        fd_out = os.open(
            dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            extents = data_extents(fd_in, size)
            for start, end in extents if extents is not None else [(0, size)]:
                _copy_range(fd_in, fd_out, start, end, budget)
            os.ftruncate(fd_out, size)
            os.fchmod(fd_out, 0o644)
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)


def _copy_range(fd_in: int, fd_out: int, start: int, end: int, budget: CopyBudget) -> None:
    pos = start
    while pos < end:
        n = min(CHUNK, end - pos)
        budget.take(n)
        chunk = os.pread(fd_in, n, pos)
        if not chunk:
            return  # the file is shorter than it was: the truncate gives it its size
        view = memoryview(chunk)
        while view:
            written = os.pwrite(fd_out, view, pos)
            view, pos = view[written:], pos + written


def stage(path: Path, into: Path) -> Path:
    """Put the model into `into`: hard links when possible (same filesystem, world-readable);
    bounded copies otherwise. Returns the staged path."""
    target = into / container_name(path)
    walked = tree.scan(path)
    linkable = _all_readable(path, walked) and os.stat(path).st_dev == os.stat(into).st_dev
    budget = CopyBudget(path, into)
    if not linkable:  # fail fast on what the files hold on disk; the copy counts its writes
        budget.fits(sum(min(e.size, e.allocated) for e in walked.files))
    try:
        if not stat.S_ISDIR(os.stat(path).st_mode):
            if linkable:
                os.link(path, target)
            else:
                copy_file(path, target, budget, follow=True)
        else:
            _stage_tree(walked, target, linkable, budget)
    except BaseException:
        _remove(target)
        raise
    return target


def _stage_tree(walked: tree.Tree, target: Path, linkable: bool, budget: CopyBudget) -> None:
    """The tree's directories, symlinks (as symlinks) and regular files, in walk order (a
    directory before what it holds); special files are left out."""
    target.mkdir()
    target.chmod(0o755)
    for e in walked.entries:
        dst = target / e.rel
        if e.kind is tree.Kind.DIR:
            dst.mkdir()
            dst.chmod(0o755)
        elif e.kind is tree.Kind.SYMLINK:
            os.symlink(os.readlink(e.path), dst)
        elif e.kind is tree.Kind.FILE and linkable:
            os.link(e.path, dst, follow_symlinks=False)
        elif e.kind is tree.Kind.FILE:
            copy_file(e.path, dst, budget)


def _remove(target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target, ignore_errors=True)
    elif target.exists() or target.is_symlink():
        target.unlink()


def readable_model(path: Path, session_root: Path, notes: list[str]) -> Path:
    """The path to mount: the model itself when the sandbox's uid can read all of it, else a
    private read-only copy in the session's directory (and a note saying so)."""
    walked = tree.scan(path)
    if _all_readable(path, walked):
        return path
    into = session_root / "model"
    into.mkdir(mode=0o755)
    staged = stage(path, into)  # not world-readable: always a copy
    notes.append(
        f"{path.name} is not readable by the sandbox's uid; a private "
        "read-only copy was mounted (make it world-readable to avoid this)"
    )
    left_out = len(walked.special) + len(walked.too_deep)
    if left_out:
        notes.append(
            f"the copy leaves out {len(walked.special)} special file(s) and "
            f"{len(walked.too_deep)} directorie(s) past the walk's depth bound"
        )
    if walked.sparse:
        notes.append(f"{len(walked.sparse)} sparse file(s) were copied as sparse files")
    return staged
