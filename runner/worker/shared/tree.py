"""A model's directory tree, walked the same way by the host and the worker.

The walk is iterative (no recursion limit to reach), never follows a symlink, never opens a
file, and stops at a depth and an entry count; what it did not walk, and what nobody should open
(FIFOs, sockets, devices) or follow (symlink loops), is listed in the result, never raised.
Standard library only: the worker imports it too.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

MAX_DEPTH = 64  # directory levels below the model's root
MAX_ENTRIES = 50_000  # entries listed in all
SPARSE_HOLE_BYTES = 1 << 30  # a file with more holes than this is sparse
_SHOWN = 200  # characters of a path kept in evidence


class Kind(StrEnum):
    FILE = "regular file"
    DIR = "directory"
    SYMLINK = "symlink"
    FIFO = "FIFO"
    SOCKET = "socket"
    CHAR_DEVICE = "character device"
    BLOCK_DEVICE = "block device"
    OTHER = "special file"


SPECIAL = frozenset({Kind.FIFO, Kind.SOCKET, Kind.CHAR_DEVICE, Kind.BLOCK_DEVICE, Kind.OTHER})


def kind_of(mode: int) -> Kind:
    if stat.S_ISREG(mode):
        return Kind.FILE
    if stat.S_ISDIR(mode):
        return Kind.DIR
    if stat.S_ISLNK(mode):
        return Kind.SYMLINK
    if stat.S_ISFIFO(mode):
        return Kind.FIFO
    if stat.S_ISSOCK(mode):
        return Kind.SOCKET
    if stat.S_ISCHR(mode):
        return Kind.CHAR_DEVICE
    if stat.S_ISBLK(mode):
        return Kind.BLOCK_DEVICE
    return Kind.OTHER


def shown(text: str) -> str:
    """A name as text that always encodes, cut to a length fit for evidence."""
    s = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return s if len(s) <= _SHOWN else s[: _SHOWN - 1] + "…"


@dataclass(frozen=True)
class Entry:
    path: Path
    rel: str  # relative to the root, '/'-separated; a file root: its own name
    kind: Kind
    size: int
    allocated: int  # bytes on disk (st_blocks * 512)
    mode: int

    @property
    def holes(self) -> int:
        """Bytes of the file that are not on disk (a sparse file's holes)."""
        return max(0, self.size - self.allocated) if self.kind is Kind.FILE else 0

    @property
    def sparse(self) -> bool:
        """More than SPARSE_HOLE_BYTES of holes, and less than half of the file on disk."""
        return self.holes > SPARSE_HOLE_BYTES and self.allocated < self.size // 2


@dataclass
class Tree:
    root: Path
    entries: list[Entry] = field(default_factory=list)  # every entry below root, or the file
    too_deep: list[str] = field(default_factory=list)  # directories at MAX_DEPTH, not entered
    unlisted: list[tuple[str, str]] = field(default_factory=list)  # (directory, why)
    truncated: bool = False  # the walk stopped at MAX_ENTRIES
    loops: list[tuple[str, str]] = field(default_factory=list)  # (symlink, its target)
    max_depth: int = MAX_DEPTH
    max_entries: int = MAX_ENTRIES

    def of(self, *kinds: Kind) -> list[Entry]:
        return [e for e in self.entries if e.kind in kinds]

    @property
    def files(self) -> list[Entry]:
        return self.of(Kind.FILE)

    @property
    def special(self) -> list[Entry]:
        return [e for e in self.entries if e.kind in SPECIAL]

    @property
    def sparse(self) -> list[Entry]:
        return [e for e in self.files if e.sparse]

    @property
    def complete(self) -> bool:
        return not (self.too_deep or self.unlisted or self.truncated)


def _entry(path: Path, rel: str, st: os.stat_result) -> Entry:
    blocks = getattr(st, "st_blocks", None)
    allocated = blocks * 512 if blocks is not None else st.st_size
    return Entry(path, rel, kind_of(st.st_mode), st.st_size, allocated, st.st_mode)


def scan(root: Path, max_depth: int = MAX_DEPTH, max_entries: int = MAX_ENTRIES) -> Tree:
    """The tree under `root` (followed if it is itself a symlink: the caller named it). A root
    that is not a directory is a tree of one entry. OSError only when `root` cannot be stat'ed."""
    st = os.stat(root)
    tree = Tree(root, max_depth=max_depth, max_entries=max_entries)
    if not stat.S_ISDIR(st.st_mode):
        tree.entries.append(_entry(root, root.name, st))
        return tree
    real_root = os.path.realpath(root)
    stack: list[tuple[Path, str, int]] = [(root, "", 0)]
    while stack:
        directory, rel, depth = stack.pop()
        subdirs = _list(tree, directory, rel, max_entries, real_root)
        if depth + 1 > max_depth:
            tree.too_deep += [e.rel for e in subdirs]
            continue
        stack += [(e.path, e.rel, depth + 1) for e in reversed(subdirs)]
    return tree


def _list(tree: Tree, directory: Path, rel: str, max_entries: int, real_root: str) -> list[Entry]:
    """Add one directory's entries (sorted by name) to the tree; return its subdirectories."""
    try:
        with os.scandir(directory) as it:
            names: list[os.DirEntry[str]] = []
            for d in it:
                if len(tree.entries) + len(names) >= max_entries:
                    tree.truncated = True
                    break
                names.append(d)
    except OSError as e:
        tree.unlisted.append((rel or ".", e.strerror or type(e).__name__))
        return []
    subdirs = []
    for d in sorted(names, key=lambda d: d.name):
        child_rel = f"{rel}/{d.name}" if rel else d.name
        try:
            st = d.stat(follow_symlinks=False)
        except OSError as e:  # gone since it was listed
            tree.unlisted.append((child_rel, e.strerror or type(e).__name__))
            continue
        entry = _entry(Path(d.path), child_rel, st)
        tree.entries.append(entry)
        if entry.kind is Kind.DIR:
            subdirs.append(entry)
        elif entry.kind is Kind.SYMLINK and _loops(entry.path, real_root):
            tree.loops.append((child_rel, link_target(entry.path)))
    return subdirs


def link_target(link: Path) -> str:
    try:
        return os.readlink(link)
    except OSError:
        return "?"


def _loops(link: Path, real_root: str) -> bool:
    """A symlink that cannot be resolved for its loop (ELOOP), or that leads back to a
    directory above it inside the model (a walker that follows links would never end)."""
    try:
        os.stat(link)
    except OSError as e:
        return e.errno == errno.ELOOP
    target = os.path.realpath(link)
    parent = os.path.realpath(link.parent)
    if not os.path.isdir(target):
        return False
    inside = target == real_root or target.startswith(real_root.rstrip("/") + "/")
    return inside and (parent == target or parent.startswith(target.rstrip("/") + "/"))


def problems(tree: Tree) -> dict[str, list[str]]:
    """What the walk found that no reader should meet, as evidence lines by kind: 'special',
    'loop', 'limit' and 'sparse'. Each list is cut to 10 lines and says how many there were."""
    out: dict[str, list[str]] = {}
    special = [f"{shown(e.rel)}: a {e.kind} (opening it could block or act)" for e in tree.special]
    loops = [f"{shown(r)}: a symlink loop (to {shown(t)!r})" for r, t in tree.loops]
    limit = _limit_lines(tree)
    sparse = [
        f"{shown(e.rel)}: {e.size} bytes long, {e.allocated} on disk ({e.holes} bytes of holes)"
        for e in tree.sparse
    ]
    for key, lines in (("special", special), ("loop", loops), ("limit", limit), ("sparse", sparse)):
        if lines:
            extra = [f"... and {len(lines) - 9} more"] if len(lines) > 10 else []
            out[key] = (lines[:9] + extra) if extra else lines
    return out


def _limit_lines(tree: Tree) -> list[str]:
    lines = []
    if tree.too_deep:
        n = len(tree.too_deep)
        lines.append(
            f"{n} director{'y' if n == 1 else 'ies'} nested deeper than {tree.max_depth} levels "
            f"not walked (first: {shown(tree.too_deep[0])})"
        )
    if tree.truncated:
        lines.append(f"the walk stopped at {tree.max_entries} entries; the rest was not examined")
    lines += [f"{shown(r)}: could not be listed ({why})" for r, why in tree.unlisted]
    return lines
