"""Hostile fixtures against the evidence itself: a model that silences, empties, replaces,
forges or floods the worker's audit log, floods the tracer and the folder past their caps, or
makes the host kill the sandbox, and does something the tracer sees (a shell, a socket).

Every payload is harmless outside the sandbox too: markers under /tmp only, network to
127.0.0.1 only, every loop and allocation bounded. The audit log it attacks is
/airlock/run/audit.jsonl, inside the sandbox's own run directory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.rules.catalog import Verdict
from tests.fixtures import hostile
from tests.hostile.corpus import Fixture

AUDIT = "/airlock/run/audit.jsonl"
_IMPORT = "import os, json, time\nimport runner.worker.audit as audit\n"


def _shell(marker: str) -> str:
    return f"os.system({f'echo pwned > {marker}'!r})\n"


def _w(d: Path, name: str, code: str) -> Path:
    p = d / name
    p.write_bytes(hostile.code_pickle(_IMPORT + code))
    return p


# --- the self-report silenced, emptied, replaced, forged or flooded -------------------------


def silence_flag(d: Path, marker: str) -> Path:
    """the worker's own module state: recording switched off, then a shell"""
    return _w(d, "silence.pkl", "audit._recording = False\n" + _shell(marker))


def drop_log_handle(d: Path, marker: str) -> Path:
    """the worker's own module state: its log handle dropped, then a TCP connect to 127.0.0.1"""
    return _w(
        d,
        "nolog.pkl",
        "audit._log = None\nimport socket\ns = socket.socket()\n"
        "try:\n    s.connect(('127.0.0.1', 9))\nexcept OSError:\n    pass\n",
    )


def truncate_by_path(d: Path, marker: str) -> Path:
    """the log truncated through its path (the tracer sees the open), then a shell"""
    return _w(d, "truncate.pkl", f"open({AUDIT!r}, 'w').close()\n" + _shell(marker))


def forge_through_handle(d: Path, marker: str) -> Path:
    """the log emptied through the worker's own handle (ftruncate and write are not traced) and
    rewritten with well-numbered lines that claim nothing happened, then a shell"""
    return _w(
        d,
        "forged.pkl",
        "audit._recording = False\nf = audit._log\nf.seek(0)\nf.truncate()\n"
        "for i, (ev, args) in enumerate([('import', ['json']), ('open', ['/tmp/c', 'w'])]):\n"
        "    f.write(json.dumps([time.time(), ev, args, i]) + '\\n')\n"
        "f.flush()\n" + _shell(marker),
    )


def replace_with_fifo(d: Path, marker: str) -> Path:
    """the log unlinked and a FIFO put in its place (a host that opened it plainly would block),
    then a shell"""
    return _w(d, "fifo.pkl", f"os.unlink({AUDIT!r})\nos.mkfifo({AUDIT!r})\n" + _shell(marker))


def replace_with_symlink(d: Path, marker: str) -> Path:
    """the log replaced by a symlink to a file of the host's (a host that followed it would read
    its own file as the worker's words), then a shell"""
    code = f"os.unlink({AUDIT!r})\nos.symlink('/etc/hostname', {AUDIT!r})\n"
    return _w(d, "symlink.pkl", code + _shell(marker))


def flood_audit(d: Path, marker: str) -> Path:
    """60000 distinct compile() events (no syscall) push the log past its writer's cap, so the
    shell's own event is not written"""
    return _w(
        d,
        "floodaudit.pkl",
        "for i in range(120000):\n    compile(str(i), '<flood>', 'eval')\n" + _shell(marker),
    )


def hostile_lines(d: Path, marker: str) -> Path:
    """lines written raw into the log: nested 100000 deep, numbers of 5000 digits, NaN and
    infinities, invalid UTF-8, NUL bytes, a wrong-shaped number, 24 MiB without a newline"""
    junk = [
        b"[" * 100_000 + b"]" * 100_000 + b"\n",
        b"[" * 30_000 + b"]" * 30_000 + b"\n",  # short enough to be read: JSON would recurse
        b"[" + b"9" * 5000 + b', "os.system", [], 0]\n',
        b'[NaN, "open", [], 1]\n[Infinity, "x", [], 2]\n[-1e308, "x", [], 3]\n',
        b'[1.0, "\xff\xfe", [], 4]\n' + b"\x00" * 100 + b"\n",
        b'[1.0, "exec", ["a"], 99999999999999999999999]\n',
    ]
    return _w(
        d,
        "junk.pkl",
        "audit._log.flush()\nfd = audit._log.fileno()\n"
        f"for chunk in {junk!r}:\n    os.write(fd, chunk)\n"
        "block = b'A' * (1 << 20)\ntry:\n    for _ in range(24):\n        os.write(fd, block)\n"
        "except OSError:\n    pass  # the run directory's quota\n" + _shell(marker),
    )


