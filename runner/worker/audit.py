"""Python audit-hook events inside the worker (PEP 578).

Self-reported: the model runs in this same process and could forge or hide events, so the host
labels them as the worker's word and never relies on them alone. Each event is appended, as it
happens, to a JSON-lines file in the host-mounted run directory, so events survive a worker that
is killed mid-call; the file is bounded. A line is `[time, event, [args], number, pid]`,
numbered from 0 in each process, and events the bound drops are counted in
`airlock.audit.dropped` lines written in room kept for them, so the host can tell a log cut,
rewritten or full from a quiet one. Recording is switched on only around the model's own code
(deserialization and inference), after the libraries a format needs have been imported, so
library start-up does not read as model behaviour."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from runner.worker import audit_sources

MAX_LOG_BYTES = 4 << 20
RESERVED_BYTES = 16 << 10  # of MAX_LOG_BYTES, kept for the records of events not written
DROPPED_EVENT = "airlock.audit.dropped"  # args: [the count of events not written so far]
MAX_ARG_CHARS = 256
MAX_NAME_CHARS = 1024  # of a pickle global's module or name (dotted paths are judged whole)

# Events always worth recording while the model's code runs.
WATCHED = frozenset(
    {
        "pickle.find_class",
        "exec",
        "compile",
        "import",
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "os.kill",
        "os.killpg",
        "pty.spawn",
        "socket.__new__",
        "socket.connect",
        "socket.sendto",
        "socket.sendmsg",
        "socket.bind",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyname_ex",
        "socket.gethostbyaddr",
        "ctypes.dlopen",
        "ctypes.dlsym",
        "ctypes.cdata",
        "open",
        "os.remove",
        "os.unlink",
        "os.rename",
        "os.mkdir",
        "os.rmdir",
        "os.chmod",
        "os.chown",
        "shutil.rmtree",
        "shutil.copyfile",
        "urllib.Request",
        "http.client.connect",
        "webbrowser.open",
        "os.putenv",
        "os.unsetenv",
        "sys.addaudithook",
        "sys.setprofile",
        "sys.settrace",
        "signal.pthread_kill",
        "mmap.__new__",
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
        "sys._current_frames",
    }
)
# Imports that a weights file has no business triggering.
SUSPICIOUS_IMPORTS = frozenset(
    {
        "os",
        "posix",
        "nt",
        "subprocess",
        "socket",
        "ssl",
        "ctypes",
        "cffi",
        "pty",
        "runpy",
        "importlib",
        "pkgutil",
        "shutil",
        "urllib",
        "http",
        "ftplib",
        "smtplib",
        "telnetlib",
        "webbrowser",
        "multiprocessing",
        "asyncio",
        "code",
        "codeop",
        "timeit",
        "cProfile",
        "profile",
        "pdb",
        "marshal",
        "uuid",
        "platform",
        "requests",
        "paramiko",
        "base64",
        "zlib",
    }
)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_LIBRARY_PREFIXES = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})

_log: Any = None
_log_bytes = 0
_dropped = 0
_seq = 0  # each line's number: lines removed or rewritten leave a gap the host sees
_pid = os.getpid()  # numbering is per process: a forked child numbers its own lines
_recording = False
_local = threading.local()
_lock = threading.Lock()


def _fmt(value: Any) -> str:
    if isinstance(value, (str, int, float, bool)) or value is None:
        text = repr(value) if not isinstance(value, str) else value
    elif isinstance(value, (bytes, bytearray)):
        text = repr(bytes(value[:MAX_ARG_CHARS]))
    elif isinstance(value, (tuple, list)):
        text = "(" + ", ".join(_fmt(v) for v in list(value)[:8]) + ")"
    elif hasattr(value, "co_filename"):
        text = f"<code {getattr(value, 'co_name', '?')} in {value.co_filename}>"
    else:
        text = f"<{type(value).__name__}>"  # never call a model object's __repr__
    return text[:MAX_ARG_CHARS]


def _args(event: str, args: tuple[Any, ...]) -> list[str]:
    if event == "pickle.find_class":  # module and name: the host judges the whole path
        return [_name_arg(a) for a in args[:2]]
    return [_fmt(a) for a in args[:6]]


def _name_arg(value: Any) -> str:
    """A module or name find_class was given (by GLOBAL, STACK_GLOBAL or what an EXT code
    resolved to in the extension registry): its text whole up to MAX_NAME_CHARS, a cut marked
    with "…" so it cannot pass for a whole name. A str subclass is read as a plain str (its
    own methods are the model's); anything else shows as its type."""
    if not isinstance(value, str):
        return _fmt(value)
    text = str.__str__(value)
    return text if len(text) <= MAX_NAME_CHARS else text[:MAX_NAME_CHARS] + "…"


def _library_code(filename: Any) -> bool:
    return isinstance(filename, str) and filename.startswith(_LIBRARY_PREFIXES)


# Standard-library modules that generate code as part of defining a class (dataclass methods,
# named tuples, evaluated annotations) or only parse it (ast): code they compile and run, called
# from their own frame, is theirs. Anything else the model's code compiles or runs, directly or
# from a C function, stays recorded.
_CODE_MAKERS = tuple(
    os.path.join(os.path.dirname(os.__file__), name)
    for name in (
        "dataclasses.py",
        "typing.py",
        "ast.py",
        os.path.join("collections", "__init__.py"),
    )
)
# A Hugging Face repository's own code files, copied here by transformers and imported by
# Python's import system: running them is reported, with their digests, from the host's read of
# the repository (AL930); their module bodies are not dynamic code when their bytes are the
# repository's (audit_sources). A file the model's code writes there and imports is.
_REMOTE_MODULES = os.path.join(os.environ.get("HF_MODULES_CACHE", "/tmp/hf/modules"), "")  # noqa: S108
_IMPORT_SYSTEM = ("<frozen importlib._bootstrap", "<frozen importlib._bootstrap_external")
_FROZEN = "<frozen "
_JUDGED = {  # a code maker's generated source, judged before it counts as the library's
    _CODE_MAKERS[0]: audit_sources.plain_generated,
    _CODE_MAKERS[1]: audit_sources.plain_annotation,
}
_remote_compiled: set[str] = set()  # module cache files whose source was the repository's


def _caller() -> str:
    """The file of the Python frame the audited call came from (this module's frames and
    the hook's are skipped)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back  # type: ignore[assignment]
    return frame.f_code.co_filename if frame is not None else ""


def _library_caller(caller: str) -> bool:
    return _library_code(caller) or caller.startswith(_FROZEN)


def _compiled_by_library(filename: Any, source: Any) -> bool:
    """A compile the libraries did. A library's file name is the library's only when a
    library's frame compiles it (the model's code can name its code anything); a code maker's
    generated source only when it is plain (audit_sources)."""
    caller = _caller()
    if _library_code(filename):
        return _library_caller(caller)
    if not isinstance(filename, str):
        return False
    if filename.startswith("<") and caller in _CODE_MAKERS:
        judge = _JUDGED.get(caller)
        return judge is None or judge(source)
    remote = filename.startswith(_REMOTE_MODULES) and caller.startswith(_IMPORT_SYSTEM)
    if remote and audit_sources.repository_source(source):
        _remote_compiled.add(filename)
        return True
    return False


def _run_by_library(filename: Any) -> bool:
    """An exec the libraries did: of a library's code from a library's frame, of what a code
    maker compiled (judged when it was compiled), of a repository module compiled as such."""
    caller = _caller()
    if _library_code(filename):
        return _library_caller(caller)
    if not isinstance(filename, str):
        return False
    if filename.startswith("<") and caller in _CODE_MAKERS:
        return True
    return filename in _remote_compiled and caller.startswith(_IMPORT_SYSTEM)


def _keep(event: str, args: tuple[Any, ...]) -> bool:
    if event == "open":
        mode, flags = (args[1] if len(args) > 1 else None), (args[2] if len(args) > 2 else 0)
        writing = isinstance(mode, str) and any(c in mode for c in "wax+")
        return writing or (isinstance(flags, int) and bool(flags & _WRITE_FLAGS))
    if event == "exec":
        return not _run_by_library(getattr(args[0], "co_filename", None)) if args else True
    if event == "compile":
        return not _compiled_by_library(
            args[1] if len(args) > 1 else None, args[0] if args else None
        )
    if event == "import":
        return bool(args) and str(args[0]).split(".")[0] in SUSPICIOUS_IMPORTS
    return True


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not _recording or event not in WATCHED or getattr(_local, "busy", False):
        return
    _local.busy = True
    try:
        if not _keep(event, args):
            return
        _locked(_write, event, _args(event, args))
    except Exception:  # the hook must never break the model's code path
        _locked(_note_drop)
    finally:
        _local.busy = False


# --- writing the log: numbered lines, and the log's own losses in room kept for them ---------


def _locked(fn: Any, *args: Any) -> None:
    """fn under the writer's lock (threads share the log and its numbering); a lock held too
    long counts as a drop rather than stall the model's code."""
    global _dropped
    if not _lock.acquire(timeout=1.0):
        _dropped += 1
        return
    try:
        fn(*args)
    finally:
        _lock.release()


