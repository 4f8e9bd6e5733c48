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
from runner.serve.backend import Backend, BadRequest
from runner.serve.v2 import http_codec
from runner.serve.v2.common import (
    DEFAULT_TIMEOUT_S,
    EXTENSIONS,
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
    ) -> None:
        self.backend, self.token, self.limits = backend, token, limits
        self.default_timeout_s, self.pool = default_timeout_s, pool

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
        meta = self.backend.metadata()
        check_model(meta, r.match_info["name"], r.match_info.get("version", ""))
        if r.headers.get("Content-Encoding", "identity").lower() != "identity":
            raise BadRequest("compressed request bodies are not accepted")
        body = await r.read()
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
) -> web.Application:
    limits = limits or Limits()
    routes = _Routes(backend, token, limits, default_timeout_s, pool)
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
    ) -> None:
        self.host, self.port = host, port
        self._pool = futures.ThreadPoolExecutor(workers, thread_name_prefix="airlock-http")
        self._app = build_app(
            backend,
            token=token,
            limits=limits,
            default_timeout_s=default_timeout_s,
            pool=self._pool,
        )
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    async def _start(self) -> int:
        self._runner = web.AppRunner(
            self._app, access_log=None, handle_signals=False, shutdown_timeout=5.0
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        return int(self._runner.addresses[0][1])

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
            done = asyncio.run_coroutine_threadsafe(runner.cleanup(), self._loop)
            with contextlib.suppress(futures.TimeoutError, RuntimeError):
                done.result(grace_s + 5.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(grace_s + 5.0)
        if not self._thread.is_alive():
            self._loop.close()
        self._thread = None
        self._pool.shutdown(wait=True, cancel_futures=True)
