"""gVisor's own trace points as the tracer under runsc (opt-in: AIRLOCK_RUNSC_TRACER=gvisor).

runsc's pod-init configuration enables trace points for the traced syscall families and sends
them to a remote sink: a SOCK_SEQPACKET socket the host listens on, in a session directory the
container never sees (runner.telemetry.gvisor.sink). The messages become the same calls the
strace path reads (runner.telemetry.gvisor.decode), so the same events and rules apply, and the
model has no way to reach its tracer. See docs/gvisor-tracer.md.
"""

from __future__ import annotations

import os

ENV = "AIRLOCK_RUNSC_TRACER"


def enabled() -> bool:
    """The one place the switch is read: gVisor's trace points instead of strace under runsc."""
    return os.environ.get(ENV, "").strip().lower() == "gvisor"
