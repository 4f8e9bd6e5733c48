"""Generated from runner/telemetry/gvisor/proto; run scripts/gen_gvisor_proto.py."""
