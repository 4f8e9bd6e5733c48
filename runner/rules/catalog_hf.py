"""The rules of what the host read in a Hugging Face repository's files (AL930-AL932: code the
repository ships and runs, a weight map pointing outside the repository or at nothing, JSON
that could not be read), as rows the rule table (runner.rules.catalog) splices in: id, RuleName
member, title, Severity member, evidence. Plain data: this module imports nothing of Airlock."""

from __future__ import annotations

Row = tuple[str, str, str, str, str]

ROWS: tuple[Row, ...] = (
    (
        "AL930",
        "REMOTE_CODE",
        "The repository runs its own code",
        "LOW",
        "static: an auto_map in config.json or tokenizer_config.json (loading runs the "
        "repository's Python, as trust_remote_code does); each .py file with its sha256 and the "
        "modules its import statements name, read from the syntax tree on the host, never run",
    ),
    (
        "AL931",
        "WEIGHT_MAP_ESCAPE",
        "Weight map points outside the repository",
        "MEDIUM",
        "static: an index's weight_map naming an absolute path, a path climbing out with '..', "
        "a file that resolves outside the repository, one that is not a regular file, or one "
        "that is not there",
    ),
    (
        "AL932",
        "REPO_JSON_UNREADABLE",
        "Repository file could not be read",
        "MEDIUM",
        "static: config.json, tokenizer_config.json, adapter_config.json or an index that is "
        "not a regular file, is over its size bound, not UTF-8, not JSON or cut short, nested "
        "too deep, or holds duplicate keys, NaN or huge numbers; fields of the wrong type; a "
        "tree or .py files past the read's bounds: what it says was not checked",
    ),
)
