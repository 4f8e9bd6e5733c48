"""What the walk of a model's tree found, as static findings.

The walk (runner.worker.shared.tree) is bounded and opens nothing; what it met that a reader
should not (a FIFO, a socket, a device, a symlink loop, a sparse file) and what it could not
walk (too deep, too many entries, a directory it could not list) are Tamper entries, which the
rules turn into findings (AL704 to AL707). Nothing here raises for a hostile tree.
"""

from __future__ import annotations

from pathlib import Path

from runner.static.tamper import Tamper, TamperKind
from runner.worker.shared import tree

KINDS = {
    "special": TamperKind.SPECIAL_FILE,
    "loop": TamperKind.SYMLINK_LOOP,
    "limit": TamperKind.WALK_LIMIT,
    "sparse": TamperKind.SPARSE_FILE,
}


def tree_tamper(path: Path) -> list[Tamper]:
    """The walk's findings for a model file or directory."""
    try:
        walked = tree.scan(path)
    except OSError as e:
        return [Tamper(TamperKind.UNREADABLE, f"the model could not be examined: {e.strerror}")]
    return [
        Tamper(KINDS[key], line) for key, lines in tree.problems(walked).items() for line in lines
    ]
