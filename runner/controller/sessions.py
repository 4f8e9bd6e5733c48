"""Sessions: ids, per-sandbox host directories, and reaping what a killed controller left.

Every sandbox gets a directory `<tmp>/airlock-<session>` holding `owner.json` (which process
owns it), `run/` (the worker's Unix socket; writable by the model's uid), `trace/` (the
tracer's log; root only) and `arch/` (an architecture file, read-only in the container).
Containers carry labels naming the session and the owning process, so a later start, or
`airlock gc`, can remove the ones whose owner is gone.

`run/` and `trace/` are the only host paths the container can write to. As root, each is a
size-capped tmpfs of its own, so a model cannot fill the host's disk through them (the worker's
uid can write in `run/`; the tracer's log grows with what the model does).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

from runner.controller import engine as _docker

log = logging.getLogger(__name__)

MODEL_UID = 10001
DIR_PREFIX = "airlock-"
RUN_TMPFS_BYTES = 16 << 20
TRACE_TMPFS_BYTES = 128 << 20


@dataclass(frozen=True)
class SessionDirs:
    root: Path
    run: Path
    trace: Path
    arch: Path


def new_session_id() -> str:
    return uuid.uuid4().hex[:12]


def _owner() -> dict[str, object]:
    me = psutil.Process()
    return {"pid": me.pid, "create_time": me.create_time(), "host": socket.gethostname()}


def owner_labels(session: str, root: Path) -> dict[str, str]:
    owner = _owner()
    return {
        _docker.SESSION_LABEL: session,
        _docker.OWNER_PID_LABEL: f"{owner['pid']}:{owner['create_time']}",
        _docker.OWNER_HOST_LABEL: str(owner["host"]),
        _docker.TMPDIR_LABEL: str(root),
    }


def tmp_base() -> Path:
    return Path(tempfile.gettempdir())


def make_dirs(session: str) -> SessionDirs:
    root = tmp_base() / f"{DIR_PREFIX}{session}"
    root.mkdir(mode=0o711)
    tmp = root / ".owner.json.tmp"
    tmp.write_text(json.dumps(_owner()))
    tmp.replace(root / "owner.json")  # atomic: a concurrent reap never sees it half-written
    run, trace, arch = root / "run", root / "trace", root / "arch"
    run.mkdir(mode=0o700)
    trace.mkdir(mode=0o700)
    arch.mkdir(mode=0o755)
    root_user = os.geteuid() == 0
    if root_user:
        _mount_tmpfs(run, RUN_TMPFS_BYTES, f"mode=0700,uid={MODEL_UID},gid={MODEL_UID}")
        _mount_tmpfs(trace, TRACE_TMPFS_BYTES, "mode=0700,uid=0,gid=0")
        os.chown(run, MODEL_UID, MODEL_UID)
    else:  # rootless engine or docker group: let the model's uid create its socket
        run.chmod(0o777)
    return SessionDirs(root, run, trace, arch)


def _mount_tmpfs(path: Path, size: int, options: str) -> None:
    subprocess.run(
        [
            "mount",
            "-t",
            "tmpfs",
            "-o",
            f"size={size},nosuid,nodev,noexec,{options}",
            "airlock",
            str(path),
        ],
        check=True,
        capture_output=True,
    )


def remove_dirs(root: Path) -> None:
    if not root.name.startswith(DIR_PREFIX):
        return
    for sub in ("run", "trace", "shm"):  # shm: sessions of versions that mounted one
        mount_point = root / sub
        if os.path.ismount(mount_point):
            subprocess.run(["umount", "-l", str(mount_point)], check=False, capture_output=True)
    with contextlib.suppress(RecursionError):  # deeper than Python's limit: a model can
        shutil.rmtree(root, ignore_errors=True)
    if os.path.lexists(root):  # too deep, or more levels than descriptors: rm walks without
        subprocess.run(
            ["rm", "-rf", "--one-file-system", "--", str(root)], check=False, capture_output=True
        )
    if os.path.lexists(root):
        raise OSError(f"{root} could not be removed")


def _alive(pid_and_time: str) -> bool:
    pid_text, _, created = pid_and_time.partition(":")
    try:
        proc = psutil.Process(int(pid_text))
        return not created or abs(proc.create_time() - float(created)) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def _owner_alive(owner_file: Path) -> bool:
    try:
        owner = json.loads(owner_file.read_text())
        return _alive(f"{owner['pid']}:{owner['create_time']}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        # unreadable: reap it only once it is old enough not to be one being made right now
        log.debug("reading %s: %r", owner_file, e)
        try:
            return time.time() - owner_file.stat().st_mtime < 60
        except OSError as e:
            log.debug("reading %s: %r", owner_file, e)
            return True


@dataclass(frozen=True)
class Reaped:
    containers: list[str]
    directories: list[str]


def reap(everything: bool = False) -> Reaped:
    """Remove containers and directories whose owning process is gone (or all of them)."""
    host = socket.gethostname()
    removed_containers = []
    for c in _docker.list_sessions():
        owner = c.labels.get(_docker.OWNER_PID_LABEL, "")
        same_host = c.labels.get(_docker.OWNER_HOST_LABEL, host) == host
        if everything or (same_host and not _alive(owner)):
            _docker.remove(c.id)
            removed_containers.append(c.name)
            tmpdir = c.labels.get(_docker.TMPDIR_LABEL)
            if tmpdir:
                remove_dirs(Path(tmpdir))
    removed_dirs = []
    for d in sorted(tmp_base().glob(f"{DIR_PREFIX}*")):
        if not d.is_dir() or d.is_symlink():
            continue
        owner_file = d / "owner.json"
        if not owner_file.exists():
            continue  # not a sandbox directory (a build context, say)
        if everything or not _owner_alive(owner_file):
            try:
                remove_dirs(d)
                removed_dirs.append(str(d))
            except OSError as e:
                log.debug("removing %s: %r", d, e)
    return Reaped(removed_containers, removed_dirs)
