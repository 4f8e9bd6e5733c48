"""The host's end of gVisor's remote sink: a SOCK_SEQPACKET socket runsc connects to.

The socket lives in a directory of the session only root can enter (0700), which is not
mounted into the container: runsc (`runsc create`, on the host, as root) connects before the
sandbox starts and hands the connection to the sandbox's kernel; the model's code cannot name,
reach or stop it. Protocol (gVisor pkg/sentry/seccheck/sinks/remote): runsc sends a Handshake
message, the sink answers with its own (version 1); then every message is one datagram, a
header {header_size u16, message_type u16, dropped_count u32} (little-endian) and a serialized
point at header_size. dropped_count is runsc's running count of points it could not send.

A thread accepts and reads; storage is bounded (MAX_MESSAGES, MAX_BYTES): what the caps leave
out is counted, and so is what runsc said it dropped. close() stops the thread and returns what
was received, and the decoding is done then (runner.telemetry.gvisor.decode).
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

from runner.telemetry.gvisor._proto import common_pb2

MAX_MESSAGES = 400_000
MAX_BYTES = 256 << 20
MAX_DATAGRAM = 1 << 20  # an execve with a full argv is the largest point; longer is cut
MAX_CONNECTIONS = 4
HEADER = struct.Struct("<HHI")
VERSION = 1
SOCKET_NAME = "sink.sock"


@dataclass
class Received:
    """What the sink took: the messages (type, payload) and what it could not take."""

    messages: list[tuple[int, bytes]] = field(default_factory=list)
    payload_bytes: int = 0
    past_caps: int = 0
    bad_headers: int = 0  # datagrams too short, cut (longer than MAX_DATAGRAM), bad handshakes
    dropped_by_runsc: int = 0
    connections: int = 0


class Sink:
    """Listen at directory/sink.sock (the directory made 0700); start() runs the reader."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(mode=0o700, exist_ok=True)
        directory.chmod(0o700)
        self.path = directory / SOCKET_NAME
        self.received = Received()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._listener.bind(str(self.path))
        os.chmod(self.path, 0o600)
        self._listener.listen(MAX_CONNECTIONS)
        self._listener.setblocking(False)
        self._conns: dict[int, tuple[socket.socket, list[int]]] = {}  # fd -> (conn, [dropped])
        self._thread = threading.Thread(target=self._run, name="gvisor-sink", daemon=True)

    def start(self) -> Sink:
        self._thread.start()
        return self

    @property
    def connected(self) -> bool:
        return self.received.connections > 0

    def close(self, timeout_s: float = 5.0) -> Received:
        """Read what is still queued (up to timeout_s), stop, and close every socket."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        for conn, _ in list(self._conns.values()):
            conn.close()
        self._conns.clear()
        self._listener.close()
        return self.received

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # a socket error ends the reading; what was read stands
            self.received.bad_headers += 1

    def _loop(self) -> None:
        while True:
            fds = [self._listener, *(c for c, _ in self._conns.values())]
            ready, _, _ = select.select(fds, [], [], 0.05)
            if not ready and (self._stop.is_set() or not self.path.exists()):
                return  # nothing left queued, or the session's directories are gone
            for s in ready:
                if s is self._listener:
                    self._accept()
                else:
                    self._read(s)

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except BlockingIOError:
            return
        self.received.connections += 1
        if len(self._conns) >= MAX_CONNECTIONS:
            conn.close()
            return
        conn.settimeout(2.0)
        try:
            hello = common_pb2.Handshake.FromString(conn.recv(10240))
            if hello.version < 1:
                raise ValueError("version")
            conn.sendall(common_pb2.Handshake(version=VERSION).SerializeToString())
        except Exception:  # not runsc's handshake: no trace from this connection
            self.received.bad_headers += 1
            conn.close()
            return
        conn.setblocking(False)
        self._conns[conn.fileno()] = (conn, [0])

    def _read(self, conn: socket.socket) -> None:
        try:
            data, _, flags, _ = conn.recvmsg(MAX_DATAGRAM)
        except BlockingIOError:
            return
        except OSError:
            data, flags = b"", 0
        if not data:  # runsc closed its end (the sandbox is gone)
            self._conns.pop(conn.fileno(), (None, None))
            conn.close()
            return
        last = self._conns[conn.fileno()][1]
        self._take(data, bool(flags & socket.MSG_TRUNC), last)

    def _take(self, data: bytes, cut: bool, last: list[int]) -> None:
        r = self.received
        if cut or len(data) < HEADER.size:
            r.bad_headers += 1
            return
        size, kind, dropped = HEADER.unpack_from(data)
        r.dropped_by_runsc += (dropped - last[0]) % (1 << 32)  # a running count; it wraps
        last[0] = dropped
        if size < HEADER.size or size > len(data):
            r.bad_headers += 1
            return
        payload = data[size:]
        if len(r.messages) >= MAX_MESSAGES or r.payload_bytes + len(payload) > MAX_BYTES:
            r.past_caps += 1
            return
        r.messages.append((kind, payload))
        r.payload_bytes += len(payload)
