"""The running report can be fetched while serving (GET /v2/airlock/report on the HTTP port),
behind the bearer token when one is set."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from runner.serve.v2.http_server import HttpServer
from tests.unit.test_serve_v2_errors import Fake


class Reporting(Fake):
    def report(self) -> dict[str, Any]:
        return {"verdict": "clean", "requests": 3, "since": object()}  # object(): shown as text


def _get(port: int, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v2/airlock/report", headers=headers or {}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None


def test_the_running_report_is_served() -> None:
    h = HttpServer(Reporting())
    port = h.start()
    try:
        status, doc = _get(port)
        assert status == 200
        assert doc["verdict"] == "clean" and doc["requests"] == 3
        assert isinstance(doc["since"], str)
    finally:
        h.stop(1)


@pytest.mark.parametrize("auth", [None, "Bearer wrong"])
def test_the_running_report_needs_the_token(auth: str | None) -> None:
    h = HttpServer(Reporting(), token="s3cret")
    port = h.start()
    try:
        assert _get(port, {"Authorization": auth} if auth else None)[0] == 401
        assert _get(port, {"Authorization": "Bearer s3cret"})[0] == 200
    finally:
        h.stop(1)
