"""The serving metrics, in a registry of their own (served at /metrics by the HTTP server).

The protocol servers call observe_request for every request they answer; the replica backend
records restarts, findings and quarantine. The registry is per process, not the default one, so
importing prometheus_client elsewhere adds nothing to it and nothing of it leaks there.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "airlock_requests",
    "Requests answered, by protocol and status code",
    ["protocol", "code"],
    registry=REGISTRY,
)
ERRORS = Counter(
    "airlock_request_errors",
    "Requests that failed, by protocol and status code",
    ["protocol", "code"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "airlock_request_seconds",
    "Request latency in seconds, by protocol",
    ["protocol"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
RESTARTS = Counter(
    "airlock_replica_restarts",
    "Replicas replaced by a fresh sandbox, by reason",
    ["reason"],
    registry=REGISTRY,
)
FINDINGS = Counter(
    "airlock_findings",
    "Findings seen while serving, by severity",
    ["severity"],
    registry=REGISTRY,
)
QUARANTINED = Gauge(
    "airlock_quarantined",
    "1 when the model is quarantined (a finding at or above --fail-on)",
    registry=REGISTRY,
)
REPLICAS_UP = Gauge("airlock_replicas_up", "Replicas ready to answer", registry=REGISTRY)

_OK = frozenset({"OK", "200"})
# a label's values are ours to choose, never a client's: anything else is one bucket
_MAX_LABEL = 40


def _label(text: str) -> str:
    text = str(text)
    if len(text) > _MAX_LABEL or not text.replace("_", "").replace("-", "").isalnum():
        return "other"
    return text


def observe_request(protocol: str, code: str | int, seconds: float) -> None:
    """One request answered: its protocol ('grpc', 'http'), status code, latency."""
    protocol, status = _label(protocol), _label(str(code))
    REQUESTS.labels(protocol, status).inc()
    if status not in _OK:
        ERRORS.labels(protocol, status).inc()
    LATENCY.labels(protocol).observe(max(0.0, float(seconds)))


def observe_restart(reason: str) -> None:
    RESTARTS.labels(_label(reason)).inc()


def observe_finding(severity: str) -> None:
    FINDINGS.labels(_label(severity)).inc()


def set_quarantined(quarantined: bool) -> None:
    QUARANTINED.set(1 if quarantined else 0)


def set_replicas_up(count: int) -> None:
    REPLICAS_UP.set(count)


def exposition() -> tuple[bytes, str]:
    """The registry in Prometheus' text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE


__all__ = [
    "CONTENT_TYPE",
    "REGISTRY",
    "exposition",
    "observe_finding",
    "observe_request",
    "observe_restart",
    "set_quarantined",
    "set_replicas_up",
]
