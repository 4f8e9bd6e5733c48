"""The tracer's log as events: each traced syscall goes to the handler of its family
(runner.telemetry.tracer lists the families; a test holds every traced syscall to a handler).

The log is read in start order, and every call updates what is known of its process (its
descriptors, its working directory, the links made; runner.telemetry.procstate), startup-phase
calls included, so later paths and sockets are judged by what they are. Startup-phase calls are
Airlock's own worker starting up (Python, gRPC), before any model byte is read: they are the
baseline and become no event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from runner.telemetry import files, network, processes, tracer
from runner.telemetry import strace as _strace
from runner.telemetry.calls import Call
from runner.telemetry.events import Event, Phase, PhaseClock, Source
from runner.telemetry.procstate import State

Handler = Callable[[Call], Event | None]


class Sink(Protocol):
    def add(self, event: Event) -> None: ...


def _none(c: Call) -> Event | None:
    return None


def _bookkeeping(c: Call) -> Event | None:
    processes.descriptor_call(c)
    return None


def _accept(c: Call) -> Event | None:
    return network.accept_call(c)


def _socketpair(c: Call) -> Event | None:
    network.socketpair_call(c)
    return None


def _table() -> dict[str, Handler]:
    by_family: dict[str, Handler] = {
        "speed": _none,
        "memfd": processes.memfd_event,
        "ipc": network.ipc_event,
        "identity": processes.setid_event,
        "signal": processes.signal_event,
        "reach": processes.reach_event,
        "files": files.open_event,
        "modify": files.modify_event,
        "reach-refused": processes.reach_event,
        "evasion": processes.refused_event,
        "escape": processes.refused_event,
    }
    table = {s: by_family[f] for s, f in tracer.FAMILY_OF.items() if f in by_family}
    table.update(
        {
            **dict.fromkeys(("execve", "execveat"), processes.exec_event),
            **dict.fromkeys(("fork", "vfork", "clone", "clone3"), processes.fork_event),
            **dict.fromkeys(("dup", "dup2", "dup3", "fcntl", "chdir", "fchdir"), _bookkeeping),
            "accept": _accept,
            "accept4": _accept,
            "socketpair": _socketpair,
            "socket": network.socket_event,
            "connect": network.connect_event,
            "bind": network.bind_event,
            "listen": network.listen_event,
            **dict.fromkeys(("sendto", "sendmsg", "sendmmsg"), network.send_event),
        }
    )
    return table


HANDLERS = _table()


def step(call: _strace.Syscall, phase: Phase, state: State, worker_socket: str) -> Event | None:
    """The event of one call (None for none), the state updated by what the call did."""
    state.group(call.pid)
    handler = HANDLERS.get(call.name)
    if handler is None:
        return None
    return handler(Call(call, phase, state, worker_socket))


def tracer_events(
    trace: _strace.Trace, clock: PhaseClock, folder: Sink, worker_socket: str
) -> None:
    state = State(trace.first_pid, worker_socket)
    failed = 0
    last = 0.0
    for call in trace.calls:
        phase = clock.at(call.time)
        last = call.time
        try:
            event = step(call, phase, state, worker_socket)
        except Exception:  # a shape no handler expected: counted, and the run is not clean
            failed += 1
            continue
        if event is not None and phase is not Phase.STARTUP:
            folder.add(event)
    for event in _seccomp_kills(trace, clock):
        folder.add(event)
    if failed:
        state.problems[f"call(s) the tracer's reader could not follow ({failed})"] = failed
    for what, count in sorted(state.problems.items()):
        folder.add(
            Event(
                time=last,
                phase=clock.at(last),
                source=Source.TRACER,
                kind="tracer.untracked",
                summary=f"the tracer's bookkeeping stopped following: {what}",
                count=count,
                detail={"problem": what},
            )
        )


def _seccomp_kills(trace: _strace.Trace, clock: PhaseClock) -> list[Event]:
    """SIGSYS: the seccomp profile killed (or trapped) a call it does not admit, a 32-bit
    (int 0x80) or x32 one, whose names the traced set would not know. Nothing of Airlock's own
    makes one."""
    hits = [
        (x.pid, x.time, "killed by SIGSYS") for x in trace.exits.values() if x.signal == "SIGSYS"
    ]
    hits += [(d.pid, d.time, "sent SIGSYS") for d in trace.signals if d.signal == "SIGSYS"]
    out = []
    for pid, t, what in hits[:1000]:
        phase = clock.at(t)
        if phase is Phase.STARTUP:
            continue
        summary = f"pid {pid} {what}: a syscall of another ABI (int 0x80, x32), refused"
        out.append(
            Event(
                time=t,
                phase=phase,
                source=Source.TRACER,
                kind="priv.evasion",
                summary=summary,
                pid=pid,
                result="killed",
                detail={"signal": "SIGSYS"},
            )
        )
    return out
