"""The Open Inference Protocol over HTTP/REST (aiohttp), with the binary tensor extension.

The server runs its own event loop on a thread of its own; inference runs on a bounded thread
pool so a slow model never blocks health checks. Bodies are capped (aiohttp's client_max_size
and Limits), compressed request bodies are refused, and every error is JSON `{"error": ...}`
with the status the backend's exception maps to. /metrics serves runner.serve.metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent import futures
from typing import Any

from aiohttp import web

from runner.errors import UsageError
from runner.serve.backend import Backend, BadRequest, Deadline, Exhausted
from runner.serve.v2 import http_codec
from runner.serve.v2.common import (
    DEFAULT_TIMEOUT_S,
    EXTENSIONS,
    MAX_CONNECTIONS,
    SERVER_NAME,
    SERVER_VERSION,
    check_model,
    check_token,
    map_error,
    metrics_text,
    observe,
    run_infer,
    timeout_for,
)
from runner.serve.v2.tensors import Limits

Route = Callable[[web.Request], Awaitable[web.StreamResponse]]

KEEPALIVE_S = 15.0  # an idle connection (or one whose headers never end) is closed after this
BODY_TIMEOUT_S = 30.0  # the longest a request body may take to arrive (slow clients)


class _Refused(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, counted from its creation to its loss (asyncio
    accepts a burst of connections before any of them is made, so aiohttp's own list lags)."""

    def __init__(self, inner: asyncio.Protocol, counter: list[int]) -> None:
        self.inner, self.counter = inner, counter
        counter[0] += 1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.counter[0] -= 1
        self.inner.connection_lost(exc)


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(doc).encode(), status=status, content_type="application/json"
    )


def _error(e: BaseException) -> tuple[web.Response, int]:
    mapped = map_error(e)
    return _json({"error": mapped.message}, mapped.http), mapped.http


class _Routes:
    def __init__(
        self,
        backend: Backend,
        token: str | None,
        limits: Limits,
        default_timeout_s: float | None,
        pool: futures.Executor,
        max_inflight: int,
    ) -> None:
        self.backend, self.token, self.limits = backend, token, limits
        self.default_timeout_s, self.pool = default_timeout_s, pool
        # inference requests being read, decoded, run or encoded: more are refused before
        # their bodies are read, so the backend's queue bound is a bound on memory too
        self.max_inflight, self.inflight = max_inflight, 0

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def live(self, _r: web.Request) -> web.Response:
        ok = await self._call(self.backend.live)
        return web.Response(status=200 if ok else 503)

    async def ready(self, _r: web.Request) -> web.Response:
        ok = await self._call(self.backend.ready)
        return web.Response(status=200 if ok else 503)

    async def server_metadata(self, _r: web.Request) -> web.Response:
        return _json({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS})

    async def model_metadata(self, r: web.Request) -> web.Response:
        meta = self.backend.metadata()
        check_model(meta, r.match_info["name"], r.match_info.get("version", ""))

        def tensor(t: Any) -> dict[str, Any]:
            return {"name": t.name, "datatype": t.datatype, "shape": t.shape}

        return _json(
            {
                "name": meta.name,
                "versions": [meta.version],
                "platform": meta.platform,
                "inputs": [tensor(t) for t in meta.inputs],
                "outputs": [tensor(t) for t in meta.outputs],
            }
        )

    async def model_ready(self, r: web.Request) -> web.Response:
        name, version = r.match_info["name"], r.match_info.get("version", "")
        ok = await self._call(self.backend.model_ready, name, version)
        return web.Response(status=200 if ok else 503)

    async def infer(self, r: web.Request) -> web.Response:
        if self.inflight >= self.max_inflight:  # the loop's thread only: no lock needed
            raise Exhausted(f"{self.inflight} HTTP inference requests in flight already")
        self.inflight += 1
        try:
            return await self._infer(r)
        finally:
            self.inflight -= 1

    async def _infer(self, r: web.Request) -> web.Response:
        meta = self.backend.metadata()
        check_model(meta, r.match_info["name"], r.match_info.get("version", ""))
        if r.headers.get("Content-Encoding", "identity").lower() != "identity":
            raise BadRequest("compressed request bodies are not accepted")
        try:
            body = await asyncio.wait_for(r.read(), BODY_TIMEOUT_S)
        except TimeoutError:
            raise Deadline(f"the request body took longer than {BODY_TIMEOUT_S:g}s") from None
        req = await self._call(
            http_codec.decode_request, body, r.headers.get(http_codec.HEADER_LENGTH), self.limits
        )
        timeout = timeout_for(self.default_timeout_s, None, req.timeout_us)
        outputs = await self._call(
            run_infer, self.backend, req.inputs, req.wanted, timeout, self.limits
        )
        payload, head = await self._call(
            http_codec.encode_response, req, meta.name, meta.version, outputs
        )
        if head is None:
            return web.Response(body=payload, content_type="application/json")
        return web.Response(
            body=payload,
            content_type="application/octet-stream",
            headers={http_codec.HEADER_LENGTH: str(head)},
        )

    async def report(self, _r: web.Request) -> web.Response:
        """The running report (the replicas' verdicts so far, findings, restarts, requests)."""
        found = await self._call(self.backend.report)
        body = json.dumps(found, default=str).encode()  # what is not JSON, as text
        return web.Response(body=body, content_type="application/json")

    async def metrics(self, _r: web.Request) -> web.Response:
        found = await self._call(metrics_text)
        if found is None:
            return _json({"error": "metrics are not available"}, 404)
        body, ctype = found
        return web.Response(body=body, headers={"Content-Type": ctype})