# --- the tracer and the folder flooded past their caps --------------------------------------


def flood_writes(d: Path, marker: str) -> Path:
    """100000 distinct failed opens for writing in scratch (each a traced call and an audit event),
    past the folder's and the audit log's caps, then a shell"""
    return _w(
        d,
        "floodwrites.pkl",
        "for i in range(100000):\n"
        "    try:\n        os.open('/tmp/nodir/%d' % i, os.O_WRONLY | os.O_CREAT)\n"
        "    except OSError:\n        pass\n" + _shell(marker),
    )


def flood_connects(d: Path, marker: str) -> Path:
    """60000 distinct UDP connects and sends to 127.0.0.1 (ports 1-30000), then a shell"""
    return _w(
        d,
        "floodnet.pkl",
        "import socket\nu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "for port in range(1, 30001):\n"
        "    for call in (u.connect, lambda a: u.sendto(b'', a)):\n"
        "        try:\n            call(('127.0.0.1', port))\n"
        "        except OSError:\n            pass\n" + _shell(marker),
    )


# --- a sandbox the host kills: the trace then ends without the worker's exit -----------------


def shell_then_hang(d: Path, marker: str) -> Path:
    """a shell, then a hang in load (bounded: 60 s) until the load deadline kills the sandbox"""
    return _w(d, "hang.pkl", _shell(marker) + "time.sleep(60)\n")


def shell_then_spin(d: Path, marker: str) -> Path:
    """a shell, then a CPU spin (bounded: 60 s) until the wall-time limit kills the sandbox"""
    return _w(
        d,
        "spin.pkl",
        _shell(marker) + "end = time.time() + 60\nwhile time.time() < end:\n    pass\n",
    )


@dataclass(frozen=True)
class Case:
    fixture: Fixture
    host_verdict: Verdict  # the verdict from the host's evidence alone (tracer and host)


def _case(
    name: str, build: Callable[[Path, str], Path], expect: set[str], host: Verdict, **kw: Any
) -> Case:
    technique = " ".join((build.__doc__ or name).split())
    return Case(Fixture(name, technique, build, frozenset(expect), **kw), host)


M, S = Verdict.MALICIOUS, Verdict.SUSPICIOUS
CASES: list[Case] = [
    _case("audit flag off", silence_flag, {"AL202", "AL901"}, M),
    _case("audit handle dropped", drop_log_handle, {"AL101", "AL901"}, S),
    _case("audit truncated by path", truncate_by_path, {"AL202", "AL904", "AL902"}, M),
    _case("audit forged through its handle", forge_through_handle, {"AL202", "AL901"}, M),
    _case("audit replaced by a FIFO", replace_with_fifo, {"AL202", "AL904", "AL902"}, M),
    _case("audit replaced by a symlink", replace_with_symlink, {"AL904", "AL902"}, M),
    _case("audit flooded past its cap", flood_audit, {"AL202", "AL901", "AL903"}, M),
    _case("audit hostile lines", hostile_lines, {"AL202", "AL903"}, M),
    _case("trace flooded with writes", flood_writes, {"AL202", "AL906", "AL903"}, M),
    _case("trace flooded with connects", flood_connects, {"AL202", "AL101", "AL906"}, M),
    _case(
        "killed at the load deadline",
        shell_then_hang,
        {"AL202", "AL503", "AL907"},
        M,
        policy={"load_timeout_s": 4},
        error="DeadlineExceeded",
    ),
    _case(
        "killed at the wall time",
        shell_then_spin,
        {"AL202", "AL503", "AL907"},
        M,
        policy={"wall_timeout_s": 8, "load_timeout_s": 60},
        error="DeadlineExceeded",
    ),
]
