"""A cache snapshot as a plain directory the sandbox can mount, and the one a Sandbox owns.

A snapshot's files are symlinks into its repository's `blobs/`. Each symlink whose every hop
stays inside that repository's folder (no hop leaves it, even to come back; no directory on
the way is a link) and which ends at a regular file in its blobs/ (or in the snapshot itself)
becomes a hard link to that file: the inode checked is the inode linked. Across filesystems it is
a bounded copy (runner.controller.staging). Any other symlink (escaping, dangling, a loop, to a
directory, a chain longer than MAX_HOPS) is kept as a symlink, so the static checks flag it as
they flag any model directory's; a target outside the materialised directory is written as the
absolute path it named, so it reads as the escape it is. Special files are left out: a snapshot
whose walk finds any (or loops, or reaches the walk's bounds) is not materialised at all but
read as it is, where the walk's own findings name them.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

import psutil

from runner.controller import sessions, staging
from runner.errors import UsageError
from runner.hf.cache import CachedSnapshot, inside, snapshot_of, with_origin
from runner.report import ModelInfo
from runner.static.manifest import shown
from runner.worker.shared import tree

WORK_PREFIX = f"{sessions.DIR_PREFIX}hf-"  # <tmp>/airlock-hf-<session>: reaped by `airlock gc`
BASE_SUFFIX = "-base"  # <tmp>/airlock-hf-<session>-base: an adapter's base model
MAX_HOPS = 8  # symlinks followed in one chain


@dataclass(frozen=True)
class _Bounds:
    root: str  # the directory materialised (a snapshot, or a directory in one), real
    repo: str  # its repository's folder, real
    blobs: str  # the repository's blobs/, real


def _hop(current: str, b: _Bounds) -> str | None:
    """Where one symlink leads when its directory part holds no symlink and it stays inside the
    repository's folder; None otherwise."""
    try:
        target = os.readlink(current)
    except OSError:
        return None
    head, name = os.path.split(target)
    if name in ("", ".", ".."):
        return None
    base = os.path.dirname(current)
    lexical = os.path.normpath(os.path.join(base, head))
    if os.path.realpath(lexical) != lexical or not inside(lexical, b.repo):
        return None  # a directory on the way is a link, or it leaves (even to come back)
    return os.path.join(lexical, name)


def resolve_link(link: str, b: _Bounds) -> tuple[str, os.stat_result] | None:
    """The regular file a snapshot's symlink leads to, with its stat, when every hop stays in
    the repository's folder and it ends in its blobs/ or in the snapshot; None otherwise."""
    current = link
    for _ in range(MAX_HOPS):
        nxt = _hop(current, b)
        if nxt is None:
            return None
        try:
            st = os.lstat(nxt)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            current = nxt
            continue
        if not stat.S_ISREG(st.st_mode):
            return None
        ok = os.path.dirname(nxt) == b.blobs or inside(nxt, b.root)
        return (nxt, st) if ok else None
    return None


def followed(path: Path) -> Path:
    """A file of a cache snapshot as read in place: the regular file in its repository's
    blobs/ its symlink leads to (as resolve_link follows it); any other path unchanged, so a
    reader that does not follow symlinks refuses what resolve_link would not follow."""
    snap = snapshot_of(path.parent)
    if snap is None or not os.path.islink(path):
        return path
    real_repo = os.path.realpath(snap.repo_dir)
    root = os.path.realpath(snap.path)
    b = _Bounds(root, real_repo, os.path.join(real_repo, "blobs"))
    link = os.path.join(os.path.realpath(path.parent), path.name)
    resolved = resolve_link(link, b)
    return Path(resolved[0]) if resolved is not None else path


def _kept_target(link: str, b: _Bounds) -> str:
    """A symlink that is not followed, as it will be written: relative when it names something
    inside the materialised directory (its meaning is kept), else the absolute path it named."""
    try:
        target = os.readlink(link)
    except OSError:
        return "?"
    named = os.path.normpath(os.path.join(os.path.dirname(link), target))
    if inside(named, b.root):
        return os.path.relpath(named, os.path.dirname(link))
    return named


class _Budget(staging.CopyBudget):
    def fits(self, n: int) -> None:
        if self.used + n > self.limit:
            raise UsageError(
                f"{self.model.name}: the cache is on another filesystem than {self.into}, and "
                f"copying its files needs more than the {self.limit} bytes that disk can spare",
                "set TMPDIR to a directory on the cache's filesystem, so its files are "
                "hard-linked, not copied",
            )


