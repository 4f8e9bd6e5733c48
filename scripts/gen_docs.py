"""Generate files derived from the code: the report's JSON Schema and the rules table.

`make docs` rewrites them; tests fail when they are stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.report import SCHEMA_VERSION, Report  # noqa: E402
from runner.rules.catalog import RULES  # noqa: E402

SCHEMA_PATH = ROOT / "runner" / "data" / "report.schema.json"
RULES_PATH = ROOT / "docs" / "rules.md"


def schema_text() -> str:
    schema = Report.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://airlock.invalid/schemas/report-{SCHEMA_VERSION}.json"
    return json.dumps(schema, indent=1, sort_keys=True) + "\n"


def rules_text() -> str:
    lines = [
        "# Rules",
        "",
        "Generated from `runner/rules/catalog.py` by `make docs`; a test keeps it in step.",
        "",
        "Each finding names its rule, the phase it happened in (startup, load, infer, teardown;",
        "none for facts about the whole run) and its source: `tracer` and `host` evidence Airlock",
        "gathered itself, `worker` evidence is what the worker reported about itself (the model",
        "could forge or hide it).",
        "",
        "Verdicts: **malicious** with any critical finding; **suspicious** with any high or",
        "medium finding; **error** when the model could not be evaluated and nothing above low was",
        "seen; otherwise **clean**.",
        "",
        "| id | name | severity | title | evidence it cites |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in RULES:
        lines.append(f"| {r.id} | {r.name} | {r.severity.value} | {r.title} | {r.evidence} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    SCHEMA_PATH.write_text(schema_text())
    RULES_PATH.write_text(rules_text())


if __name__ == "__main__":
    main()
