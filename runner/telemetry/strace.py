"""Parse the tracer's log: `strace -f -q -ttt -s 256 -xx` output, read as hostile data.

Line shapes, each prefixed by `PID TIMESTAMP `:

    name(args) = RET [ERRNO (text)] [(INJECTED)]
    name(args <unfinished ...>              later completed by   <... name resumed>rest) = RET
    +++ exited with N +++  /  +++ killed by SIGNAME [(core dumped)] +++
    --- SIGNAME {...} ---

With `-xx` every string is hex-escaped ("\\x2f\\x74..."), so quoting is unambiguous and no
string can carry a newline: a quote that opens anything else is counted (`unescaped`). The
parser never raises and bounds what it keeps: numbers of more digits than strace prints make
the line malformed (and are clipped), a line longer than MAX_LINE_BYTES is read from its head.
Every line is read, in bounded memory: MAX_LINES calls are kept; past them, the first
PAST_CAP_PER_NAME calls of each syscall name, so a flood of one call (probes, failed connects)
cannot push a later exec out of sight; the rest are counted (`skipped`). What it could not read
is in the counts, so the analysis can keep the verdict from clean; no call it read is dropped
(a resume without its start, or a start never resumed, is still a call, with what is known).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_PREFIX = re.compile(r"^(\d{1,10})[ \t]+(\d{1,12}\.\d{1,9})[ \t]+(.*)$", re.S)
# "???": strace's name for a call it could not read the number of (a thread exiting in it)
_CALL = re.compile(r"^([a-z_0-9]{1,64}|\?\?\?)\((.*)$", re.S)
_RESUMED = re.compile(r"^<\.\.\. ([a-z_0-9]{1,64}|\?\?\?) resumed>(.*)$", re.S)
_EXITED = re.compile(r"^\+\+\+ exited with (\d{1,10}) \+\+\+$")
_KILLED = re.compile(r"^\+\+\+ killed by (SIG[A-Z0-9_]{1,16})(?: \(core dumped\))? \+\+\+$")
_SIGNAL = re.compile(r"^--- (SIG[A-Z0-9_]{1,16}) (.*)---$", re.S)
# strace's own shapes for a stop (group-stop) and for a call it stopped tracing mid-way when it
# detached: the call happened, its result is unknown
_STOPPED = re.compile(r"^--- stopped by (SIG[A-Z0-9_]{1,16}) ---$")
DETACHED = " <detached ...>"
_RESULT = re.compile(
    r"^(.*)\)[ \t]+=[ \t]+(-?\d{1,20}|0x[0-9a-f]{1,16}|\?)(?:[ \t]+([A-Z][A-Z0-9_]{0,31}))?(.*)$",
    re.S,
)
_STRING = re.compile(r'"((?:\\x[0-9a-f]{2})*)"(\.\.\.)?')
_LONG_DIGITS = re.compile(r"\d{41,}")
_ARG_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[()\[\]{},]')
UNFINISHED = " <unfinished ...>"
_AT_START = frozenset({"clone", "clone3", "fork", "vfork"})

MAX_LINES = 400_000  # calls kept in full: bounds the host's memory
PAST_CAP_PER_NAME = 1000  # past MAX_LINES, calls kept of each syscall name
MAX_SIGNALS = 10_000  # signal deliveries kept; the rest are counted
MAX_LINE_BYTES = 1 << 20  # strace prints far less (-s 256); a longer line is read from its head


@dataclass(frozen=True)
class Syscall:
    pid: int
    time: float
    name: str
    args: tuple[str, ...]
    result: str  # the return value as printed ("?" when unknown); at most 20 digits
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
    malformed: int = 0  # lines not of strace's shapes (every kind of unreadable line)
    cut_mid_line: bool = False
    first_pid: int | None = None
    truncated: bool = False  # more calls than the parser keeps
    skipped: int = 0  # calls (and signals) read but not kept, past the caps
    oversized: int = 0  # lines longer than MAX_LINE_BYTES, read from their head
    orphans: int = 0  # resumes without their start, starts superseded before their resume
    unescaped: int = 0  # quotes that do not open a -xx string (not strace's own output)
    examples: list[str] = field(default_factory=list)  # the first lines not read, cut short
    unfinished: int = 0  # calls still unfinished at the end (kept, with result "?")

    def _first(self) -> str:
        """The first lines not read, as evidence (the views neutralise them)."""
        return f" (the first: {'; '.join(repr(e) for e in self.examples)})" if self.examples else ""

    def problems(self) -> list[str]:
        """What the parser could not read, with counts (empty when it read every line)."""
        counts = [
            (
                self.skipped,
                f"call(s) not kept past the parser's cap of {MAX_LINES} "
                f"(then {PAST_CAP_PER_NAME} of each syscall)",
            ),
            (self.oversized, f"line(s) longer than {MAX_LINE_BYTES} bytes read only in part"),
            (self.orphans, "call(s) resumed without their start or never resumed"),
            (self.unescaped, "line(s) with quotes strace -xx does not print"),
            (self.malformed, "line(s) not in strace's format" + self._first()),
        ]
        return [f"{n} {what}" for n, what in counts if n]


EXAMPLES = 3  # lines not read kept as evidence
EXAMPLE_CHARS = 120


def decode_string(token: str) -> str:
    """A `-xx` string token ("\\x2f\\x65...") as text; other tokens unchanged."""
    m = _STRING.fullmatch(token.strip())
    if not m:
        return token.strip()
    raw = bytes.fromhex(m.group(1).replace("\\x", ""))
    text = raw.decode("utf-8", "backslashreplace")  # no lone surrogates: the report is UTF-8
    return text + ("..." if m.group(2) else "")


def split_args(text: str) -> tuple[str, ...]:
    """Split an argument list at top-level commas (outside quotes and brackets)."""
    out: list[str] = []
    depth = 0
    start = 0
    for m in _ARG_TOKENS.finditer(text):
        c = m.group()
        if len(c) != 1:
            continue  # a quoted string: its commas and brackets are text
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            out.append(text[start : m.start()].strip())
            start = m.end()
    last = text[start:].strip()
    if last or out:
        out.append(last)
    return tuple(out)


def parse(log: bytes) -> Trace:
    """Every line of the log, in bounded memory; never raises on what the log holds."""
    trace = Trace()
    parser = _Parser(trace)
    pos, size = 0, len(log)
    while pos < size:
        end = log.find(b"\n", pos)
        if end < 0:
            end = size
            trace.cut_mid_line = True
        head = log[pos : min(end, pos + MAX_LINE_BYTES)]
        oversized = end - pos > MAX_LINE_BYTES
        unfinished = oversized and log[max(pos, end - len(UNFINISHED)) : end] == UNFINISHED.encode()
        parser.line(head.decode("ascii", "replace"), oversized, unfinished)
        pos = end + 1
    parser.finish()
    return trace


class _Parser:
    """The state between lines: calls started and not yet resumed, per process."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.pending: dict[int, tuple[float, str, str]] = {}
        self.past_cap: dict[str, int] = {}  # calls kept past MAX_LINES, by name

    def keep(self, call: Syscall) -> None:
        t = self.trace
        if len(t.calls) >= MAX_LINES:
            kept = self.past_cap.get(call.name, 0)
            if kept >= PAST_CAP_PER_NAME or len(self.past_cap) >= 512:
                t.truncated = True
                t.skipped += 1
                return
            self.past_cap[call.name] = kept + 1
        t.calls.append(call)

    def line(self, line: str, oversized: bool = False, unfinished: bool = False) -> None:
        t = self.trace
        before = t.malformed
        try:
            self._checked(line, oversized, unfinished)
        finally:
            if t.malformed > before and len(t.examples) < EXAMPLES:
                t.examples.append(line[:EXAMPLE_CHARS])

    def _checked(self, line: str, oversized: bool, unfinished: bool) -> None:
        t = self.trace
        try:
            if oversized:
                t.oversized += 1
                t.malformed += 1
            if _LONG_DIGITS.search(line):  # strace prints no number this long
                t.malformed += 1
                line = _LONG_DIGITS.sub(lambda m: m.group()[:20], line)
            if '"' in _STRING.sub("", line):
                t.unescaped += 1
                t.malformed += 1
            self._line(line, oversized, unfinished)
        except Exception:  # a shape the patterns let through and the code did not expect
            t.malformed += 1

    def _line(self, line: str, oversized: bool, unfinished: bool) -> None:
        t = self.trace
        m = _PREFIX.match(line)
        if not m:
            if line.strip():
                t.malformed += 1
            return
        pid, ts, rest = int(m.group(1)), float(m.group(2)), m.group(3)
        if t.first_pid is None:
            t.first_pid = pid
        if rest.startswith("+++"):
            self._exit(pid, ts, rest)
        elif rest.startswith("---"):
            sm = _SIGNAL.match(rest) or _STOPPED.match(rest)
            if sm and sm.re is _STOPPED:
                sm = None if len(t.signals) >= MAX_SIGNALS else sm
                if sm is not None:
                    t.signals.append(SignalDelivery(pid, ts, sm.group(1), "stopped"))
                    return
            if sm and len(t.signals) < MAX_SIGNALS:
                t.signals.append(SignalDelivery(pid, ts, sm.group(1), sm.group(2).strip()[:512]))
            elif sm:
                t.truncated = True
                t.skipped += 1
            else:
                t.malformed += 1
        elif rest.startswith("<..."):
            self._resumed(pid, ts, rest)
        else:
            self._call(pid, ts, rest, oversized, unfinished)

    def _call(self, pid: int, ts: float, rest: str, oversized: bool, unfinished: bool) -> None:
        cm = _CALL.match(rest)
        if not cm:
            self.trace.malformed += 1
            return
        name, body = cm.group(1), cm.group(2)
        if body.endswith(DETACHED):  # strace let go of the process in the call: it happened
            self._flush(pid)
            self.trace.unfinished += 1
            self.keep(Syscall(pid, ts, name, split_args(body.removesuffix(DETACHED)), "?"))
            return
        if body.endswith(UNFINISHED) or unfinished:
            self._flush(pid)  # strace resumes a call before the same process starts another
            self.pending[pid] = (ts, name, body.removesuffix(UNFINISHED))
            return
        call = _finish(pid, ts, name, body)
        if call is None:  # a call cut short (an oversized line): its start is evidence
            self.trace.malformed += 0 if oversized else 1
            call = Syscall(pid, ts, name, split_args(body), "?")
        self.keep(call)

    def _resumed(self, pid: int, ts: float, rest: str) -> None:
        t = self.trace
        rm = _RESUMED.match(rest)
        if not rm:
            t.malformed += 1
            return
        name, tail = rm.group(1), rm.group(2)
        start = self.pending.get(pid)
        if start is not None and start[1] == name:
            del self.pending[pid]
            # placed where its effect on the process happens (runner.telemetry.syscalls reads
            # calls in that order): when it completes (the descriptor an accept returns did
            # not exist before, and its number may have been another socket's meanwhile),
            # but a clone at its start, since the child runs before the parent's call returns
            at = start[0] if name in _AT_START else ts
            ts, body = at, start[2] + tail
        else:  # no start to join: the call still happened, with the arguments unknown
            t.orphans += 1
            body = tail[1:] if tail.startswith(",") else tail
        call = _finish(pid, ts, name, body)
        if call is None:
            t.malformed += 1
            call = Syscall(pid, ts, name, (), "?")
        self.keep(call)

    def _flush(self, pid: int) -> None:
        start = self.pending.pop(pid, None)
        if start is not None:
            self.trace.orphans += 1
            self.keep(Syscall(pid, start[0], start[1], split_args(start[2]), "?"))

    def _exit(self, pid: int, ts: float, rest: str) -> None:
        t = self.trace
        em = _EXITED.match(rest)
        if em:
            t.exits[pid] = ProcessExit(pid, ts, int(em.group(1)))
            return
        km = _KILLED.match(rest)
        if km:
            t.exits[pid] = ProcessExit(pid, ts, None, km.group(1))
            return
        t.malformed += 1

    def finish(self) -> None:
        t = self.trace
        # Calls still unfinished at the end (the process was killed inside them) are kept.
        for pid, (ts, name, body) in self.pending.items():
            t.unfinished += 1
            self.keep(Syscall(pid, ts, name, split_args(body), "?"))
        self.pending.clear()
        # In start order: a clone comes before anything its child does.
        t.calls.sort(key=lambda c: c.time)


def _finish(pid: int, ts: float, name: str, body: str) -> Syscall | None:
    rm = _RESULT.match(body)
    if not rm:
        return None
    args_text, result, errno, tail = rm.group(1), rm.group(2), rm.group(3) or "", rm.group(4)
    return Syscall(pid, ts, name, split_args(args_text), result, errno, "(INJECTED)" in tail)
