"""A Hugging Face repository whose own code (auto_map) starts a shell and opens a socket when
from_pretrained builds the model: `scan` runs it in the sandbox, and from the host nothing of
it is seen (no marker, no container left), while the report says what it did and the verdict
is not clean. `run` without --trust-remote-code refuses before anything starts."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import runner
from tests import hf_repos
from tests.hostile.test_corpus import _containers

ON_INIT = """import os, socket
os.system("touch {marker}")
s = socket.socket()
s.settimeout(0.5)
s.connect_ex(("127.0.0.1", 9))
s.close()
"""


def _hostile(tmp_path: Path, marker: str) -> Path:
    repo = hf_repos.remote_code(tmp_path / "repo", on_init=ON_INIT.format(marker=marker))
    for p in [tmp_path, repo, *repo.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return repo


def test_remote_code_that_starts_a_shell_and_opens_a_socket(tmp_path: Path) -> None:
    marker = f"/tmp/airlock-hostile-{uuid.uuid4().hex}"
    repo = _hostile(tmp_path, marker)
    sb = runner.Sandbox(repo, trust_remote_code=True)  # what scan does
    try:
        with sb:
            pass
    except runner.AirlockError:
        pass
    report = sb.report()
    assert not Path(marker).exists(), "the payload's marker appeared on the host"
    assert _containers(sb.session) == []
    rules = {f.rule_id for f in report.findings}
    assert report.verdict.value == "malicious", report.findings
    assert {"AL201", "AL202"} <= rules  # a process, and a shell, started (tracer: execve)
    assert "AL101" in rules  # a network connection was attempted
    assert "AL930" in rules  # and the repository runs its own code
    hf = report.model.huggingface
    assert hf is not None and "modeling_tiny.py" in {c.path for c in hf.code_files}
    code = next(c for c in hf.code_files if c.path == "modeling_tiny.py")
    assert {"os", "socket"} <= set(code.imports)


def test_run_refuses_remote_code_without_trust(tmp_path: Path) -> None:
    marker = f"/tmp/airlock-hostile-{uuid.uuid4().hex}"
    repo = _hostile(tmp_path, marker)
    out = subprocess.run(
        [sys.executable, "-m", "runner.cli", "run", str(repo), "--text", "hello"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "--trust-remote-code" in out.stderr and "Traceback" not in out.stderr
    assert not Path(marker).exists()
