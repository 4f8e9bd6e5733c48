"""The Hugging Face hub cache, read on the host: where downloaded repositories live, which
snapshots they hold, and a repo id resolved from the local cache only.

The layout is `ROOT/models--ORG--NAME/{blobs/, refs/BRANCH, snapshots/REV/...}`: a snapshot's
files are symlinks into `../../blobs/`. Everything in it is hostile input. Nothing here goes to
the network, imports a Hugging Face library or reads a weight: names are validated, refs files
are read bounded, listings are capped, and no symlink is followed out of the cache while walking.

A snapshot is made a plain directory for the sandbox by runner.hf.snapshot.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import UsageError
from runner.report import HfInfo
from runner.static.manifest import open_regular, shown
from runner.worker.shared import tree

PREFIX = "models--"
MAX_ID_CHARS = 200
MAX_REPOS = 4096  # repository folders listed per cache root
MAX_SNAPSHOTS = 64  # snapshots listed per repository
MAX_LISTED = 20_000  # directory entries looked at per listing
MAX_REF_BYTES = 256

_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHORT = re.compile(r"^[0-9a-f]{7,40}$")
_REVISION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$")
_BRANCH = re.compile(
    r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}(?:/[A-Za-z0-9_][A-Za-z0-9._-]{0,99}){0,3}$"
)


@dataclass(frozen=True)
class CachedSnapshot:
    repo_id: str  # ORG/NAME, or NAME for a repository without an owner (models--gpt2)
    revision: str  # the snapshot folder's name: a commit hash
    path: Path  # .../models--ORG--NAME/snapshots/REV
    repo_dir: Path  # .../models--ORG--NAME

    @property
    def label(self) -> str:
        return f"{self.repo_id}@{self.revision[:12]}"


@dataclass
class Listing:
    """The snapshots of a cache root (or of one repository folder), and what was passed over."""

    snapshots: list[CachedSnapshot] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)


# --- names -------------------------------------------------------------------------------------


def _valid_name(part: str) -> bool:
    return bool(_NAME.fullmatch(part)) and ".." not in part and "--" not in part


def parse_repo_id(text: str) -> tuple[str, str] | None:
    """("ORG/NAME" or "NAME", revision or "") from "ORG/NAME[@REV]"; None when it is not one.
    Never raises."""
    if not isinstance(text, str) or not text or len(text) > MAX_ID_CHARS:
        return None
    repo, sep, rev = text.partition("@")
    if sep and not _BRANCH.fullmatch(rev):
        return None
    parts = repo.split("/")
    if len(parts) > 2 or not all(_valid_name(p) for p in parts):
        return None
    return repo, rev


def folder_name(repo_id: str) -> str:
    return PREFIX + repo_id.replace("/", "--")


def repo_id_of(folder: str) -> str | None:
    """The repo id a cache folder's name (models--ORG--NAME) stands for; None if none."""
    if not folder.startswith(PREFIX):
        return None
    parts = folder[len(PREFIX) :].split("--")
    if not 1 <= len(parts) <= 2 or not all(_valid_name(p) for p in parts):
        return None
    return "/".join(parts)


# --- where caches are ----------------------------------------------------------------------------


def candidate_roots() -> list[Path]:
    """Where huggingface_hub keeps its cache, in its order of precedence (existing or not)."""
    env = os.environ
    found: list[Path] = []
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(var):
            found.append(Path(env[var]).expanduser())
    if env.get("HF_HOME"):
        found.append(Path(env["HF_HOME"]).expanduser() / "hub")
    if env.get("XDG_CACHE_HOME"):
        found.append(Path(env["XDG_CACHE_HOME"]).expanduser() / "huggingface" / "hub")
    found.append(Path("~/.cache/huggingface/hub").expanduser())
    out: list[Path] = []
    for p in found:
        if p not in out:
            out.append(p)
    return out


def cache_roots() -> list[Path]:
    """The cache roots that exist: $HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub."""
    out: list[Path] = []
    seen: set[str] = set()
    for p in candidate_roots():
        real = os.path.realpath(p)
        if os.path.isdir(p) and real not in seen:
            seen.add(real)
            out.append(p)
    return out


