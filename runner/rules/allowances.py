"""Allowances: what the library the host loads a model with does on its own, every time, that
the rules would otherwise count as the model's. Each is keyed on what the host itself knows (the
format it detected by content, the formats it had the worker warm before the model came), never
on anything the worker or the model says, and is as narrow as the library's own act.

One today. A GGUF model is loaded with xllamacpp, and every xllamacpp Server starts llama.cpp's
built-in HTTP front: it binds a TCP socket to 127.0.0.1, port 0 (the kernel picks one), and
listens on it, in the thread that made the Server. No setting turns the front off, and a bind
that fails fails the load; a Unix-socket host (a name ending in .sock) would still be a bind, of
a socket file, so the loopback listener is the narrowest there is. It is reachable only from
inside the sandbox (the network is none), and reaching it is a connect, judged on its own.

Allowed, so not a finding (AL103, and not counted by AL901): in the load phase, from the tracer,
a bind of an AF_INET socket to 127.0.0.1 or an AF_INET6 one to ::1, port 0, that succeeded, and
a listen that succeeded on a socket the tracer saw so bound, by a thread that made such a bind;
at most SERVERS of each, SERVERS being how many Servers the worker makes in the load phase:
loaders_gguf.load's own, and loaders_gguf.warm's tiny one when the host did not have the worker
warm GGUF in startup (a pooled sandbox pre-started for other formats warms it in load).

Everything else is still a finding: another address or port, a failed call, a listen on a
socket not so bound (listening on an unbound socket binds every address), any in the infer or
teardown phase, an event folded from distinct ones, any format but GGUF, and more binds or
listens than SERVERS (then none is allowed: which is the library's cannot be told). And if
anyone used an IP socket at all in the run (an accept on an IP listener, an IP connect or send,
a Python socket's bind, connect or sendto: findings of their own), none is allowed either, so
the listeners stand beside them as evidence.
"""

from __future__ import annotations

from collections.abc import Iterable

from runner.telemetry.events import Event, Phase, Source
from runner.worker.shared.formats import Format

KEY = "allowed_as"  # the detail key an allowed event carries (no tracer or worker event has it)
LLAMA_HTTP_FRONT = "llama.cpp's HTTP front (xllamacpp Server): loopback, port 0, load phase"
REASONS = frozenset({LLAMA_HTTP_FRONT})
_LOOPBACK = {"AF_INET": "127.0.0.1", "AF_INET6": "::1"}
_USED = ("net.accept", "net.connect", "net.sendto", "net.sendmsg", "net.sendmmsg")
_PYTHON_USED = ("python.socket.bind", "python.socket.connect", "python.socket.sendto")


def allowed(e: Event) -> bool:
    """The event was allowed by apply() (the rules then pass over it)."""
    return e.source is Source.TRACER and e.detail.get(KEY) in REASONS


def servers_in_load(warmed: Iterable[str]) -> int:
    """The xllamacpp Servers the worker makes in the load phase: the model's, and warm()'s
    when GGUF was not among the formats warmed in startup ('auto': the model's own format,
    which for a GGUF model is GGUF)."""
    return 1 if {"auto", "", Format.GGUF.value} & set(warmed) else 2


def apply(events: list[Event], fmt: str, warmed: Iterable[str]) -> list[Event]:
    """The events, those a library of the host-detected format `fmt` makes on its own marked
    allowed (KEY in their detail: the report still lists them, and says why)."""
    if fmt != Format.GGUF.value or any(_used(e) for e in events):
        return events
    limit = servers_in_load(warmed)
    binds = [i for i, e in enumerate(events) if _loopback_bind(e)]
    threads = {events[i].pid for i in binds}
    listens = [i for i, e in enumerate(events) if _loopback_listen(e, threads)]
    if not binds or _total(events, binds) > limit or _total(events, listens) > limit:
        return events
    marked = set(binds) | set(listens)
    return [_mark(e) if i in marked else e for i, e in enumerate(events)]


def _total(events: list[Event], at: list[int]) -> int:
    return sum(events[i].count for i in at)


def _mark(e: Event) -> Event:
    return e.model_copy(update={"detail": {**e.detail, KEY: LLAMA_HTTP_FRONT}})


def _candidate(e: Event, kind: str) -> bool:
    return (
        e.kind == kind
        and e.source is Source.TRACER
        and e.phase is Phase.LOAD
        and e.result == "ok"
        and "folded_distinct" not in e.detail
    )


def _loopback_bind(e: Event) -> bool:
    d = e.detail
    family = str(d.get("family", ""))
    return (
        _candidate(e, "net.bind")
        and family in _LOOPBACK
        and d.get("address") == _LOOPBACK[family]
        and d.get("port") == 0
        and "path" not in d
    )


def _loopback_listen(e: Event, threads: set[int | None]) -> bool:
    d = e.detail
    family = str(d.get("family", ""))
    return (
        _candidate(e, "net.listen")
        and e.pid is not None
        and e.pid in threads
        and family in _LOOPBACK
        and d.get("local") == f"{_LOOPBACK[family]}:0"
    )


def _used(e: Event) -> bool:
    """Someone used a socket of their own: accepted on an IP one, or connected or sent over
    one (or over a socket the tracer could not name), or Python code bound, connected or sent
    (xllamacpp's front is C++: it makes no such audit event)."""
    if e.source is Source.WORKER:
        return e.kind in _PYTHON_USED
    if e.source is not Source.TRACER or e.kind not in _USED:
        return False
    return e.kind == "net.accept" or e.detail.get("family") in ("AF_INET", "AF_INET6", "?")
