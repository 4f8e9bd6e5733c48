"""The worker's audit log, read as hostile input: bounded, never raising, its losses counted.

The worker writes one JSON line per event, `[time, event, [args...], number, pid]`, numbered
from 0 in each process (a forked child numbers its own), and, when its own cap drops events,
`airlock.audit.dropped` lines with the count so far (see runner/worker/audit.py). Everything in
the file is the model's to write: the model shares the worker's process and the run directory is
writable from inside. So the read says what it could not take (bytes past MAX_AUDIT_BYTES, lines
past MAX_AUDIT_EVENTS, lines too long, too deep or not of the shape, a last line cut) and what
shows the log was tampered with (missing, not a regular file, numbers that skip, restart or are
absent): the analysis turns both into findings, so a silenced or flooded log keeps the verdict
from clean, and the tracer's evidence stands."""

from __future__ import annotations

import json
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from runner.errors import untrusted_text

MAX_AUDIT_BYTES = 8 << 20
MAX_AUDIT_EVENTS = 20_000
PAST_CAP_PER_NAME = 100  # past MAX_AUDIT_EVENTS, events kept of each name (so a flood of one
MAX_NAMES_PAST_CAP = 256  # name cannot hide a later event of another), of so many names
MAX_LINE_BYTES = 64 << 10  # the writer's lines are far shorter (six arguments of 256 chars)
DROPPED_EVENT = "airlock.audit.dropped"  # as runner.worker.audit writes it
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_MAX_SEQ = 1 << 62
MAX_WRITERS = 4096  # processes whose numbering is followed (the pids limit is far lower)
MAX_ARG_CHARS = 1100  # the writer's arguments: 256 chars, a pickle global's names up to 1024

AuditEvent = tuple[float, str, list[str]]


@dataclass
class AuditRead:
    """What reading the log found besides its events."""

    present: bool = True  # the file was there
    not_regular: str = ""  # what stood at its place instead of a regular file
    size: int = 0
    bytes_unread: int = 0  # past MAX_AUDIT_BYTES
    lines: int = 0
    malformed: int = 0  # not JSON, not of the shape, or nested deeper than the shape
    oversized: int = 0  # longer than MAX_LINE_BYTES
    unread_events: int = 0  # events past MAX_AUDIT_EVENTS not kept (read and counted)
    cut_mid_line: bool = False
    writer_dropped: int = 0  # the largest count of the writer's own drop records
    numbered: int = 0
    unnumbered: int = 0  # lines without a number: not the writer's (forged)
    missing_numbers: int = 0  # numbers skipped: lines removed, the log cut or rewritten
    out_of_order: int = 0  # numbers that go back: lines rewritten or forged

    def lost(self) -> list[str]:
        """Events the log or its read lost, with counts."""
        counts = [
            (self.writer_dropped, "event(s) the worker did not write (its log's cap, at least)"),
            (self.bytes_unread, f"byte(s) past the host's read cap of {MAX_AUDIT_BYTES}"),
            (
                self.unread_events,
                f"event(s) not kept past the host's cap of {MAX_AUDIT_EVENTS} "
                f"(then {PAST_CAP_PER_NAME} of each name)",
            ),
            (self.oversized, f"line(s) longer than {MAX_LINE_BYTES} bytes"),
            (self.malformed, "line(s) that do not parse"),
        ]
        out = [f"{n} {what}" for n, what in counts if n]
        return out + (["the last line is cut"] if self.cut_mid_line else [])

    def tampered(self) -> list[str]:
        """Signs the log was removed, replaced or rewritten, with counts."""
        if not self.present:
            return ["the audit log is missing (the worker creates it before any model code)"]
        if self.not_regular:
            return [f"the audit log was replaced: {self.not_regular}"]
        if self.lines and not self.numbered:
            return [f"none of its {self.lines} line(s) is a numbered line of the worker's"]
        counts = [
            (self.missing_numbers, "numbered line(s) missing (removed, cut or rewritten)"),
            (self.out_of_order, "line number(s) out of order (rewritten or forged)"),
            (self.unnumbered, "line(s) without the writer's number (forged)"),
        ]
        return [f"{n} {what}" for n, what in counts if n]


class AuditEvents(list[AuditEvent]):
    """The events, and in `read` what the read found besides them (kept with the list, since
    teardown stores the pair parse_audit_log returns as it is)."""

    read: AuditRead

    def __init__(self, read: AuditRead | None = None) -> None:
        super().__init__()
        self.read = read or AuditRead()


