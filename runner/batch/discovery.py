"""Discovery: which files and directories a batch evaluates, and each model's digest.

Paths are model files, directories of models (recognised by content; files that merely claim
to be models by magic bytes or name are kept too, and their result says why they failed), and
text files listing paths.

The walk is iterative and bounded in depth; it never follows a symlink and never opens what is
not a regular file. What a reader must not open (a FIFO, a socket, a device), a symlink loop
and a directory past the depth bound are kept as models too, so their results say what they
are (never a silent skip, never a hang); a list that names itself is read once. Every file
passed over is named with the reason (`Discovered.skipped`).

A Hugging Face cache (a cache root, `$HF_HOME`, a repository folder `models--ORG--NAME`, a
snapshot) is evaluated as each repository at each snapshot (runner.hf.cache): the sandbox makes
each snapshot a plain directory (runner.hf.snapshot), and its blobs are never walked on their
own. A repo id that is no path (ORG/NAME[@REV]) is taken from the local cache.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import UsageError
from runner.hf import cache
from runner.report import file_digests, root_digest
from runner.static.manifest import open_regular
from runner.worker.shared import tree
from runner.worker.shared.formats import (
    CONFIG_SUFFIXES,
    DIR_READ_LIMIT,
    SAVEDMODEL_FILES,
    Budget,
    FormatError,
    ReadLimit,
    detect,
)

CONFIG_NAMES = {
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "preprocessor_config.json",
    "model_index.json",
    *SAVEDMODEL_FILES,  # a TensorFlow SavedModel is its directory
}
MAX_LIST_BYTES = 1 << 20
MAX_LIST_NESTING = 8  # lists that name lists
BATCH_READ_LIMIT = 16 * DIR_READ_LIMIT  # what detecting the batch's files may read in all
MAX_SKIPPED = 10_000  # files passed over that are named, one by one


def _is_model_dir(d: Path) -> bool:
    with os.scandir(d) as it:
        return any(e.name in CONFIG_NAMES for e in it)


# Weights of other formats that a model directory may also hold (a Hugging Face repository
# ships ONNX, GGUF or TFLite exports beside its safetensors, a training checkpoint's pickles):
# the directory is evaluated as the one model its loader builds, so these are named as not
# evaluated (never skipped in silence).
OTHER_WEIGHTS = {
    ".onnx",
    ".gguf",
    ".tflite",
    ".keras",
    ".h5",
    ".hdf5",
    ".msgpack",
    ".joblib",
    ".skops",
    ".npy",
    ".npz",
    ".pkl",
    ".pickle",
    ".pt",
    ".pth",
    ".ckpt",
    ".bin",
    ".pb",
}
# what transformers itself loads from a repository (a SavedModel directory's own files too)
_LOADED_WEIGHTS = ("pytorch_model", "saved_model.pb", "variables/")


def _not_loaded(d: Path) -> list[str]:
    """Files under model directory `d` of another weights format than the one it loads as."""
    if any((d / n).is_file() for n in SAVEDMODEL_FILES):
        return []
    walked = tree.scan(d)
    return [
        e.rel
        for e in walked.files
        if Path(e.rel).suffix.lower() in OTHER_WEIGHTS
        and not any(e.rel.startswith(k) or f"/{k}" in e.rel for k in _LOADED_WEIGHTS)
    ]


MODEL_SUFFIXES = {
    ".onnx",
    ".pt",
    ".pth",
    ".bin",
    ".ckpt",
    ".safetensors",
    ".pkl",
    ".pickle",
    ".joblib",
    ".torchscript",
    ".ptl",
    ".gguf",
    ".keras",
    ".h5",
    ".hdf5",
    ".tflite",
    ".npy",
    ".npz",
    ".skops",
}


def _head(p: Path, n: int) -> bytes:
    """The first bytes of a regular file (OSError for anything else, which is not opened)."""
    with os.fdopen(open_regular(p), "rb") as f:
        return f.read(n)


def _is_model_by_content(p: Path, budget: Budget | None) -> bool:
    """A model by its bytes alone (also a file whose name claims otherwise, say a TFLite file
    named .model or a pickle named .txt). Past the shared `budget`, nothing is read."""
    if budget is not None and budget.left <= 0:
        return False
    try:
        detect(p, budget)
        return True
    except ReadLimit as e:
        if budget is not None and e.budget is budget:
            budget.left = 0  # spent: the files that follow are judged by their claims
        return False
    except (FormatError, OSError):
        return False


def _is_model_file(p: Path, budget: Budget | None = None) -> bool:
    """A model by content, or a file that claims to be one (by magic bytes or name) but is
    damaged: it is evaluated, and its result says why it failed. Past the shared `budget`,
    files are judged by their claims alone (16 bytes read)."""
    if _is_model_by_content(p, budget):
        return True
    try:
        head = _head(p, 16)
    except OSError:
        return False
    return head.startswith((b"PK\x03\x04", b"\x80")) or p.suffix.lower() in MODEL_SUFFIXES


def _read_list(p: Path) -> list[str] | None:
    """The paths a text file lists, one a line; None when it is not such a list."""
    if p.suffix.lower() not in (".txt", ".lst", ".list", ""):
        return None
    try:
        st = os.stat(p)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_LIST_BYTES:
            return None
        text = _head(p, MAX_LIST_BYTES).decode()
    except (UnicodeDecodeError, OSError):
        return None
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    return lines if lines and all("\0" not in ln for ln in lines) else None


@dataclass
class Discovered:
    """The models to evaluate, and every path passed over with why."""

    paths: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    more_skipped: int = 0  # passed over past MAX_SKIPPED, counted only


class _Found:
    def __init__(self) -> None:
        self.paths: list[Path] = []
        self.seen: set[str] = set()
        self.lists: set[str] = set()
        self.budget = Budget(BATCH_READ_LIMIT, "the batch's files")  # detection, all together
        self.skipped: list[tuple[str, str]] = []
        self.more_skipped = 0

    def skip(self, p: Path | str, why: str) -> None:
        if len(self.skipped) < MAX_SKIPPED:
            self.skipped.append((str(p), why))
        else:
            self.more_skipped += 1

    def cached(self, d: Path) -> bool:
        """Add what a Hugging Face cache holds at `d` (each repository at each snapshot; a
        directory inside a snapshot as it is); False when `d` is no part of a cache."""
        listing = cache.cache_listing(d)
        if listing is not None:
            for snap in listing.snapshots:
                self.add(snap.path)
            for path, why in listing.skipped:
                self.skip(path, f"in the Hugging Face cache: {why}")
            if not listing.snapshots:
                self.skip(d, "a Hugging Face cache holding no snapshot")
            return True
        if cache.snapshot_of(d) is not None:  # a directory inside a snapshot: a model as it is
            self.add(d)
            return True
        return False

    def add(self, p: Path) -> None:
        r = os.path.realpath(p)  # never raises, a symlink loop included
        if r not in self.seen:
            self.seen.add(r)
            self.paths.append(p)

    def walk(self, root: Path) -> None:
        """Every model under `root`, depth first in name order, without recursion."""
        stack: list[tuple[Path, int]] = [(root, 0)]
        while stack:
            d, depth = stack.pop()
            try:
                if self.cached(d):
                    continue
                if _is_model_dir(d):
                    self.add(d)
                    for rel in _not_loaded(d):
                        self.skip(
                            d / rel,
                            f"inside the model directory {d.name}, which is evaluated as one "
                            "model (its config names how it loads): not part of that load; "
                            "name this file to evaluate it on its own",
                        )
                    continue
                with os.scandir(d) as it:
                    children = sorted(it, key=lambda e: e.name)
            except OSError as e:
                raise UsageError(
                    f"{d}: cannot be listed ({e.strerror})", "check the paths given to eval"
                ) from e
            subdirs = [c for c in children if self._child(c)]
            for c in reversed(subdirs):
                if depth + 1 > tree.MAX_DEPTH:  # its evaluation says what it is
                    self.add(Path(c.path))
                else:
                    stack.append((Path(c.path), depth + 1))

    def _child(self, c: os.DirEntry[str]) -> bool:
        """Add what a directory entry holds; True for a directory to walk into."""
        p = Path(c.path)
        if c.name.startswith("."):
            self.skip(p, "hidden (a name starting with '.' is not walked)")
            return False
        try:
            kind = tree.kind_of(c.stat(follow_symlinks=False).st_mode)
        except OSError:
            self.skip(p, "gone since it was listed")
            return False
        if kind is tree.Kind.DIR:
            return True
        if kind is tree.Kind.SYMLINK:
            try:
                os.stat(p)
                self.skip(p, "a symlink (not followed; name its target to evaluate it)")
            except OSError:  # a loop or a dangling link: its evaluation says which
                self.add(p)
            return False
        if kind in tree.SPECIAL:
            self.add(p)  # never opened here; its evaluation reports it
        elif p.suffix.lower() in CONFIG_SUFFIXES:  # by its name, unless its bytes say a model
            if _is_model_by_content(p, self.budget):
                self.add(p)
            else:
                self.skip(p, f"a configuration or text file (by its name: {p.suffix.lower()})")
        elif _is_model_file(p, self.budget):
            self.add(p)
        else:
            self.skip(p, "not a model (by its content)")
        return False

    def expand(self, raw: str | Path, nesting: int) -> None:
        p = Path(raw).expanduser()
        if not os.path.lexists(p):  # a repo id: from the Hugging Face cache
            p = cache.locate(p)
        if p.is_dir() and self.cached(p):
            return
        if not p.exists():
            what = "a symlink that leads nowhere (dangling, or a loop)" if p.is_symlink() else ""
            raise UsageError(
                f"{p}: {what or 'no such file or directory'}", "check the paths given to eval"
            )
        if p.is_dir():
            self.walk(p)
        elif _is_model_file(p, self.budget):
            self.add(p)
        elif (lines := _read_list(p)) is not None:
            key = os.path.realpath(p)
            if key in self.lists or nesting >= MAX_LIST_NESTING:
                raise UsageError(
                    f"{p}: a list of paths that names itself or nests lists too deep",
                    "list model paths, not other lists",
                )
            self.lists.add(key)
            for line in lines:
                target = Path(line).expanduser()
                self.expand(target if target.is_absolute() else p.parent / target, nesting + 1)
        else:
            self.add(p)  # not recognisable: its evaluation reports why


def discover(paths: Iterable[str | Path]) -> Discovered:
    """Models named by PATHs: files, directories (every model file or model directory inside,
    recognised by content, and Hugging Face caches), repo ids in the cache, and text files
    listing paths, one a line; and what was passed over, with why."""
    found = _Found()
    for raw in paths:
        found.expand(raw, 0)
    return Discovered(found.paths, found.skipped, found.more_skipped)


def expand(paths: Iterable[str | Path]) -> list[Path]:
    return discover(paths).paths


def digest(path: Path) -> str:
    """sha256 of a file; for a directory, its root digest (over the per-file digests); '' for
    a path that cannot be read (a symlink loop, say: its evaluation says why). A cache snapshot
    is digested as its sandbox sees it: made a plain directory (runner.hf.snapshot)."""
    from runner.controller.sessions import new_session_id
    from runner.hf import snapshot

    session = new_session_id()
    try:
        prepared = snapshot.prepare(path, session, []) if path.is_dir() else None
        digests = file_digests(prepared.path if prepared else path)
    except (OSError, UsageError):
        return ""
    finally:
        snapshot.remove_work_dir(session)
    return digests[0].sha256 if path.is_file() else root_digest(digests)


# --- one model ---------------------------------------------------------------------------------
