"""Every fixture of the hostile corpus, checked from the host:

- contained: no marker on the host, the host's files unchanged, the container gone;
- detected: the verdict is not clean and the expected finding ids are present;
- complete: the report has its phases, resources and events, and the cause of any error.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import runner
from runner.controller.zygote import Zygote
from tests.hostile.corpus import CORPUS, Fixture


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p)] = "link:" + str(p.readlink())
        elif p.is_file():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _containers(session: str) -> list[str]:
    return subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=airlock.session={session}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


def run_fixture(
    fx: Fixture, tmp_path: Path, zygote: Zygote | None = None, marker: str = ""
) -> tuple[runner.Report, BaseException | None]:
    marker = marker or f"/tmp/airlock-hostile-{uuid.uuid4().hex}"
    models = tmp_path / "m"
    models.mkdir()
    (tmp_path / "canary.txt").write_text("the host's file, unchanged\n")
    path = fx.build(models, marker)
    before = _snapshot(tmp_path)
    sb = runner.Sandbox(path, runner.Policy(**fx.policy), zygote=zygote)  # type: ignore[arg-type]
    error: BaseException | None = None
    try:
        with sb:
            for _ in range(fx.calls if fx.infer is not None else 0):
                sb.infer(fx.infer)  # type: ignore[arg-type]
    except runner.AirlockError as e:
        error = e
    report = sb.report()
    # contained, seen from the host
    assert not Path(marker).exists(), "the payload's marker appeared on the host"
    assert _snapshot(tmp_path) == before, "host files changed"
    assert _containers(sb.session) == []
    return report, error


ROWS: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _table() -> Iterator[None]:
    """With AIRLOCK_CORPUS_TABLE=FILE, write a Markdown table of each fixture's static and
    dynamic findings side by side (for the documentation; no assertion depends on it)."""
    yield
    target = os.environ.get("AIRLOCK_CORPUS_TABLE")
    if target and ROWS:
        Path(target).write_text(
            "| fixture | technique | static findings | dynamic findings "
            "| verdict |\n| --- | --- | --- | --- | --- |\n" + "\n".join(ROWS) + "\n"
        )


@pytest.mark.parametrize("fx", CORPUS, ids=[f.name for f in CORPUS])
def test_hostile_fixture(fx: Fixture, tmp_path: Path) -> None:
    report, error = run_fixture(fx, tmp_path)
    ids = {f.rule_id for f in report.findings}
    static = dict.fromkeys(f.rule_id for f in report.findings if f.source.value == "static")
    dynamic = dict.fromkeys(f.rule_id for f in report.findings if f.source.value != "static")
    ROWS.append(
        f"| {fx.name} | {fx.technique} | {', '.join(static) or '-'} | "
        f"{', '.join(dynamic) or '-'} | {report.verdict.value} |"
    )
    # detected
    assert report.verdict is not runner.Verdict.CLEAN
    assert fx.expect <= ids, (fx.name, sorted(ids), [f.evidence for f in report.findings])
    # complete
    names = [p.name for p in report.phases]
    assert names[0] == "preflight" and names[-1] == "teardown"
    assert report.resources is not None and report.resources.timeline
    assert report.tracer is not None and report.tracer.log_bytes > 0
    assert report.findings and all(f.evidence for f in report.findings)
    if fx.error:
        assert error is not None and type(error).__name__ == fx.error, error
    if error is not None:
        assert report.error is not None and report.error.kind == type(error).__name__
        assert report.error.message


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 25
    assert len({f.name for f in CORPUS}) == len(CORPUS)
