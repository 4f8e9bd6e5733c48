"""Serving throughput and latency (issue #18): `airlock serve` (runner.serve.app.Server: two
watched sandbox replicas behind the gRPC and HTTP fronts) against the same ONNX model run
in-process by onnxruntime (InProcessBackend) behind the same GrpcServer and HttpServer, measured
in the same run.

Unmodified tritonclient clients, each its own client on its own thread, run in a separate
(spawned) process so the gateway process (this one) holds only the servers: 1, 4 and 16
concurrent gRPC clients and 4 HTTP clients, REQUESTS per level, every answer compared with the
in-process reference. Loopback only; each level is bounded in time; the servers and every
sandbox are stopped in finally blocks and no container of ours may be left.

AIRLOCK_BENCH_FAIL_ON sets the server's --fail-on (default medium, as `airlock serve`); the
replicas' evidence is judged after every request whatever it is."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REQUESTS = 192  # per level: divisible by every client count
LEVELS = (("grpc", 1), ("grpc", 4), ("grpc", 16), ("http", 4))
LEVEL_BUDGET_S = 25.0  # a level stops issuing requests after this
BATCH = 5

Rows = dict[str, dict[str, Any]]

FAIL_ON = os.environ.get("AIRLOCK_BENCH_FAIL_ON", "medium")

# onnxruntime >= 1.29 sends telemetry on Linux (a name lookup some seconds after its first
# session) unless this is set before its environment is made: not in the baseline's figures.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

pytestmark = pytest.mark.timeout(300)


# --- the clients (run in the spawned process) ---------------------------------------------------


def _client(protocol: str, port: int) -> tuple[Any, Callable[[np.ndarray], np.ndarray]]:
    if protocol == "grpc":
        import tritonclient.grpc as grpcclient

        g = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")

        def call_grpc(x: np.ndarray) -> np.ndarray:
            inp = grpcclient.InferInput("x", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            return np.asarray(g.infer("model", [inp], client_timeout=30).as_numpy("y"))

        return g, call_grpc
    import tritonclient.http as httpclient

    h = httpclient.InferenceServerClient(
        f"127.0.0.1:{port}", connection_timeout=30.0, network_timeout=30.0
    )

    def call_http(x: np.ndarray) -> np.ndarray:
        inp = httpclient.InferInput("x", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        return np.asarray(h.infer("model", [inp]).as_numpy("y"))

    return h, call_http


def drive(
    protocol: str, port: int, clients: int, each: int, x: np.ndarray, ref: np.ndarray
) -> dict[str, Any]:
    """`clients` threads, each its own client (one warm-up call, not counted), released
    together, each making `each` calls: latencies of the good answers, errors by kind, wall."""
    lock = threading.Lock()
    latencies: list[float] = []
    errors: dict[str, int] = {}
    gate = threading.Barrier(clients + 1, timeout=60.0)
    stop_at = [0.0]

    def fail(kind: str) -> None:
        with lock:
            errors[kind] = errors.get(kind, 0) + 1

    def work() -> None:
        client, call = _client(protocol, port)
        try:
            try:
                call(x)
            except Exception as e:
                fail(f"warm-up: {type(e).__name__}: {str(e)[:120]}")
            gate.wait()
            for _ in range(each):
                if time.monotonic() > stop_at[0]:
                    fail("level budget spent")
                    continue
                t = time.perf_counter()
                try:
                    y = call(x)
                except Exception as e:
                    fail(f"{type(e).__name__}: {str(e)[:120]}")
                    continue
                took = time.perf_counter() - t
                if y.shape != ref.shape or not np.allclose(y, ref, rtol=1e-4, atol=1e-5):
                    fail("wrong answer")
                    continue
                with lock:
                    latencies.append(took)
        finally:
            client.close()

    threads = [threading.Thread(target=work, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.monotonic() + 60.0 + LEVEL_BUDGET_S  # the warm-up, then the level
    gate.wait()
    start = time.perf_counter()
    stop_at[0] = time.monotonic() + LEVEL_BUDGET_S
    for t in threads:
        t.join(timeout=LEVEL_BUDGET_S + 40.0)
    wall = time.perf_counter() - start
    with lock:
        return {"latencies": list(latencies), "errors": dict(errors), "wall_s": wall}


# --- the gateway (this process) ------------------------------------------------------------------


def _rss_mib() -> float:
    import psutil

    return float(psutil.Process(os.getpid()).memory_info().rss) / (1 << 20)


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] * 1e3


def _levels(
    pool: ProcessPoolExecutor, ports: dict[str, int], x: np.ndarray, ref: np.ndarray
) -> Rows:
    out: Rows = {}
    for protocol, clients in LEVELS:
        each = REQUESTS // clients
        job = pool.submit(drive, protocol, ports[protocol], clients, each, x, ref)
        r = job.result(timeout=LEVEL_BUDGET_S + 120.0)
        lat = r["latencies"]
        out[f"{protocol}_{clients}"] = {
            "protocol": protocol,
            "clients": clients,
            "requests": each * clients,
            "ok": len(lat),
            "errors": r["errors"],
            "wall_s": r["wall_s"],
            "rps": len(lat) / r["wall_s"] if r["wall_s"] > 0 else 0.0,
            "p50_ms": _pct(lat, 0.5),
            "p99_ms": _pct(lat, 0.99),
        }
    return out


def _in_process(
    path: Path, pool: ProcessPoolExecutor, x: np.ndarray, ref: np.ndarray
) -> tuple[Rows, list[float]]:
    from runner.serve.backend import InProcessBackend
    from runner.serve.v2.grpc_server import GrpcServer
    from runner.serve.v2.http_server import HttpServer

    backend = InProcessBackend(path)
    fronts: list[Any] = []
    try:
        fronts.append(GrpcServer(backend))
        grpc_port = fronts[-1].start()
        fronts.append(HttpServer(backend))
        http_port = fronts[-1].start()
        rss = [_rss_mib()]
        rows = _levels(pool, {"grpc": grpc_port, "http": http_port}, x, ref)
        rss.append(_rss_mib())
    finally:
        for front in reversed(fronts):
            front.stop()
        backend.close()
    return rows, rss


def _sandboxed(
    path: Path, pool: ProcessPoolExecutor, x: np.ndarray, ref: np.ndarray, started: list[str]
) -> tuple[Rows, list[float], dict[str, Any]]:
    """`airlock serve` as the CLI runs it (its JSON-line log written, to /dev/null here); the
    containers it starts are appended to `started` as they start."""
    import json

    from runner.rules.catalog import Severity
    from runner.serve.app import Server

    codes: dict[str, int] = {}
    sink = open(os.devnull, "w")  # noqa: SIM115  (the JSON lines airlock serve writes, unread)

    def log(entry: dict[str, Any]) -> None:
        sink.write(json.dumps(entry, default=str) + "\n")
        if entry.get("event") == "request":
            codes[str(entry["code"])] = codes.get(str(entry["code"]), 0) + 1
        elif entry.get("event") == "replica-started" and entry.get("container"):
            started.append(str(entry["container"]))

    fail_on = Severity(FAIL_ON)
    server = Server(path, replicas=2, fail_on=fail_on, grpc_port=0, http_port=0, log=log)
    try:
        t = time.perf_counter()
        server.start()
        startup = time.perf_counter() - t
        rss = [_rss_mib()]
        rows = _levels(pool, {"grpc": server.grpc_port, "http": server.http_port}, x, ref)
        rss.append(_rss_mib())
        report = server.backend.report()
    finally:
        server.stop()
        sink.close()
    summary = {
        "startup_s": startup,
        "codes": codes,
        "requests": report["requests"],
        "errors": report["errors"],
        "restarts": report["restarts"],
        "fail_on": fail_on.value,
        "quarantined": report["quarantined"],
        "quarantine_reason": report["quarantine_reason"],
        "exit_code": server.exit_code,
    }
    return rows, rss, summary


def _left(ids: list[str]) -> list[str]:
    import docker

    client = docker.from_env()
    try:
        present = [c.id for c in client.containers.list(all=True)]
    finally:
        client.close()
    return [i for i in ids if any(p.startswith(i) or i.startswith(p) for p in present)]


def _print(local: dict[str, Any], boxed: dict[str, Any]) -> None:
    print(
        f"\n{'proto':<5} {'cli':>3} {'req':>4} | {'in-process req/s p50 p99 ms':>27} | "
        f"{'sandboxes req/s p50 p99 ms':>27} | {'sandbox/in-process req/s p50 p99':>32} | "
        f"{'ok in/sb':>9}"
    )
    for key, a in local.items():
        b = boxed[key]
        print(
            f"{a['protocol']:<5} {a['clients']:>3} {a['requests']:>4} | "
            f"{a['rps']:>9.0f} {a['p50_ms']:>8.2f} {a['p99_ms']:>8.2f} | "
            f"{b['rps']:>9.0f} {b['p50_ms']:>8.2f} {b['p99_ms']:>8.2f} | "
            f"{b['rps'] / a['rps']:>11.2f}x {b['p50_ms'] / a['p50_ms']:>9.2f}x "
            f"{b['p99_ms'] / a['p99_ms']:>9.2f}x | {a['ok']:>4}/{b['ok']:<4}"
        )


def test_serve(
    tmp_path: Path,
    sandbox_image: tuple[str, str],
    record: Callable[[str, dict[str, object]], None],
) -> None:
    from tests.fixtures.models import onnx_model, sample_input

    x = sample_input(BATCH)
    built = onnx_model(tmp_path, x)
    ref = built.reference["y"]
    figures: dict[str, Any] = {"requests_per_level": REQUESTS, "batch": BATCH}
    containers: list[str] = []
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        pool.submit(int, 0).result(timeout=120)  # the client process is up before any timing
        local, local_rss = _in_process(built.path, pool, x, ref)
        try:
            boxed, boxed_rss, summary = _sandboxed(built.path, pool, x, ref, containers)
        finally:
            left = _left(containers)
    figures.update(in_process=local, sandboxes=boxed, sandbox_server=summary)
    figures["gateway_rss_mib"] = {
        "in_process_start": local_rss[0],
        "in_process_end": local_rss[1],
        "sandboxes_start": boxed_rss[0],
        "sandboxes_end": boxed_rss[1],
    }
    figures["containers_started"] = containers
    figures["containers_left"] = left
    _print(local, boxed)
    print(
        f"gateway RSS MiB: in-process {local_rss[0]:.0f} -> {local_rss[1]:.0f}; "
        f"sandboxes (replicas=2) {boxed_rss[0]:.0f} -> {boxed_rss[1]:.0f}\n"
        f"sandbox server: startup {summary['startup_s']:.1f}s, request codes {summary['codes']}, "
        f"backend errors {summary['errors']}, restarts {summary['restarts']}, "
        f"fail_on {summary['fail_on']}, quarantined {summary['quarantined']}; "
        f"containers started {len(containers)}, left {len(left)}"
    )
    if summary["quarantine_reason"]:
        print(f"quarantine: {summary['quarantine_reason']}")
    for rows in (local, boxed):
        for key, row in rows.items():
            if row["errors"]:
                print(f"errors {key}: {row['errors']}")
    record("serve", figures)
    assert not left, left
    assert not summary["quarantined"], summary["quarantine_reason"]
    assert len(containers) == 2 and summary["exit_code"] == 0
    assert all(r["ok"] == r["requests"] for r in (*local.values(), *boxed.values()))
