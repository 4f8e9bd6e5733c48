"""Parse the tracer's log: `strace -f -qq -ttt -xx` output, read as hostile data.

Line shapes, each prefixed by `PID TIMESTAMP `:

    name(args) = RET [ERRNO (text)] [(INJECTED)]
    name(args <unfinished ...>              later completed by   <... name resumed>rest) = RET
    +++ exited with N +++  /  +++ killed by SIGNAME [(core dumped)] +++
    --- SIGNAME {...} ---

With `-xx` every string is hex-escaped ("\\x2f\\x74..."), so quoting is unambiguous. Lines that do
not parse are counted, never fatal; a last line without a newline marks a log cut mid-write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_PREFIX = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
_CALL = re.compile(r"^([a-z_0-9]+)\((.*)$")
_RESUMED = re.compile(r"^<\.\.\. ([a-z_0-9]+) resumed>(.*)$")
_EXITED = re.compile(r"^\+\+\+ exited with (\d+) \+\+\+$")
_KILLED = re.compile(r"^\+\+\+ killed by (SIG[A-Z0-9_]+)(?: \(core dumped\))? \+\+\+$")
_SIGNAL = re.compile(r"^--- (SIG[A-Z0-9_]+) (.*)---$")
_RESULT = re.compile(r"^(.*)\)\s+=\s+(-?\d+|0x[0-9a-f]+|\?)(?:\s+([A-Z][A-Z0-9_]+))?(.*)$", re.S)
_STRING = re.compile(r'"((?:\\x[0-9a-f]{2})*)"(\.\.\.)?')
UNFINISHED = " <unfinished ...>"

MAX_LINES = 400_000  # bounds the host's memory; a longer log is reported as truncated


@dataclass(frozen=True)
class Syscall:
    pid: int
    time: float
    name: str
    args: tuple[str, ...]
    result: str  # the return value as printed ("?" when unknown)
    errno: str = ""  # e.g. "EPERM" when the call failed
    injected: bool = False  # the tracer refused it (injected an error)

    @property
    def failed(self) -> bool:
        return bool(self.errno) or self.result.startswith("-")


@dataclass(frozen=True)
class ProcessExit:
    pid: int
    time: float
    code: int | None
    signal: str = ""


@dataclass(frozen=True)
class SignalDelivery:
    pid: int
    time: float
    signal: str
    info: str


@dataclass
class Trace:
    calls: list[Syscall] = field(default_factory=list)
    exits: dict[int, ProcessExit] = field(default_factory=dict)
    signals: list[SignalDelivery] = field(default_factory=list)
    malformed: int = 0
    cut_mid_line: bool = False
    first_pid: int | None = None
    truncated: bool = False  # more lines than the parser keeps


def decode_string(token: str) -> str:
    """A `-xx` string token ("\\x2f\\x65...") as text; other tokens unchanged."""
    m = _STRING.fullmatch(token.strip())
    if not m:
        return token.strip()
    raw = bytes.fromhex(m.group(1).replace("\\x", ""))
    text = raw.decode("utf-8", "surrogateescape")
    return text + ("..." if m.group(2) else "")


def split_args(text: str) -> tuple[str, ...]:
    """Split an argument list at top-level commas (outside quotes and brackets)."""
    out: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    while i < len(text):
        c = text[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            out.append(text[start:i].strip())
            start = i + 1
        i += 1
    last = text[start:].strip()
    if last or out:
        out.append(last)
    return tuple(out)


def parse(log: bytes) -> Trace:
    trace = Trace()
    text = log.decode("ascii", "replace")
    if text and not text.endswith("\n"):
        trace.cut_mid_line = True
    pending: dict[int, tuple[float, str, str]] = {}
    for n, line in enumerate(text.splitlines()):
        if n >= MAX_LINES:
            trace.truncated = True
            break
        m = _PREFIX.match(line)
        if not m:
            if line.strip():
                trace.malformed += 1
            continue
        pid, ts, rest = int(m.group(1)), float(m.group(2)), m.group(3)
        if trace.first_pid is None:
            trace.first_pid = pid
        if rest.startswith("+++"):
            _parse_exit(trace, pid, ts, rest)
            continue
        if rest.startswith("---"):
            sm = _SIGNAL.match(rest)
            if sm:
                trace.signals.append(SignalDelivery(pid, ts, sm.group(1), sm.group(2).strip()))
            else:
                trace.malformed += 1
            continue
        resumed = _RESUMED.match(rest)
        if resumed:
            name, tail = resumed.group(1), resumed.group(2)
            start = pending.pop(pid, None)
            if start is None or start[1] != name:
                trace.malformed += 1
                continue
            ts, body = start[0], start[2] + tail
        else:
            cm = _CALL.match(rest)
            if not cm:
                trace.malformed += 1
                continue
            name, body = cm.group(1), cm.group(2)
            if body.endswith(UNFINISHED):
                pending[pid] = (ts, name, body[: -len(UNFINISHED)])
                continue
        call = _finish(pid, ts, name, body)
        if call is None:
            trace.malformed += 1
        else:
            trace.calls.append(call)
    # Calls still unfinished at the end (the process was killed inside them) are kept.
    for pid, (ts, name, body) in pending.items():
        trace.calls.append(Syscall(pid, ts, name, split_args(body), "?"))
    # In start order: a clone comes before anything its child does.
    trace.calls.sort(key=lambda c: c.time)
    return trace


def _finish(pid: int, ts: float, name: str, body: str) -> Syscall | None:
    rm = _RESULT.match(body)
    if not rm:
        return None
    args_text, result, errno, tail = rm.group(1), rm.group(2), rm.group(3) or "", rm.group(4)
    return Syscall(pid, ts, name, split_args(args_text), result, errno, "(INJECTED)" in tail)


def _parse_exit(trace: Trace, pid: int, ts: float, rest: str) -> None:
    em = _EXITED.match(rest)
    if em:
        trace.exits[pid] = ProcessExit(pid, ts, int(em.group(1)))
        return
    km = _KILLED.match(rest)
    if km:
        trace.exits[pid] = ProcessExit(pid, ts, None, km.group(1))
        return
    trace.malformed += 1
