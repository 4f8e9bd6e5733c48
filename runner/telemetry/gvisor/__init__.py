"""gVisor's own trace points: the tracer under runsc (AIRLOCK_RUNSC_TRACER=strace for strace).

runsc's pod-init configuration enables trace points for the traced syscall families and sends
them to a remote sink: a SOCK_SEQPACKET socket the host listens on, in a session directory the
container never sees (runner.telemetry.gvisor.sink). The messages become the same calls the
strace path reads (runner.telemetry.gvisor.decode), so the same events and rules apply, and the
model has no way to reach its tracer. Under runc, strace stays the tracer. See
docs/gvisor-tracer.md.
"""

from __future__ import annotations

import os

from runner.errors import UsageError

ENV = "AIRLOCK_RUNSC_TRACER"
CHOICES = ("gvisor", "strace")


def enabled() -> bool:
    """The one place the switch is read: gVisor's trace points (the default) or strace, under
    runsc. Any other value is a usage error, never a silent choice of tracer."""
    value = os.environ.get(ENV, "").strip().lower() or "gvisor"
    if value not in CHOICES:
        raise UsageError(
            f"{ENV}={os.environ.get(ENV, '')[:40]!r} is not a tracer Airlock knows",
            f"set it to one of {', '.join(CHOICES)}, or unset it for gvisor",
        )
    return value == "gvisor"