def _dirs(path: Path, limit: int) -> tuple[list[os.DirEntry[str]], bool]:
    """The real subdirectories of `path` (symlinks not followed) in name order, from at most
    MAX_LISTED entries and `limit` directories; and whether the listing was cut short."""
    out: list[os.DirEntry[str]] = []
    cut = False
    try:
        with os.scandir(path) as it:
            for n, e in enumerate(it):
                if n >= MAX_LISTED or len(out) >= limit:
                    cut = True
                    break
                if e.is_dir(follow_symlinks=False):
                    out.append(e)
    except OSError:
        return [], False
    return sorted(out, key=lambda e: e.name), cut


def is_cache_root(path: Path) -> bool:
    """A directory holding models--* folders."""
    if not os.path.isdir(path):
        return False
    found, _ = _dirs(path, MAX_REPOS)
    return any(repo_id_of(e.name) is not None for e in found)


def is_repo_folder(path: Path) -> bool:
    return repo_id_of(path.name) is not None and (path / "snapshots").is_dir()


# --- snapshots -----------------------------------------------------------------------------------


def inside(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip("/") + "/")


def snapshot_of(path: Path) -> CachedSnapshot | None:
    """The snapshot `path` is (or is inside): `.../models--ORG--NAME/snapshots/REV[/...]`, where
    REV is a real directory (no symlink) inside that repository's folder. None otherwise."""
    parts = Path(os.path.abspath(path)).parts
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] != "snapshots" or not parts[i - 1].startswith(PREFIX):
            continue
        repo_id, rev = repo_id_of(parts[i - 1]), parts[i + 1]
        if repo_id is None or not _REVISION.fullmatch(rev):
            return None
        repo_dir = Path(*parts[:i])
        snap = repo_dir / "snapshots" / rev
        try:
            if not stat.S_ISDIR(os.lstat(snap).st_mode):
                return None
        except OSError:
            return None
        real_repo = os.path.realpath(repo_dir)
        if os.path.realpath(snap) != os.path.join(real_repo, "snapshots", rev):
            return None  # a snapshots/ that is a symlink somewhere else
        return CachedSnapshot(repo_id, rev, snap, repo_dir)
    return None


def _repo_snapshots(repo_dir: Path, repo_id: str, listing: Listing) -> None:
    found, cut = _dirs(repo_dir / "snapshots", MAX_SNAPSHOTS)
    for e in found:
        if _REVISION.fullmatch(e.name):
            listing.snapshots.append(CachedSnapshot(repo_id, e.name, Path(e.path), repo_dir))
        else:
            listing.skipped.append((e.path, "not a snapshot name"))
    if cut:
        listing.skipped.append((str(repo_dir / "snapshots"), f"more than {MAX_SNAPSHOTS} listed"))


def scan_cache(root: Path) -> Listing:
    """Every repository of a cache root (or the one repository folder given) at every snapshot,
    sorted by repo id and revision; bounded, and no symlink is followed."""
    listing = Listing()
    repo_id = repo_id_of(root.name)
    if repo_id is not None and (root / "snapshots").is_dir():
        _repo_snapshots(root, repo_id, listing)
        return listing
    found, cut = _dirs(root, MAX_REPOS)
    for e in found:
        rid = repo_id_of(e.name)
        if rid is None:
            why = "not a model repository" if "--" in e.name else "not a repository folder"
            listing.skipped.append((e.path, why))
        else:
            _repo_snapshots(Path(e.path), rid, listing)
    if cut:
        listing.skipped.append((str(root), f"listing stopped at {MAX_REPOS} repositories"))
    listing.snapshots.sort(key=lambda s: (s.repo_id, s.revision))
    return listing


def snapshots(root: Path) -> list[CachedSnapshot]:
    return scan_cache(root).snapshots


def cache_listing(path: Path) -> Listing | None:
    """What a batch evaluates for `path` when it is a Hugging Face cache: a cache root, a
    directory holding one (`$HF_HOME`: its hub/), a repository folder, or a snapshot. None when
    it is none of these."""
    snap = snapshot_of(path)
    if snap is not None and os.path.abspath(path) == os.path.abspath(snap.path):
        return Listing([snap])
    if is_repo_folder(path) or is_cache_root(path):
        return scan_cache(path)
    if is_cache_root(path / "hub") and not os.path.islink(path / "hub"):
        return scan_cache(path / "hub")
    return None


