"""What a Hugging Face repository's files say reaches the findings (AL930-AL932), the views and
the command line: remote code is a low finding and needs --trust-remote-code for `run` (refused
before anything starts), a hostile weight map or unreadable JSON keeps the verdict from clean.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from runner.cli import main
from runner.controller import admission as admission_module
from runner.controller.admission import Admission
from runner.errors import UsageError
from runner.policy import Policy
from runner.report import ModelInfo
from runner.rules import analysis
from runner.rules.catalog import Severity, Verdict, verdict
from runner.rules.evaluation import HostFacts, evaluate
from runner.static import preflight
from runner.views.html import render_html
from runner.views.terminal import render_text
from tests.unit.test_hf_repo import described, make_repo

REFUSAL = (
    "airlock: error: {name} ships its own code (auto_map in config.json: modeling_x.py); pass "
    "--trust-remote-code to run it in the sandbox, or use `airlock scan` to see what it does"
)
CODE = "import os\nimport socket\n"


def remote_repo(root: Path) -> Path:
    config = {
        "architectures": ["XForCausalLM"],
        "auto_map": {"AutoModelForCausalLM": "modeling_x.X"},
    }
    return make_repo(root, config, **{"modeling_x.py": CODE})


def findings_of(root: Path) -> list:  # type: ignore[type-arg]
    return evaluate([], HostFacts(huggingface=described(root)))


def test_remote_code_is_a_low_finding_that_leaves_the_verdict_clean(tmp_path: Path) -> None:
    found = findings_of(remote_repo(tmp_path / "r"))
    assert [(f.rule_id, f.severity) for f in found] == [("AL930", Severity.LOW)]
    f = found[0]
    assert f.message == "the repository runs its own code (auto_map in config.json: modeling_x.py)"
    assert f.evidence[0] == "static: auto_map in config.json: modeling_x.py"
    assert f.evidence[1].startswith("static: modeling_x.py (sha256 ")
    assert f.evidence[1].endswith("): imports os, socket")
    assert verdict(found, False) is Verdict.CLEAN


def test_a_plain_repository_has_no_finding(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", {"architectures": ["BertModel"]}, **{"helper.py": "x"})
    assert findings_of(root) == []


def test_a_weight_map_escape_is_suspicious(tmp_path: Path) -> None:
    index = {"weight_map": {"a": "../../etc/passwd", "b": "model.safetensors"}}
    root = make_repo(tmp_path / "r", {}, **{"model.safetensors.index.json": json.dumps(index)})
    found = findings_of(root)
    assert [f.rule_id for f in found] == ["AL931"]
    assert "'../../etc/passwd' points outside the repository" in found[0].evidence[0]
    assert verdict(found, False) is Verdict.SUSPICIOUS


def test_unreadable_repository_json_is_suspicious(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "r", None, **{"config.json": '{"a": 1, "a": 1}'})
    found = findings_of(root)
    assert [f.rule_id for f in found] == ["AL932"]
    assert found[0].evidence == ["static: config.json: refused: duplicate key 'a'"]
    assert verdict(found, False) is Verdict.SUSPICIOUS


def test_remote_code_that_does_not_parse_is_unread_evidence(tmp_path: Path) -> None:
    root = remote_repo(tmp_path / "r")
    (root / "modeling_x.py").write_text("def (:\n")
    found = findings_of(root)
    assert [f.rule_id for f in found] == ["AL932", "AL930"]
    assert "does not parse" in found[0].evidence[0]
    # a .py file that nothing runs is listed, not a finding
    plain = make_repo(tmp_path / "p", {}, **{"script.py": "def (:\n"})
    assert findings_of(plain) == []


def test_evidence_is_bounded(tmp_path: Path) -> None:
    root = remote_repo(tmp_path / "r")
    for i in range(30):
        (root / f"m{i:02}.py").write_text("import os\n")
    (f,) = findings_of(root)
    assert len(f.evidence) == 10 and f.evidence[-1] == "static: ... and 23 more"
    assert f.evidence[1].startswith("static: modeling_x.py ")  # what auto_map names comes first


# --- admission ------------------------------------------------------------------------------


def _admission(root: Path, trusted: bool) -> Admission:
    c = analysis.Collected(
        policy=Policy(), model=ModelInfo(path="", format="", detected_by="", size_bytes=0, files=[])
    )
    return Admission(root, "auto", preflight.SigningOptions(), c, trust_remote_code=trusted)


def test_admission_refuses_remote_code_before_the_static_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = remote_repo(tmp_path / "r")

    def no_static_read(path: Path) -> None:
        raise AssertionError("the static read started")

    monkeypatch.setattr(admission_module.preflight, "Pending", no_static_read)
    with pytest.raises(UsageError, match="ships its own code"):
        _admission(root, trusted=False).start()


def test_admission_puts_the_repository_in_the_model_info(tmp_path: Path) -> None:
    a = _admission(remote_repo(tmp_path / "r"), trusted=True)
    a.start()
    a.finish()
    hf = a.collected.model.huggingface
    assert hf is not None and hf.remote_code and hf.architectures == ["XForCausalLM"]


# --- views ----------------------------------------------------------------------------------


def _report(root: Path):  # type: ignore[no-untyped-def]
    a = _admission(root, trusted=True)
    a.start()
    a.finish()
    a.collected.static_only = True
    return analysis.build(a.collected)


def test_the_views_show_the_repository_and_its_code(tmp_path: Path) -> None:
    root = remote_repo(tmp_path / "r")
    (root / "evil\x1b[31m.py").write_text("import subprocess\n")
    report = _report(root)
    assert report.verdict is Verdict.CLEAN
    assert report.model.huggingface is not None
    text = render_text(report, width=200)
    assert "hugging face  a local repository: XForCausalLM, task causal-lm" in text
    assert "remote code   auto_map in config.json" in text
    assert "modeling_x.py sha256 " in text and ": imports os, socket" in text
    assert "\x1b" not in text
    page = render_html(report)
    assert '<dl id="huggingface">' in page and '<table id="code-files">' in page
    assert "modeling_x.py" in page and "os, socket" in page and "\x1b" not in page


# --- the command line -----------------------------------------------------------------------


@pytest.fixture
def no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/airlock-test-hf.sock")


@pytest.mark.usefixtures("no_docker")
@pytest.mark.parametrize("command", ["run", "describe"])
def test_run_refuses_remote_code_without_the_flag_before_docker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    root = remote_repo(tmp_path / "r")
    x = tmp_path / "x.npy"
    np.save(x, np.zeros(2, np.float32))
    argv = [command, str(root)] + (["--input", str(x)] if command == "run" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert [ln for ln in err.splitlines() if ln.strip()] == [REFUSAL.format(name=root)]


@pytest.mark.usefixtures("no_docker")
def test_the_flag_and_scan_go_on_to_the_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --trust-remote-code (and always for scan) the run is not refused: it goes on and
    needs Docker, which is not there."""
    root = remote_repo(tmp_path / "r")
    for argv in (["describe", str(root), "--trust-remote-code"], ["scan", str(root)]):
        code = main(argv)
        err = capsys.readouterr().err
        assert code != 0 and "ships its own code" not in err, err
        assert err.startswith("airlock: error: "), err


@pytest.mark.usefixtures("no_docker")
def test_the_python_api_refuses_as_the_command_line_does(tmp_path: Path) -> None:
    from runner import Sandbox

    root = remote_repo(tmp_path / "r")
    sb = Sandbox(root)
    with pytest.raises(UsageError, match="ships its own code") as e:
        sb.open()
    assert e.value.hint.startswith("pass --trust-remote-code")
    report = sb.report()
    assert report.sandbox is None and report.error is not None
    assert report.error.kind == "UsageError"
