"""Syscalls on sockets: creation, connect, bind, listen, accept, and every send.

A send is data leaving the model, whatever the socket: sendto with an address, and sendto,
sendmsg or sendmmsg without one on a connected socket (the destination is the socket's connect,
as the descriptor table remembers it). The worker's own sockets (the gRPC and data-plane sockets
it binds under /airlock/run before the model loads, and the connections it accepts on them)
carry its own traffic on every call: those sends are baseline. Any other socket is the model's;
a send on a socket the tracer never saw made is reported as such.
"""

from __future__ import annotations

import re

from runner.telemetry import paths
from runner.telemetry.calls import NSCD_SOCKETS, Call, number, text
from runner.telemetry.events import DetailValue, Event
from runner.telemetry.procstate import Fd

_SOCKADDR = re.compile(r"sa_family=(AF_[A-Z0-9]{1,16})")
_STRUCT = re.compile(r"\{sa_family=[^{}]{0,1024}\}")
_PORT = re.compile(r"sin6?_port=htons\((\d{1,5})\)")
_INET_ADDR = re.compile(r'inet_addr\(("[^"]*")\)|inet_pton\(AF_INET6, ("[^"]*")')
_SUN_PATH = re.compile(r'sun_path=(@?"[^"]*")')
MAX_DESTINATIONS = 16


def parse_sockaddr(token: str) -> dict[str, DetailValue]:
    fam = _SOCKADDR.search(token)
    out: dict[str, DetailValue] = {"family": fam.group(1) if fam else "?"}
    port = _PORT.search(token)
    if port:
        out["port"] = int(port.group(1))
    addr = _INET_ADDR.search(token)
    if addr:
        out["address"] = text(addr.group(1) or addr.group(2))
    path = _SUN_PATH.search(token)
    if path:
        raw = path.group(1)
        out["address"] = ("@" + text(raw[1:])) if raw.startswith("@") else text(raw)
    return out


def _address(c: Call, token: str) -> dict[str, DetailValue]:
    """A sockaddr, a Unix socket's path resolved like any path (relative to the cwd)."""
    out = parse_sockaddr(token)
    raw = out.get("address")
    if out["family"] == "AF_UNIX" and isinstance(raw, str) and raw and not raw.startswith("@"):
        r = paths.normalise(raw, c.pid, c.state, c.state.cwd_of(c.pid), "cwd")
        out["address"] = r.path
        if r.path != raw:
            out["raw"] = raw[:256]
        if not r.known:
            out["resolved"] = False
    return out


def _where(addr: dict[str, DetailValue]) -> str:
    return f"{addr.get('address', '?')}" + (f":{addr['port']}" if "port" in addr else "")


def _own(c: Call, addr: dict[str, DetailValue]) -> bool:
    return addr.get("family") == "AF_UNIX" and addr.get("address") in c.state.own_paths


def socket_event(c: Call) -> Event | None:
    family, kind = c.arg(0)[:32], c.arg(1)[:64]
    n = c.returned
    if n is not None:
        c.state.set_fd(c.pid, n, Fd("socket", family=family, cloexec="SOCK_CLOEXEC" in kind))
    if family == "AF_UNIX":
        return None
    return c.ev("net.socket", f"socket({family}, {kind})", family=family, type=kind)


def socketpair_call(c: Call) -> None:
    family = c.arg(0)[:32]
    ends = c.arg(3).strip().strip("[]").split(",")
    for end in ends[:2] if c.ok else ():
        n = number(end)
        if n is not None:
            entry = Fd("socket", family=family, pair=True, cloexec="SOCK_CLOEXEC" in c.arg(1))
            c.state.set_fd(c.pid, n, entry)


def accept_call(c: Call) -> Event | None:
    """A connection accepted: the worker's own if its listening socket is. One accepted on an
    IP socket the model (or a library it loaded) listens on is an event: someone reached it."""
    n = c.returned
    if n is None:
        return None
    n_listener = c.fd_arg(0)
    listener = c.state.socket_at(c.pid, n_listener) if n_listener is not None else None
    entry = Fd("socket", family="?", cloexec="SOCK_CLOEXEC" in c.arg(3))
    if listener is not None:
        entry.family, entry.own, entry.local = listener.family, listener.own, listener.local
    c.state.set_fd(c.pid, n, entry)
    if listener is None or listener.own or listener.family not in ("AF_INET", "AF_INET6"):
        return None
    where = listener.local or "?"
    return c.ev(
        "net.accept",
        f"{c.name}(fd {c.arg(0)[:12]}) on {listener.family} {where}: a connection came in",
        family=listener.family,
        local=where,
        fd=n_listener,
    )


def _socket(c: Call) -> Fd | None:
    """The socket argument 0 names (see State.socket_at: a call that succeeded on it)."""
    n = c.fd_arg(0)
    if n is None:
        return None
    if c.ok or c.call.errno == "EINPROGRESS":
        return c.state.socket_at(c.pid, n)
    entry = c.fd(0)
    return entry if entry is not None and entry.kind == "socket" else None