def _guard(route: Route, token: str | None, infer: bool) -> Route:
    async def handle(r: web.Request) -> web.StreamResponse:
        start = time.monotonic()
        status = 500
        try:
            check_token(token, r.headers.get("Authorization"))
            response = await route(r)
            status = response.status
            return response
        except web.HTTPRequestEntityTooLarge as e:
            status = 413
            return _json({"error": f"request too large: {e.text}"}, 413)
        except Exception as e:
            response, status = _error(e)
            return response
        finally:
            if infer:
                observe("http", str(status), time.monotonic() - start)

    return handle


def build_app(
    backend: Backend,
    *,
    token: str | None = None,
    limits: Limits | None = None,
    default_timeout_s: float | None = DEFAULT_TIMEOUT_S,
    pool: futures.Executor,
    max_inflight: int = 32,
) -> web.Application:
    limits = limits or Limits()
    routes = _Routes(backend, token, limits, default_timeout_s, pool, max_inflight)
    app = web.Application(client_max_size=limits.max_message_bytes)
    table: list[tuple[str, str, Route]] = [
        ("GET", "/v2/health/live", routes.live),
        ("GET", "/v2/health/ready", routes.ready),
        ("GET", "/v2", routes.server_metadata),
        ("GET", "/v2/models/{name}", routes.model_metadata),
        ("GET", "/v2/models/{name}/versions/{version}", routes.model_metadata),
        ("GET", "/v2/models/{name}/ready", routes.model_ready),
        ("GET", "/v2/models/{name}/versions/{version}/ready", routes.model_ready),
        ("POST", "/v2/models/{name}/infer", routes.infer),
        ("POST", "/v2/models/{name}/versions/{version}/infer", routes.infer),
        ("GET", "/metrics", routes.metrics),
        ("GET", "/v2/airlock/report", routes.report),
    ]
    for method, path, route in table:
        app.router.add_route(method, path, _guard(route, token, route == routes.infer))
    return app


class HttpServer:
    """The REST front on host:port (port 0: any free port; see .port), on its own thread."""

    def __init__(
        self,
        backend: Backend,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None = None,
        limits: Limits | None = None,
        default_timeout_s: float | None = DEFAULT_TIMEOUT_S,
        workers: int = 8,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.host, self.port = host, port
        self.max_connections = max_connections
        self._pool = futures.ThreadPoolExecutor(workers, thread_name_prefix="airlock-http")
        self._app = build_app(
            backend,
            token=token,
            limits=limits,
            default_timeout_s=default_timeout_s,
            pool=self._pool,
            max_inflight=workers * 4,
        )
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None

    async def _start(self) -> int:
        self._runner = web.AppRunner(
            self._app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=5.0,
            keepalive_timeout=KEEPALIVE_S,
        )
        await self._runner.setup()
        server = self._runner.server
        assert server is not None
        counter = [0]

        def protocol() -> asyncio.BaseProtocol:  # aiohttp's low-level server, connections capped
            if counter[0] >= self.max_connections:
                return _Refused()
            return _Counted(server(), counter)

        self._listener = await asyncio.get_running_loop().create_server(
            protocol, self.host, self.port, reuse_address=True
        )
        return int(self._listener.sockets[0].getsockname()[1])

    async def _cleanup(self, runner: web.AppRunner) -> None:
        if self._listener is not None:
            self._listener.close()
        await runner.cleanup()  # shuts the open connections down (in-flight ones finish)

    def start(self) -> int:
        """Bind and serve; the bound port (UsageError if it cannot listen there)."""
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="airlock-http-loop", daemon=True
        )
        self._thread.start()
        try:
            self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        except OSError as e:
            self.stop()
            raise UsageError(
                f"cannot listen for HTTP on {self.host}:{self.port}: {e.strerror or e}",
                "choose another --http-port (0 picks a free one)",
            ) from None
        return self.port

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop taking requests, let those in flight finish (up to grace_s), end the thread."""
        if self._thread is None:
            return
        if self._runner is not None:
            runner, self._runner = self._runner, None
            done = asyncio.run_coroutine_threadsafe(self._cleanup(runner), self._loop)
            with contextlib.suppress(futures.TimeoutError, RuntimeError):
                done.result(grace_s + 5.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(grace_s + 5.0)
        if not self._thread.is_alive():
            self._loop.close()
        self._thread = None
        self._pool.shutdown(wait=True, cancel_futures=True)
