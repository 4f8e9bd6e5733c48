"""The rules of the host's own work on a model's files (AL704-AL708: a special file, a symlink
loop, a tree past the walk's bounds, a sparse file, a format detection that reached its read
bound), as rows the rule table (runner.rules.catalog) splices in: id, RuleName member, title,
Severity member, evidence. Plain data: this module imports nothing of Airlock."""

from __future__ import annotations

Row = tuple[str, str, str, str, str]

ROWS: tuple[Row, ...] = (
    (
        "AL704",
        "SPECIAL_FILE",
        "Special file in the model",
        "MEDIUM",
        "static: a FIFO, socket or device node in the model's tree (opening a FIFO blocks a "
        "reader for ever, opening a device can act); the host lists it and never opens it",
    ),
    (
        "AL705",
        "SYMLINK_LOOP",
        "Symlink loop in the model",
        "MEDIUM",
        "static: a symlink that cannot be resolved for its loop, or that leads back to a "
        "directory above it (a walker that follows links would never end); never followed",
    ),
    (
        "AL706",
        "WALK_LIMIT",
        "Model tree beyond the walk's bounds",
        "MEDIUM",
        "static: directories nested deeper than 64 levels, more than 50,000 entries, or a "
        "directory that could not be listed; that part was not examined (with counts)",
    ),
    (
        "AL707",
        "SPARSE_FILE",
        "Sparse file in the model",
        "MEDIUM",
        "static: a file with more than 1 GiB of holes, less than half of it on disk (built to "
        "make copies and hashes costly); the host copies and hashes only its data",
    ),
    (
        "AL708",
        "DETECT_LIMIT",
        "Format detection reached its read bound",
        "MEDIUM",
        "static: identifying a file's format needed more than its read bound (a zip central "
        "directory over 16 MiB, top-level ONNX fields past 1 MiB of reads or 100,000 fields, "
        "64 MiB for a directory); the file was not examined to the end",
    ),
)
