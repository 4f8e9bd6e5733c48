"""Staging: how a model's files reach the container's read-only /model directory.

A model is bind-mounted as it is when the sandbox's uid can read every file of it. Otherwise
(safetensors writes 0600 files), and when a pre-started sandbox is claimed, the files are put in
the session's own directory: hard links when they are world-readable and on the same filesystem,
private copies otherwise. Symlinks are copied as symlinks, never followed.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

_SAFE_NAME = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def container_name(path: Path) -> str:
    """The model's name inside /model: its own when it is plain, else 'model'."""
    name = path.name if path.name and set(path.name) <= _SAFE_NAME else "model"
    return name if not name.startswith(".") else "model" + name


def world_readable(p: Path) -> bool:
    mode = p.lstat().st_mode
    if stat.S_ISLNK(mode):
        return True
    need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
    return (mode & need) == need


def _files(path: Path) -> list[Path]:
    return [path] if path.is_file() else list(path.rglob("*"))


def stage(path: Path, into: Path) -> Path:
    """Put the model into `into`: hard links when possible (same filesystem, world-readable);
    copies otherwise. Returns the staged path."""
    target = into / container_name(path)
    linkable = (
        all(world_readable(p) for p in _files(path)) and path.stat().st_dev == into.stat().st_dev
    )
    if path.is_file():
        if linkable:
            os.link(path, target)
        else:
            shutil.copyfile(path, target)
            target.chmod(0o644)
    else:
        shutil.copytree(
            path, target, symlinks=True, copy_function=os.link if linkable else shutil.copyfile
        )
        if not linkable:
            for p in [target, *target.rglob("*")]:
                if not p.is_symlink():
                    p.chmod(0o755 if p.is_dir() else 0o644)
    return target


def readable_model(path: Path, session_root: Path, notes: list[str]) -> Path:
    """The path to mount: the model itself when the sandbox's uid can read all of it, else a
    private read-only copy in the session's directory (and a note saying so)."""
    if all(world_readable(p) for p in _files(path)):
        return path
    into = session_root / "model"
    into.mkdir(mode=0o755)
    staged = stage(path, into)  # not world-readable: always a copy
    notes.append(
        f"{path.name} is not readable by the sandbox's uid; a private "
        "read-only copy was mounted (make it world-readable to avoid this)"
    )
    return staged
