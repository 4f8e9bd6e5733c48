"""Property-based fuzzing of the parsers of the sandbox's evidence (hostile input): the tracer's
log (strace.parse), the worker's audit log (parse_audit_log) and the event builders over them
(tracer_events, worker_events, and the whole report). None of them raises, each stays within
its bounds, and what could not be read is counted; the report always serialises."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.controller.engine import ContainerState
from runner.policy import Policy
from runner.report import ModelInfo
from runner.rules import analysis as _analysis
from runner.rules.audit_log import AuditEvents, parse_audit_log
from runner.telemetry import events as telemetry
from runner.telemetry import folding
from runner.telemetry import strace as _strace
from runner.telemetry.events import Phase
from tests.fixtures.traces import T0, s

FUZZ = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
CLOCK = telemetry.PhaseClock(((T0 - 1, Phase.STARTUP), (T0 + 1, Phase.LOAD), (T0 + 5, Phase.INFER)))
NAMES = ["execve", "clone", "clone3", "vfork", "openat", "open", "connect", "sendto", "socket"]
NAMES += ["bind", "listen", "kill", "tgkill", "setuid", "mount", "unlink", "renameat2", "linkat"]

# --- building blocks of strace-shaped lines, hostile ones among them -------------------------

numbers = st.one_of(
    st.integers(-(10**6), 10**12).map(str),
    st.sampled_from(["9" * 5000, "-0", "nan", "inf", "1e999", "0x7fff", "00000000000000000000001"]),
)
times = st.one_of(
    st.floats(T0 - 10, T0 + 10).map(lambda t: f"{t:.6f}"),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1" * 5000 + ".5", "-1.0", "1.", ".5"]),
)
strings = st.one_of(
    st.text(max_size=40).map(s),
    st.text(max_size=20).map(lambda t: f'"{t}"'),  # unescaped: not strace -xx's own
    st.binary(max_size=20).map(lambda b: '"' + "".join(f"\\x{c:02x}" for c in b) + '"...'),
)
atoms = st.one_of(
    strings,
    numbers,
    st.sampled_from(["AT_FDCWD", "O_WRONLY|O_CREAT", "CLONE_THREAD", "NULL", "AF_INET", "AF_UNIX"]),
    st.tuples(numbers, strings).map(
        lambda t: f"{{sa_family=AF_INET, sin_port=htons({t[0]}), sin_addr=inet_addr({t[1]})}}"
    ),
    strings.map(lambda x: f"{{sa_family=AF_UNIX, sun_path={x}}}"),
    st.lists(strings, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
    st.sampled_from(["(", ")", "[", "]", "{", "}", '"', "\\", ",", "\x00", "\r", "\ufffd"]),
)
args = st.lists(atoms, max_size=6).map(", ".join)
results = st.one_of(
    numbers,
    st.sampled_from(["?", "-1 ENOENT (No such file or directory)", "-1 EPERM (x) (INJECTED)"]),
)
name = st.one_of(st.sampled_from(NAMES), st.text("abcz_09", min_size=1, max_size=70))
hex_args = st.lists(st.one_of(st.text(max_size=30).map(s), st.sampled_from(["AT_FDCWD", "3"])))
well_formed = st.tuples(
    st.sampled_from(NAMES), hex_args.map(", ".join), st.integers(-1, 60).map(str)
).map(lambda t: f"{t[0]}({t[1]}) = {t[2]}")
rests = st.one_of(
    well_formed,
    well_formed,
    st.tuples(name, args, results).map(lambda t: f"{t[0]}({t[1]}) = {t[2]}"),
    st.tuples(name, args).map(lambda t: f"{t[0]}({t[1]} <unfinished ...>"),
    st.tuples(name, args, results).map(lambda t: f"<... {t[0]} resumed>{t[1]}) = {t[2]}"),
    numbers.map(lambda n: f"+++ exited with {n} +++"),
    st.sampled_from(["+++ killed by SIGKILL +++", "+++ killed by SIGSEGV (core dumped) +++"]),
    st.text(max_size=30).map(lambda t: f"--- SIGCHLD {{{t}}} ---"),
    st.text(max_size=60),
)
pids = st.one_of(st.integers(1, 40).map(str), st.integers(1, 40).map(str), numbers)
good_times = st.floats(T0 - 2, T0 + 8).map(lambda t: f"{t:.6f}")
lines = st.tuples(
    pids,
    st.sampled_from([" ", " ", "  ", "\t", ""]),
    st.one_of(good_times, good_times, times),
    rests,
).map(lambda t: f"{t[0]}{t[1]} {t[2]} {t[3]}")
logs = st.tuples(
    st.lists(lines, max_size=40).map("\n".join), st.sampled_from(["", "\n", "\r\n", "\x00"])
).map(lambda t: (t[0] + t[1]).encode("utf-8", "surrogatepass"))


def _check_trace(trace: _strace.Trace) -> None:
    assert trace.malformed >= 0 and trace.orphans >= 0 and trace.skipped >= 0
    assert all(isinstance(p, str) for p in trace.problems())
    assert [c.time for c in trace.calls] == sorted(c.time for c in trace.calls)
    for c in trace.calls:
        assert 0 <= c.pid < 10**10 and math.isfinite(c.time) and len(c.result) <= 21
        assert c.result == "?" or int(c.result, 0) is not None


@FUZZ
@given(st.binary(max_size=4096))
def test_strace_parse_on_random_bytes(log: bytes) -> None:
    _check_trace(_strace.parse(log))


@FUZZ
@given(logs)
def test_strace_parse_and_tracer_events_on_strace_shaped_lines(log: bytes) -> None:
    trace = _strace.parse(log)
    _check_trace(trace)
    folder = folding.new_folder(limit=8)
    telemetry.tracer_events(trace, CLOCK, folder, "/airlock/run/worker.sock")
    out = folder.events
    assert len(out) <= folder.distinct and all(e.count >= 1 for e in out)


# --- the audit log -------------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**30), 10**30),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=30),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=20,
)
shaped = st.tuples(
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), json_values),
    st.one_of(st.sampled_from(["open", "os.system", "airlock.audit.dropped"]), json_values),
    st.one_of(st.lists(json_values, max_size=8), json_values),
    st.one_of(st.integers(-5, 50), st.none(), json_values),
).map(lambda t: json.dumps(list(t)).encode())
valid = st.tuples(
    st.floats(T0 - 2, T0 + 8),
    st.sampled_from(["open", "os.system", "socket.connect", "airlock.audit.dropped", "compile"]),
    st.lists(st.one_of(st.text(max_size=40), st.integers().map(str)), max_size=8),
    st.integers(0, 40),
).map(lambda t: json.dumps(list(t)).encode())
audit_lines = st.one_of(
    valid,
    valid,
    shaped,
    st.binary(max_size=200),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.sampled_from([b"[" + b"9" * 5000 + b', "open", [], 0]', b'[1.0, "\xff", [], 0]']),
)
audit_files = st.tuples(
    st.lists(audit_lines, max_size=30).map(b"\n".join), st.sampled_from([b"", b"\n"])
).map(lambda t: t[0] + t[1])


def _parse_bytes(data: bytes) -> tuple[AuditEvents, int]:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "audit.jsonl"
        p.write_bytes(data)
        return parse_audit_log(p)


@FUZZ
@given(audit_files)
def test_parse_audit_log_on_hostile_lines(data: bytes) -> None:
    events, lost = _parse_bytes(data)
    r = events.read
    assert lost >= 0 and len(events) + r.malformed + r.oversized + r.unread_events <= r.lines
    for t, name, ev_args in events:
        assert isinstance(t, float) and math.isfinite(t) and isinstance(name, str)
        assert len(name) <= 64 and len(ev_args) <= 6
        assert all(isinstance(a, str) and len(a) <= 1100 for a in ev_args)
    assert all(isinstance(x, str) for x in r.lost() + r.tampered())


# --- the event builders and the whole report ---------------------------------------------------

items = st.one_of(
    st.tuples(
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=70),
        st.lists(st.text(max_size=300), max_size=8),
    ),
    st.tuples(json_values, json_values, json_values),
    json_values,
)


@FUZZ
@given(st.lists(items, max_size=20))
def test_worker_events_on_anything_count_what_they_skip(raw: list[object]) -> None:
    folder = folding.new_folder()
    bad = telemetry.worker_events(raw, CLOCK, folder)  # type: ignore[arg-type]
    assert 0 <= bad <= len(raw) and len(folder.events) <= len(raw) - bad


@FUZZ
@given(logs, audit_files)
def test_the_report_always_builds_and_serialises(log: bytes, audit: bytes) -> None:
    c = _analysis.Collected(
        policy=Policy(),
        model=ModelInfo(path="/m", format="pickle", detected_by="test", size_bytes=1, files=[]),
    )
    c.marks = [(T0 - 1, Phase.STARTUP), (T0 + 1, Phase.LOAD), (T0 + 5, Phase.INFER)]
    c.trace_log = log
    c.final_state = ContainerState("exited", False, 0, False, "")
    c.worker_events, c.worker_events_dropped = _parse_bytes(audit)
    report = _analysis.build(c)
    json.loads(report.model_dump_json())
    read = c.worker_events.read
    if read.lost() or (log and _strace.parse(log).problems()):
        assert report.verdict.value != "clean"
