"""Property-based fuzzing of the tracer's readers of hostile data: the path normaliser and the
syscall-to-event pipeline (descriptor and working-directory bookkeeping included) never raise,
never hang, and never yield a path with `..`, `.` or an empty component; normalising twice
gives what normalising once gave."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.rules.evaluation import HostFacts, evaluate
from runner.telemetry import paths, syscalls, tracer
from runner.telemetry import strace as _strace
from runner.telemetry.events import Event, Phase, PhaseClock
from tests.fixtures.traces import T0, line, s

PARTS = ["", ".", "..", "a", "b", "tmp", "airlock", "run", "proc", "self", "thread-self", "task"]
PARTS += ["fd", "cwd", "root", "dev", "stdin", "var", "10", "11", "20", "5", "l", "x", "é", "\x00"]
part = st.sampled_from(PARTS) | st.text(max_size=6)
raw_path = st.builds(
    lambda lead, ps: ("/" if lead else "") + "/".join(ps),
    st.booleans(),
    st.lists(part, max_size=12),
)
PIDS = [10, 11, 20, 30]


def _clean(p: str) -> str:
    return paths.normalise("/" + p).path


@dataclass
class Ctx:
    """A consistent context: normalised cwds and descriptor paths, groups that are fixed points."""

    cwds: dict[int, str] = field(default_factory=dict)
    fds: dict[tuple[int, int], str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    groups: dict[int, int] = field(default_factory=lambda: {10: 10, 11: 10, 20: 20})

    def cwd_of(self, pid: int) -> str | None:
        return self.cwds.get(pid)

    def fd_path(self, pid: int, fd: int) -> str | None:
        return self.fds.get((pid, fd))

    def group_of(self, pid: int) -> int | None:
        return self.groups.get(pid)

    def link(self, path: str) -> str | None:
        return self.links.get(path)

    def is_link_name(self, name: str) -> bool:
        return any(k.rsplit("/", 1)[-1] == name for k in self.links)


contexts = st.builds(
    Ctx,
    cwds=st.dictionaries(st.sampled_from(PIDS), raw_path.map(_clean), max_size=4),
    fds=st.dictionaries(
        st.tuples(st.sampled_from(PIDS), st.integers(0, 12)), raw_path.map(_clean), max_size=6
    ),
    links=st.dictionaries(raw_path.map(_clean), raw_path, max_size=6),
)


def _components_ok(path: str) -> bool:
    body = path[1:] if path.startswith("/") else path.split("/", 1)[1] if "/" in path else ""
    return body == "" or all(c not in ("", ".", "..") for c in body.split("/"))


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_path, contexts, st.sampled_from(PIDS), st.booleans(), st.sampled_from(["/", None]))
def test_normalise_never_raises_is_clean_and_idempotent(
    raw: str, ctx: Ctx, pid: int, follow: bool, base: str | None
) -> None:
    got = paths.normalise(raw, pid, ctx, base, "fd 3", follow)
    assert isinstance(got.path, str) and len(got.path) <= 16 * paths.MAX_INPUT
    assert "//" not in got.path and _components_ok(got.path), got
    if got.known:
        assert got.path.startswith("/")
        assert paths.normalise(got.path, pid, ctx, base, "fd 3", follow) == got
    else:
        assert got.path.startswith(("/", "<"))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.integers(-5, 1 << 40))
def test_normalise_of_any_text(raw: str, pid: int) -> None:
    got = paths.normalise(raw, pid, Ctx(), "/tmp")
    assert _components_ok(got.path)


# --- the whole pipeline: random calls in strace's shapes ----------------------------------------

NAMES = sorted(tracer.FAMILY_OF)
FD = st.sampled_from(["3", "4", "5", "9", "11", "77", "-1", "AT_FDCWD", "x"])
FLAGS = st.sampled_from(
    [
        "O_RDONLY",
        "O_WRONLY|O_CREAT",
        "O_RDONLY|O_DIRECTORY",
        "F_DUPFD_CLOEXEC",
        "AT_EMPTY_PATH",
        "SOCK_CLOEXEC",
        "CLONE_THREAD|CLONE_FILES",
        "F_SETFD",
        "FD_CLOEXEC",
        "MFD_CLOEXEC",
        "0",
    ]
)
ADDR = st.sampled_from(
    [
        "NULL",
        f"{{sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr({s('127.0.0.1')})}}",
        f"{{sa_family=AF_UNIX, sun_path={s('/airlock/run/worker.sock')}}}",
        f"{{sa_family=AF_UNIX, sun_path={s('rel.sock')}}}",
        "{msg_name=NULL, msg_control=[{cmsg_type=SCM_RIGHTS, cmsg_data=[3]}]}",
        "[3, 4]",
        "{sa_family=AF_",
    ]
)
ARG = FD | FLAGS | ADDR | raw_path.map(s) | st.text(max_size=20)
RESULT = st.sampled_from(
    ["0", "3", "5", "11", "20", "-1 EPERM (x)", "?", "-1 EPERM (x) (INJECTED)"]
)


@st.composite
def calls(draw: st.DrawFn) -> str:
    pid = draw(st.sampled_from(PIDS))
    name = draw(st.sampled_from([*NAMES, "close", "bogus"]))
    args = ", ".join(draw(st.lists(ARG, max_size=6)))
    dt = draw(st.floats(-1.0, 9.0, allow_nan=False))
    if draw(st.integers(0, 9)) == 0:
        return line(pid, dt, f"{name}({args} <unfinished ...>")
    return line(pid, dt, f"{name}({args}) = {draw(RESULT)}")


class _Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(self, event: Event) -> None:
        self.events.append(event)


CLOCK = PhaseClock(((T0 - 1, Phase.STARTUP), (T0 + 1, Phase.LOAD), (T0 + 5, Phase.INFER)))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(calls(), max_size=40))
def test_tracer_events_never_raise_on_any_calls(lines: list[str]) -> None:
    sink = _Sink()
    trace = _strace.parse("".join(lines).encode("utf-8", "replace"))
    syscalls.tracer_events(trace, CLOCK, sink, "/airlock/run/worker.sock")
    evaluate(sink.events, HostFacts())
    for e in sink.events:
        path = e.detail.get("path")
        if isinstance(path, str) and path:
            assert _components_ok(path), e
    # a reader that failed on a call says so (a finding), it never hides the call
    assert all(e.kind != "tracer.untracked" or e.count >= 1 for e in sink.events)
