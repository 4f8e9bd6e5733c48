"""`airlock serve`: a model over the Open Inference Protocol from watched sandboxes.

Prints where it listens (stdout), logs every request and replica event as a JSON line
(stderr), and runs until SIGTERM or Ctrl-C: then drains the requests in flight, removes every
container and writes the report. Exit codes: 0 a clean stop, 1 quarantined (a finding at or
above --fail-on while serving), 2 usage, 3 could not serve.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from runner.cli import options as o
from runner.cli.output import out
from runner.policy import Runtime

SERVE_WALL_TIMEOUT = 30 * 86400.0  # a replica serves for long; the wall limit is per replica


def serve(
    model: o.ModelArg,
    grpc_port: Annotated[int, typer.Option("--grpc-port", help="gRPC port (0: any free)")] = 8001,
    http_port: Annotated[int, typer.Option("--http-port", help="HTTP port (0: any free)")] = 8000,
    replicas: Annotated[int, typer.Option("--replicas", min=1, max=64, help="sandboxes")] = 1,
    host: Annotated[
        str, typer.Option("--host", help="address to bind (not loopback: --token needed)")
    ] = "127.0.0.1",
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="AIRLOCK_SERVE_TOKEN", help="bearer token clients send"),
    ] = None,
    fail_on: o.FailOn = o.FAIL_ON,
    report: o.ReportOut = None,
    queue: Annotated[
        int, typer.Option("--queue", min=0, help="requests that may wait for a replica")
    ] = 16,
    request_timeout: Annotated[
        float, typer.Option("--request-timeout", min=0.001, help="default per-request deadline")
    ] = 30.0,
    name: Annotated[str, typer.Option("--name", help="the model's name in the protocol")] = "model",
    runtime: o.Runtime_ = Runtime.RUNC,
    memory: o.Memory = o.MEMORY,
    cpus: o.Cpus = o.CPUS,
    load_timeout: o.LoadTimeout = o.LOAD_TIMEOUT,
    call_timeout: o.CallTimeout = o.CALL_TIMEOUT,
    wall_timeout: o.WallTimeout = SERVE_WALL_TIMEOUT,
    no_trace: o.NoTrace = False,
    arch: o.Arch = None,
    fmt: o.Fmt = "auto",
    trust_remote_code: o.TrustRemoteCode = False,
    state_key: o.StateKey = "",
    non_strict: o.NonStrict = False,
    base: o.BaseDir = None,
) -> None:
    """Serve a model to Open Inference Protocol clients (tritonclient, KServe), sealed and
    watched: a finding while serving quarantines it."""
    # long function: one parameter per option, as typer reads them
    from runner.serve.app import Server, json_lines

    policy = o.policy(
        runtime,
        memory,
        cpus=cpus,
        load_timeout=load_timeout,
        call_timeout=call_timeout,
        wall_timeout=wall_timeout,
        no_trace=no_trace,
    )
    kwargs: dict[str, Any] = {
        "architecture": arch,
        "format": fmt,
        "trust_remote_code": trust_remote_code,
        **o.Loading(state_key, non_strict, base).sandbox_kwargs(),
    }
    server = Server(
        Path(model),
        policy,
        replicas=replicas,
        fail_on=fail_on,
        queue=queue,
        request_timeout_s=request_timeout,
        host=host,
        grpc_port=grpc_port,
        http_port=http_port,
        token=token,
        report=report,
        name=name,
        log=json_lines(),
        sandbox_kwargs=kwargs,
    )
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        out.print(
            f"serving {name} from {replicas} sandbox(es): gRPC {host}:{server.grpc_port}, "
            f"HTTP {host}:{server.http_port} (SIGTERM or Ctrl-C to stop)",
            markup=False,
            highlight=False,
        )
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    raise typer.Exit(server.exit_code)