def _link_or_copy(src: str, st: os.stat_result, dst: Path, budget: _Budget) -> None:
    """A hard link to the file validated as `st`, else (another filesystem, no permission)
    a bounded copy of it."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        staging.copy_file(Path(src), dst, budget, follow=False)
        return
    now = os.lstat(dst)
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        dst.unlink()
        raise UsageError(
            f"{shown(src)} changed while the Hugging Face cache was read", "run it again"
        )


def materialise(snapshot: Path, into: Path) -> Path:
    """A plain directory of a cache snapshot (or of a directory in one) under `into`: symlinks
    into the repository's blobs/ become hard links (bounded copies across filesystems), other
    symlinks stay symlinks, directories are kept, special files are left out (the walk of the
    snapshot names them). Bounded as the walk is. Returns the directory made."""
    snap = snapshot_of(snapshot)
    if snap is None or not snapshot.is_dir():
        raise UsageError(f"{shown(snapshot)}: not a Hugging Face cache snapshot")
    real_repo = os.path.realpath(snap.repo_dir)
    b = _Bounds(os.path.realpath(snapshot), real_repo, os.path.join(real_repo, "blobs"))
    walked = tree.scan(snapshot)
    target = into / staging.container_name(Path(snap.repo_id.rpartition("/")[2]))
    target.mkdir(mode=0o755)
    budget = _Budget(snapshot, into)
    for e in walked.entries:  # a directory comes before what it holds
        dst = target / e.rel
        src = os.path.join(b.root, e.rel)
        if e.kind is tree.Kind.DIR:
            dst.mkdir(mode=0o755)
        elif e.kind is tree.Kind.FILE:
            _link_or_copy(src, os.lstat(src), dst, budget)
        elif e.kind is tree.Kind.SYMLINK:
            resolved = resolve_link(src, b)
            if resolved is not None:
                _link_or_copy(resolved[0], resolved[1], dst, budget)
            else:
                os.symlink(_kept_target(src, b), dst)
    return target


# --- a snapshot for one sandbox ------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """A model path that is in a cache snapshot: what the caller named, the snapshot, and the
    path to admit and mount (the materialised directory, or the path itself)."""

    given: Path
    snapshot: CachedSnapshot
    path: Path

    def shown(self, model: ModelInfo) -> ModelInfo:
        """The report's model block with the caller's path and the repository it came from."""
        return model.model_copy(
            update={
                "path": shown(os.path.abspath(self.given)),
                "huggingface": with_origin(model.huggingface, self.snapshot),
            }
        )


def work_dir(session: str) -> Path:
    """<tmp>/airlock-hf-<session>, with the owner file `airlock gc` reaps by."""
    root = sessions.tmp_base() / f"{WORK_PREFIX}{session}"
    root.mkdir(mode=0o711)
    me = psutil.Process()
    owner = {"pid": me.pid, "create_time": me.create_time(), "host": socket.gethostname()}
    (root / "owner.json").write_text(json.dumps(owner))
    return root


def base_key(session: str) -> str:
    """The name of the work directory of a session's base model (runner.hf.base)."""
    return f"{session}{BASE_SUFFIX}"


def _remove(key: str) -> None:
    root = sessions.tmp_base() / f"{WORK_PREFIX}{key}"
    if os.path.lexists(root):
        sessions.remove_dirs(root)


def remove_work_dir(session: str) -> None:
    """Remove the session's work directories: its model's and its base model's."""
    _remove(session)
    _remove(base_key(session))


def prepare(path: Path, session: str, notes: list[str]) -> Prepared | None:
    """None unless `path` is in a cache snapshot. A snapshot directory is materialised into the
    session's work directory (removed by remove_work_dir, and here on any failure); one whose
    walk finds what no copy should carry (special files, loops, the walk's bounds) is read as
    it is, so the walk's findings name it, and a note says so. A file is followed as named."""
    snap = snapshot_of(path)
    if snap is None:
        return None
    if not path.is_dir():
        return Prepared(path, snap, path)
    problems = {k: v for k, v in tree.problems(tree.scan(path)).items() if k != "sparse"}
    if problems:
        first = next(iter(problems.values()))[0]
        notes.append(f"the cache snapshot was read as it is, not materialised: {first}")
        return Prepared(path, snap, path)
    try:
        made = materialise(path, work_dir(session))
    except BaseException:
        _remove(session)
        raise
    return Prepared(path, snap, made)
