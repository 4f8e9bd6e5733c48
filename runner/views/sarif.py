"""SARIF 2.1.0 for code-scanning tools: one run, Airlock's rules, one result per finding.

Every string of the report is neutralised first (runner.views.neutral), and the JSON escapes
every non-ASCII character, so no control character or bidi override reaches a reader.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner import __version__
from runner.report import Report
from runner.rules.catalog import RULES, Severity
from runner.views.neutral import neutralised

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}
_SCORE = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.0",
    Severity.LOW: "2.0",
    Severity.INFO: "0.0",
}


def _rules() -> list[dict[str, Any]]:
    """Airlock's rules as SARIF reportingDescriptors, in catalogue order."""
    return [
        {
            "id": r.id,
            "name": r.name,
            "shortDescription": {"text": r.title},
            "fullDescription": {"text": f"{r.title}. Evidence: {r.evidence}."},
            "defaultConfiguration": {"level": _LEVEL[r.severity]},
            "properties": {
                "security-severity": _SCORE[r.severity],
                "severity": r.severity.value,
                "tags": ["security", "untrusted-model"],
            },
        }
        for r in RULES
    ]


def _results(report: Report, uri: str) -> list[dict[str, Any]]:
    """One SARIF result per finding, located at the model."""
    index = {r.id: i for i, r in enumerate(RULES)}
    return [
        {
            "ruleId": f.rule_id,
            "ruleIndex": index[f.rule_id],
            "level": _LEVEL[f.severity],
            "message": {"text": f"{f.message}. Evidence: " + "; ".join(f.evidence[:5])},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri}}}],
            "properties": {
                "phase": f.phase.value if f.phase else None,
                "source": f.source.value,
                "severity": f.severity.value,
                "eventCount": f.event_count,
            },
        }
        for f in report.findings
    ]


def render_sarif(report: Report) -> str:
    report = neutralised(report)  # the one place this view makes the report's text safe
    uri = (
        Path(report.model.path).as_uri() if report.model.path.startswith("/") else report.model.path
    )
    sarif = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "Airlock",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "rules": _rules(),
                    }
                },
                "artifacts": [
                    {
                        "location": {"uri": uri},
                        "hashes": {"sha-256": report.model.files[0].sha256}
                        if report.model.files
                        else {},
                    }
                ],
                "results": _results(report, uri),
                "properties": {
                    "verdict": report.verdict.value,
                    "schemaVersion": report.schema_version,
                },
            }
        ],
    }
    return json.dumps(sarif, indent=2, ensure_ascii=True) + "\n"
