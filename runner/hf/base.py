"""The base model a PEFT adapter applies to, found on the host: the caller's --base (a
directory, a cache repository folder or snapshot, or ORG/NAME[@REV] from the local cache), or,
with none given, the repo id the adapter's adapter_config.json names, when that repository is
in the local cache.

adapter_config.json is the adapter's file, so hostile: it is read bounded (runner.hf.repo), and
its base_model_name_or_path is only ever taken as a repo id looked up inside the cache roots
(runner.hf.cache.resolve_repo_id), never as a filesystem path, never over the network. A cache
snapshot is made a plain directory (runner.hf.snapshot) in the session's own base work
directory, which runner.hf.snapshot.remove_work_dir removes with the model's.
"""

from __future__ import annotations

import os
from pathlib import Path

from runner.errors import UsageError, untrusted_text
from runner.hf import cache, snapshot
from runner.hf.repo import read_json

ADAPTER_CONFIG = "adapter_config.json"
BASE_KEY = "base_model_name_or_path"
GIVE_BASE = "pass --base DIR (the base model's directory, or ORG/NAME from the cache)"


def _shown(value: object) -> str:
    return repr(untrusted_text(value if isinstance(value, str) else repr(value), 120))


def named_base(model: Path) -> tuple[str | None, str]:
    """The repo id (ORG/NAME, or NAME) an adapter's adapter_config.json names as its base, and
    "" ; or None and why it names none that can be looked up. (None, "") when `model` is no
    adapter. Never raises."""
    try:
        if not model.is_dir() or not os.path.lexists(model / ADAPTER_CONFIG):
            return None, ""
    except OSError:
        return None, ""
    doc = read_json(snapshot.followed(model / ADAPTER_CONFIG))  # in a snapshot: its blob
    if isinstance(doc, str):
        return None, f"{ADAPTER_CONFIG} {doc}"
    value = doc.get(BASE_KEY)
    if value is None or value == "":
        return None, f"{ADAPTER_CONFIG} names no base model"
    parsed = cache.parse_repo_id(value) if isinstance(value, str) else None
    if parsed is None or parsed[1] or "@" in value:
        return None, f"its base model {_shown(value)} is not a Hugging Face repo id"
    return parsed[0], ""


def cached(repo_id: str) -> Path | None:
    """The snapshot of `repo_id` (refs/main, or the only one) in the local cache; None when it
    is not there. Never the network."""
    try:
        return cache.resolve_repo_id(repo_id)
    except UsageError:
        return None


def cached_base(model: Path) -> Path | None:
    """The cache snapshot of the base an adapter names, when it is in the local cache."""
    repo_id, _ = named_base(model)
    return cached(repo_id) if repo_id is not None else None


def locate(base: Path) -> Path:
    """--base as the model argument is read: a path as it is (a cache repository folder: its
    refs/main snapshot), ORG/NAME[@REV] that is no path from the local cache."""
    try:
        return cache.locate(base)
    except UsageError as e:
        raise UsageError(f"--base {e.message}", e.hint) from e


def _plain(path: Path, session: str, notes: list[str]) -> Path | None:
    """`path`, or the plain directory its cache snapshot is made into; None when a snapshot
    could not be made one (what it holds no copy should carry: the note says what)."""
    said: list[str] = []
    prepared = snapshot.prepare(path, snapshot.base_key(session), said)
    if prepared is None:
        return path
    if prepared.path == prepared.given and path.is_dir():
        why = said[0].partition(": ")[2] if said else "it could not be made a plain directory"
        notes.append(f"the base model's cache snapshot was not used: {why}")
        return None
    return prepared.path


def _from_adapter(model: Path, notes: list[str]) -> Path | None:
    repo_id, why = named_base(model)
    if repo_id is None:
        if why:
            notes.append(f"the adapter is described, not run: {why}; {GIVE_BASE}")
        return None
    found = cached(repo_id)
    if found is None:
        where = ", ".join(str(r) for r in cache.cache_roots()) or str(cache.candidate_roots()[0])
        notes.append(
            f"the adapter is described, not run: its base model {repo_id} is not in the Hugging "
            f"Face cache at {where}; {GIVE_BASE}, or download it first"
        )
        return None
    snap = cache.snapshot_of(found)
    assert snap is not None  # resolve_repo_id returns snapshots only
    notes.append(f"base model {snap.repo_id}@{snap.revision} found in the Hugging Face cache")
    return found


def resolve(base: Path | None, model: Path, session: str, notes: list[str]) -> Path | None:
    """The base directory to mount for `model`: the caller's `base` as located, else the
    cached base an adapter names; a cache snapshot made a plain directory in the session's
    base work directory. None when there is none (an adapter is then described, and a note
    says why)."""
    if base is not None:
        found = locate(base)
        snap = cache.snapshot_of(found)
        if snap is not None:
            notes.append(f"base model {snap.repo_id}@{snap.revision} from the Hugging Face cache")
        plain = _plain(found, session, notes)
        if plain is None:
            raise UsageError(
                f"--base {untrusted_text(str(base), 200)}: {notes.pop()}",
                "pass the base model's repository directory",
            )
        return plain
    named = _from_adapter(model, notes)
    return _plain(named, session, notes) if named is not None else None