def _after_fork() -> None:
    global _lock, _seq, _pid
    _lock = threading.Lock()  # a child of fork() gets a lock no thread of its own holds
    _seq, _pid = 0, os.getpid()


os.register_at_fork(after_in_child=_after_fork)


def _line(event: str, args: list[str]) -> str:
    return json.dumps([time.time(), event, args, _seq, _pid]) + "\n"  # ASCII: chars are bytes


def _emit(line: str) -> None:
    global _log_bytes, _seq
    _log.write(line)
    _log.flush()
    _log_bytes += len(line)
    _seq += 1


def _write(event: str, args: list[str]) -> None:
    line = _line(event, args)
    if _log is None or _log_bytes + len(line) > MAX_LOG_BYTES - RESERVED_BYTES:
        _note_drop()
        return
    _emit(line)


def _note_drop() -> None:
    """One event not written: counted, and the count written at the 1st, 2nd, 4th, 8th, ...
    drop in the room kept for it, so the host learns the log is incomplete and by how much
    (at least the last count written, at most twice it)."""
    global _dropped
    _dropped += 1
    if _log is None or _dropped & (_dropped - 1):
        return
    line = _line(DROPPED_EVENT, [str(_dropped)])
    if _log_bytes + len(line) <= MAX_LOG_BYTES:
        try:
            _emit(line)
        except Exception:  # nowhere left to say it: the host sees the numbering stop
            return


def install(log_path: str | None) -> None:
    global _log
    if log_path:
        _log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the worker
    sys.addaudithook(_hook)


def start_recording() -> None:
    """From here on the model's own code runs: record what it does."""
    global _recording
    _recording = True


@contextmanager
def paused() -> Iterator[None]:
    """Import libraries on the worker's behalf without recording their start-up."""
    global _recording
    before, _recording = _recording, False
    try:
        yield
    finally:
        _recording = before