def connect_event(c: Call) -> Event | None:
    addr = _address(c, c.arg(1))
    entry = _socket(c)
    n = c.fd_arg(0)
    if (c.ok or c.call.errno == "EINPROGRESS") and n is not None:
        if entry is None:
            entry = Fd("socket", family=str(addr["family"]))
            c.state.set_fd(c.pid, n, entry)
        entry.peer = {k: v for k, v in addr.items() if isinstance(v, str | int)}
    family = str(addr["family"])
    if family == "AF_UNIX":
        if addr.get("address") in NSCD_SOCKETS:
            return None  # glibc asking nscd (absent here) for passwd, group or hosts entries
        return c.ev("net.connect", f"connect unix {_where(addr)}", **addr, own=_own(c, addr))
    kind = "net.lookup" if addr.get("port") == 53 else "net.connect"
    return c.ev(kind, f"connect {family} {_where(addr)}", **addr)


def bind_event(c: Call) -> Event | None:
    addr = _address(c, c.arg(1))
    entry = _socket(c)
    path = addr.get("address") if addr["family"] == "AF_UNIX" else None
    if c.ok and entry is not None:  # an IP socket's with its port: listen and accept say it
        ip = addr["family"] in ("AF_INET", "AF_INET6")
        entry.local = _where(addr) if ip else str(addr.get("address", ""))
    if isinstance(path, str) and path.startswith("/"):
        if c.startup and c.ok and paths.is_under(path, c.state.own_dir) and entry is not None:
            entry.own = True  # the worker's gRPC or data-plane socket, before the model loads
            c.state.own_paths.add(path)
        addr["path"] = path  # binding a Unix socket makes a file
    return c.ev("net.bind", f"bind {addr['family']} {_where(addr)}", **addr)


def listen_event(c: Call) -> Event:
    """listen, with what the tracer knows of the socket: its family and the address (and port)
    it was bound to, '' when it was not (the kernel then binds it to every address)."""
    entry = _socket(c)
    detail: dict[str, DetailValue] = {"fd": c.fd_arg(0)}
    if entry is not None:
        detail.update(family=entry.family or "?", local=entry.local)
    return c.ev("net.listen", f"listen(fd {c.arg(0)[:12] or '?'})", **detail)


def _unread(token: str) -> bool:
    """The call's address or message given, but not read: a pointer where a struct would be
    (strace could not read the memory; gVisor's raw points never read it)."""
    t = token.strip()
    return bool(t) and t not in ("NULL", "0") and not t.startswith(("{", "["))


def send_event(c: Call) -> Event | None:
    """sendto, sendmsg, sendmmsg: to the call's address, or the socket's connect. A message or
    address given but not read is judged as the worst it could be: an unknown destination for
    sendto, descriptors possibly passed for sendmsg and sendmmsg (on the model's sockets)."""
    token = c.arg(4) if c.name == "sendto" else c.arg(1)
    found = [_address(c, m.group()) for m in _STRUCT.finditer(token[:65536])]
    entry = _socket(c)
    unread = _unread(token)
    passing = "SCM_RIGHTS" in token or (unread and c.name != "sendto")
    if entry is not None and entry.own and unread and c.name != "sendto":
        return None  # the worker's own traffic, its message unread (docs/gvisor-tracer.md)
    dest: dict[str, DetailValue]
    known = entry.family if entry is not None else ""
    if unread and c.name == "sendto" and known in ("AF_INET", "AF_INET6"):
        dest, via = {"family": known, "resolved": False}, "unread address"
    elif unread and c.name == "sendto":  # a connected socketpair would refuse an address
        dest, via = {"family": "?", "resolved": False}, "unread address"
    elif found:
        dest, via = found[0], "call"
    elif entry is not None and entry.peer:
        dest, via = dict(entry.peer), "connect"
    elif entry is not None:
        dest, via = {"family": entry.family or "?"}, "socketpair" if entry.pair else "socket"
    else:
        dest, via = {"family": "?"}, "unseen"
    own = any(_own(c, a) for a in found) or (via == "connect" and _own(c, dest))
    if entry is not None and entry.own and not found:
        if not passing:
            return None  # the worker's own gRPC or data-plane traffic
        own = True
    if dest.get("family") == "AF_UNIX" and dest.get("address") in NSCD_SOCKETS:
        return None
    detail: dict[str, DetailValue] = {**dest, "via": via, "own": own, "passes_fds": passing}
    if len(found) > 1:
        detail["destinations"] = [_where(a) for a in found[:MAX_DESTINATIONS]]
    what = f"{dest.get('family')} {_where(dest)}" if via != "unseen" else "an unseen socket"
    summary = f"{c.name} fd {c.arg(0)[:12]} to {what} ({via})" + (
        ", its message unread: it may pass descriptors"
        if unread and passing and "SCM_RIGHTS" not in token
        else ", passing descriptors"
        if passing
        else ""
    )
    kind = "net.lookup" if dest.get("port") == 53 else f"net.{c.name}"
    return c.ev(kind, summary, **detail)


def ipc_event(c: Call) -> Event:
    """msgsnd, mq_timedsend: data to another process through a kernel queue."""
    return c.ev("net.ipc", f"{c.name} to queue {c.arg(0)[:12]}", family="ipc", via="queue")
