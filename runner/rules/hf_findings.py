"""Findings from what the host read in a Hugging Face repository (runner.hf.repo, the report's
HfInfo): AL930 when it ships code that loading runs, AL931 for a weight map that points outside
the repository or at nothing, AL932 for repository JSON (or code) that could not be read, so
that evidence the host could not read keeps the verdict from clean."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.hf.repo import origin
from runner.rules.catalog import RuleName

if TYPE_CHECKING:
    from runner.report import CodeFile, HfInfo

Judged = tuple[RuleName, str, list[str]]
MAX_EVIDENCE = 10  # what a finding keeps (runner.rules.evaluation)


def _cite(f: CodeFile) -> str:
    what = f"imports {', '.join(f.imports) or 'nothing'}" if not f.problem else f.problem
    digest = f"sha256 {f.sha256}" if f.sha256 else "sha256 unknown"
    return f"static: {f.path} ({digest}): {what}"


def _cut(lines: list[str]) -> list[str]:
    if len(lines) <= MAX_EVIDENCE:
        return lines
    return [*lines[: MAX_EVIDENCE - 1], f"static: ... and {len(lines) - MAX_EVIDENCE + 1} more"]


def hf_findings(info: HfInfo | None) -> list[Judged]:
    if info is None:
        return []
    out: list[Judged] = []
    if info.remote_code:
        where = "; ".join(f"{origin(f)}: {', '.join(c)}" for f, c in info.auto_map.items())
        named = {c for files in info.auto_map.values() for c in files}
        first = sorted(info.code_files, key=lambda f: f.path not in named)  # what auto_map names
        cites = [f"static: {where}"] + [_cite(f) for f in first]
        out.append(
            (RuleName.REMOTE_CODE, f"the repository runs its own code ({where})", _cut(cites))
        )
    if info.index_problems:
        out.append(
            (
                RuleName.WEIGHT_MAP_ESCAPE,
                "a weight map names a file outside the repository or not in it",
                _cut([f"static: {p}" for p in info.index_problems]),
            )
        )
    unread = [f"static: {p}" for p in info.problems]
    if info.remote_code:  # code that runs and whose imports could not be read
        unread += [_cite(f) for f in info.code_files if f.problem]
    if unread:
        out.append(
            (
                RuleName.REPO_JSON_UNREADABLE,
                "part of the repository could not be read: what it says was not checked",
                _cut(unread),
            )
        )
    return out