# --- repo ids, from the cache only ---------------------------------------------------------------


def read_ref(path: Path) -> str | None:
    """A refs file's commit hash: a regular file (no symlink), bounded, 40 hex digits. Never
    raises."""
    try:
        fd = open_regular(path, follow=False)
    except OSError:
        return None
    try:
        data = os.read(fd, MAX_REF_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) > MAX_REF_BYTES:
        return None
    text = data.decode("ascii", "replace").strip()
    return text if _COMMIT.fullmatch(text) else None


def _snapshot_at(repo_dir: Path, rev: str) -> Path | None:
    """The snapshot of a branch (refs/BRANCH), a full commit or a unique short one."""
    snaps = repo_dir / "snapshots"
    if _BRANCH.fullmatch(rev) and (commit := read_ref(repo_dir / "refs" / rev)) is not None:
        rev = commit
    if _COMMIT.fullmatch(rev):
        found = [rev] if snapshot_of(snaps / rev) is not None else []
    elif _SHORT.fullmatch(rev):
        entries, _ = _dirs(snaps, MAX_SNAPSHOTS)
        found = [e.name for e in entries if e.name.startswith(rev)]
    else:
        found = []
    return snaps / found[0] if len(found) == 1 and snapshot_of(snaps / found[0]) else None


def _default_snapshot(repo_dir: Path) -> Path | None:
    """refs/main's snapshot, else the only snapshot there is."""
    if (main := _snapshot_at(repo_dir, "main")) is not None:
        return main
    found, _ = _dirs(repo_dir / "snapshots", MAX_SNAPSHOTS)
    return Path(found[0].path) if len(found) == 1 else None


def resolve_repo_id(text: str, *, not_a_path: bool = False) -> Path:
    """The snapshot directory of "ORG/NAME[@REV]" in the local cache. No network, ever: a
    one-line UsageError naming the cache searched when it is not there."""
    parsed = parse_repo_id(text)
    if parsed is None:
        raise UsageError(
            f"{tree.shown(text)!r} is not a Hugging Face repo id",
            "use ORG/NAME or ORG/NAME@REVISION (letters, digits, '.', '_' and '-')",
        )
    repo_id, rev = parsed
    roots = cache_roots()
    for root in roots:
        repo_dir = root / folder_name(repo_id)
        if not repo_dir.is_dir() or repo_dir.is_symlink():
            continue
        snap = _snapshot_at(repo_dir, rev) if rev else _default_snapshot(repo_dir)
        if snap is not None:
            return snap
    where = ", ".join(shown(r) for r in roots) or shown(candidate_roots()[0])
    at = f" at revision {rev}" if rev else ""
    nor = " (and no such file or directory)" if not_a_path else ""
    raise UsageError(
        f"{repo_id}{at} is not in the Hugging Face cache at {where}{nor}",
        f"download it first with `huggingface-cli download {repo_id}` on a machine with "
        "network, or pass a directory",
    )


def locate(path: Path) -> Path:
    """The model a command line names: a path as it is (a repository folder of the cache: its
    refs/main snapshot); a repo id that is no path, from the cache; anything else unchanged."""
    if os.path.lexists(path):
        if is_repo_folder(path) and (snap := _default_snapshot(path)) is not None:
            return snap
        return path
    text = str(path)
    parsed = parse_repo_id(text)
    if parsed is None:
        return path
    if "/" not in parsed[0]:  # a bare name is as likely a mistyped file: only if it is cached
        try:
            return resolve_repo_id(text)
        except UsageError:
            return path
    return resolve_repo_id(text, not_a_path=True)


def with_origin(info: HfInfo | None, snap: CachedSnapshot) -> HfInfo:
    """The repository's block of the report, naming the repo id and revision it came from."""
    return (info or HfInfo()).model_copy(
        update={"repo_id": snap.repo_id, "revision": snap.revision}
    )
