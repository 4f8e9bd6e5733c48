"""Telemetry: the tracer's configuration, strace parsing, events and resources."""
