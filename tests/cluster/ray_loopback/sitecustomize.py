"""Keeps the test cluster on loopback. Ray 2.60's `ray start` and `ray.init` on Linux take
127.0.0.1 to mean "this machine" and replace it with the machine's own address, and the GCS
and raylets then listen on every interface. The cluster tests put this directory first on
PYTHONPATH for every Python process they start (the `ray start`s, the workers their raylets
spawn, the `airlock eval` drivers), and import it in their own process, so that 127.0.0.1
stays 127.0.0.1 and every server binds loopback only. Test-only: Airlock itself never does
this (a real cluster's nodes must reach each other)."""

try:
    import ray._private.services as _services

    _services.resolve_ip_for_localhost = lambda host: host
    _services.get_node_ip_address = lambda address=None: "127.0.0.1"
except Exception:  # no Ray, or another Ray: the cluster tests then say so
    pass