def parse_audit_log(path: Path) -> tuple[AuditEvents, int]:
    """The worker's audit events from its JSONL file, and how many events were lost (lines
    that did not parse or were not read, and the writer's own drops)."""
    out = AuditEvents()
    r = out.read
    data = _read(path, r)
    if data is not None:
        _parse(data, out)
    lost = r.writer_dropped + r.unread_events + r.oversized + r.malformed
    return out, lost


def _read(path: Path, r: AuditRead) -> bytes | None:
    """The first MAX_AUDIT_BYTES of the file, if it is a regular file: never through a link,
    never blocking on a FIFO or a device put in its place."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        r.present = False
        return None
    except OSError as e:
        r.not_regular = "a symbolic link" if path.is_symlink() else f"unreadable ({e.strerror})"
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            r.not_regular = f"not a regular file (mode {stat.filemode(st.st_mode)})"
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_AUDIT_BYTES)
        r.size = max(st.st_size, len(data))
        r.bytes_unread = max(0, st.st_size - len(data))
        return data
    except OSError as e:
        r.not_regular = f"unreadable ({e.strerror})"
        return None
    finally:
        os.close(fd)


def _parse(data: bytes, out: AuditEvents) -> None:
    r = out.read
    expected: dict[int | None, int] = {}  # the next number of each writer (pid)
    past_cap: dict[str, int] = {}
    pos, size = 0, len(data)
    while pos < size:
        end = data.find(b"\n", pos)
        if end < 0:
            end = size
            r.cut_mid_line = r.bytes_unread == 0  # a cut at the read cap is counted there
        raw, pos = data[pos:end], end + 1
        if not raw.strip():
            continue
        r.lines += 1
        if len(raw) > MAX_LINE_BYTES:
            r.oversized += 1
            continue
        expected = _line(raw, out, expected, past_cap)


def _keep(out: AuditEvents, event: AuditEvent, past_cap: dict[str, int]) -> None:
    if len(out) >= MAX_AUDIT_EVENTS:
        kept = past_cap.get(event[1], 0)
        if kept >= PAST_CAP_PER_NAME or (not kept and len(past_cap) >= MAX_NAMES_PAST_CAP):
            out.read.unread_events += 1
            return
        past_cap[event[1]] = kept + 1
    out.append(event)


def _line(
    raw: bytes, out: AuditEvents, expected: dict[int | None, int], past_cap: dict[str, int]
) -> dict[int | None, int]:
    """One line into out; the next line number expected of each writer."""
    r = out.read
    entry = _decode(raw)
    if entry is None:
        r.malformed += 1
        return expected
    t, name, args, seq, pid = entry
    if seq is None:
        r.unnumbered += 1
    elif pid in expected or len(expected) < MAX_WRITERS:
        r.numbered += 1
        want = expected.get(pid, 0)
        if seq > want:
            r.missing_numbers += seq - want
        elif seq < want:
            r.out_of_order += 1
        expected[pid] = max(want, seq + 1)
    else:  # more writers than a model's processes could be: not the worker's
        r.unnumbered += 1
    if name == DROPPED_EVENT:
        count = args[0] if args else ""
        if count.isascii() and count.isdigit() and len(count) <= 18:  # "²" is a digit too
            r.writer_dropped = max(r.writer_dropped, int(count))
        return expected
    _keep(out, (t, name, args), past_cap)
    return expected


def _decode(raw: bytes) -> tuple[float, str, list[str], int | None, int | None] | None:
    """`[time, name, [args], number, pid]` (number and pid may be absent), or None for anything
    else."""
    shape = _STRINGS.sub(b"", raw)
    if shape.count(b"[") > 2 or b"{" in shape:  # deeper than the shape: never parsed
        return None
    try:
        entry = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        return None
    if not isinstance(entry, list) or len(entry) not in (3, 4, 5):
        return None
    t, name, args = entry[0], entry[1], entry[2]
    seq = entry[3] if len(entry) >= 4 else None
    pid = entry[4] if len(entry) == 5 else None
    if pid is not None and (type(pid) is not int or not 0 < pid < 1 << 32):
        return None
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        return None
    if not isinstance(name, str) or not isinstance(args, list):
        return None
    if seq is not None and (type(seq) is not int or not 0 <= seq < _MAX_SEQ):
        return None
    try:
        text_args = [
            untrusted_text(a if isinstance(a, str) else repr(a), MAX_ARG_CHARS) for a in args[:6]
        ]
    except ValueError:  # a number too long to print
        return None
    return float(t), untrusted_text(name, 64), text_args, seq, pid
