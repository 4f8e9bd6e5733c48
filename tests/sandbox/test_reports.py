"""Reports from real runs: the JSON file, its views on the command line, and the HTML page
rendered by headless Chromium (a screenshot, and the rendered page's content)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest

from tests.fixtures import hostile
from tests.sandbox.test_cli import airlock

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    path = hostile.write(tmp / "payload.pkl", hostile.shell_marker("/tmp/report-marker"))
    report = tmp / "report.json"
    proc = airlock("scan", str(path), "--report", str(report))
    assert proc.returncode == 1, proc.stderr
    assert "MALICIOUS" in proc.stdout and "AL202" in proc.stdout
    return report


def test_report_file_validates(hostile_report: Path) -> None:
    schema = json.loads((ROOT / "runner" / "data" / "report.schema.json").read_text())
    data = json.loads(hostile_report.read_text())
    jsonschema.validate(data, schema)
    assert data["verdict"] == "malicious"
    assert data["resources"]["timeline"], "no resource samples"
    assert {e["phase"] for e in data["events"]} >= {"load"}


def test_report_show_and_sarif(hostile_report: Path, tmp_path: Path) -> None:
    show = airlock("report", "show", str(hostile_report))
    assert show.returncode == 0 and "MALICIOUS" in show.stdout
    sarif = airlock("report", "sarif", str(hostile_report), "-o", str(tmp_path / "r.sarif"))
    assert sarif.returncode == 0
    assert json.loads((tmp_path / "r.sarif").read_text())["version"] == "2.1.0"
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    proc = airlock("report", "show", str(bad))
    assert proc.returncode == 2 and "not an Airlock report" in proc.stderr


def test_html_renders_in_chromium(hostile_report: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is not installed: run 'make test-deps'"
    page = tmp_path / "report.html"
    proc = airlock("report", "html", str(hostile_report), "-o", str(page))
    assert proc.returncode == 0, proc.stderr
    profile = tmp_path / "profile"
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    shot = tmp_path / "report.png"
    subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert 'id="verdict">MALICIOUS' in dom
    assert "AL202" in dom and "Shell executed" in dom
    assert "<polyline" in dom  # the resource plots
    assert 'id="events"' in dom and "/bin/sh" in dom
