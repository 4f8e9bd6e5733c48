"""The rules of pickle globals (AL601-AL602 from the worker's find_class events, AL611-AL616
from the static read of the pickle's opcodes), as rows the rule table (runner.rules.catalog)
splices in: id, RuleName member, title, Severity member, evidence. Globals are judged by their
full dotted path (runner.rules.pickle_globals). Plain data: this module imports nothing of
Airlock."""

from __future__ import annotations

Row = tuple[str, str, str, str, str]

WORKER: tuple[Row, ...] = (
    (
        "AL601",
        "DANGEROUS_PICKLE_IMPORT",
        "Dangerous pickle import observed",
        "CRITICAL",
        "worker: pickle.find_class of a full dotted path (module.name, every attribute of "
        "the name) passing through os, subprocess, builtins.eval/exec/getattr, __globals__, "
        "sys, runpy, importlib, ctypes, ... anywhere in it",
    ),
    (
        "AL602",
        "UNUSUAL_PICKLE_IMPORT",
        "Unusual pickle import observed",
        "MEDIUM",
        "worker: pickle.find_class of a full dotted path on no allow-list (under torch and "
        "numpy too: only the exact paths benign checkpoints use are ordinary)",
    ),
)
STATIC: tuple[Row, ...] = (
    (
        "AL611",
        "STATIC_DANGEROUS_IMPORT",
        "Pickle would import something dangerous",
        "CRITICAL",
        "static: a GLOBAL/STACK_GLOBAL/INST in the pickle's opcodes whose full dotted path "
        "passes through os, subprocess, builtins.eval/exec/getattr, __globals__, sys, runpy, "
        "... anywhere in it (read, never unpickled)",
    ),
    (
        "AL612",
        "STATIC_HIDDEN_IMPORT",
        "Pickle builds an import name at run time",
        "HIGH",
        "static: a STACK_GLOBAL whose module or name is not a literal "
        "in the stream (computed by an earlier call)",
    ),
    (
        "AL613",
        "STATIC_UNUSUAL_IMPORT",
        "Pickle would import something unusual",
        "MEDIUM",
        "static: a GLOBAL/STACK_GLOBAL whose full dotted path is on no allow-list (under "
        "torch and numpy too: only the exact paths benign checkpoints use are ordinary)",
    ),
    (
        "AL614",
        "STATIC_EXTENSION_IMPORT",
        "Pickle imports by copyreg extension code",
        "HIGH",
        "static: an EXT1/EXT2/EXT4 opcode, which imports the global registered under a number "
        "and names none in the stream (Python registers no codes of its own: a model file "
        "that uses one registers it first, or relies on code that did)",
    ),
    (
        "AL615",
        "STATIC_PICKLE_UNREAD",
        "Pickle not read to the end",
        "MEDIUM",
        "static: the read of the pickles stopped at a bound (opcodes, imports recorded), or a "
        "zip member holding a pickle was not read (too large, damaged): what follows was not "
        "checked; counts in the evidence",
    ),
    (
        "AL616",
        "STATIC_MALFORMED_IMPORT",
        "Pickle import name is malformed or cut",
        "HIGH",
        "static: a global whose module or name is no exact dotted identifier (whitespace, "
        "empty segments, characters NFKC would change, unprintable, longer than the read keeps)",
    ),
)
