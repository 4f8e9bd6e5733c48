"""The rules of parser abuse, code in metadata and torch.package code (AL620-AL625, from the
static read: runner.static.signs) and of the measured cost of loading (AL508-AL509, from the
host's cgroup samples: runner.rules.cost), as rows the rule table (runner.rules.catalog)
splices in: id, RuleName member, title, Severity member, evidence. Plain data: this module
imports nothing of Airlock."""

from __future__ import annotations

Row = tuple[str, str, str, str, str]

LOAD_COST: tuple[Row, ...] = (
    (
        "AL508",
        "LOAD_MEMORY_COST",
        "Loading took far more memory than the file warrants",
        "MEDIUM",
        "host: cgroup memory while the model loaded grew past the startup baseline by more "
        "than 512 MiB and 8 times the model's size (a few bytes that unpack into gigabytes)",
    ),
    (
        "AL509",
        "LOAD_CPU_COST",
        "Loading took far more CPU than the file warrants",
        "MEDIUM",
        "host: cgroup CPU time while the model loaded above 5 s and 30 s per GiB of the "
        "model's size",
    ),
)
SIGNS: tuple[Row, ...] = (
    (
        "AL620",
        "PARSER_ABUSE",
        "File built to overload its parser",
        "MEDIUM",
        "static: a safetensors header over 10 MiB, more than 100,000 tensors in one header, "
        "or tensor shapes that declare more than 16 times the bytes the file holds",
    ),
    (
        "AL621",
        "PICKLE_ALLOCATION",
        "Pickle asks for far more memory than its size",
        "MEDIUM",
        "static: allocator calls in the pickle's opcodes (numpy/torch ones, zeros, empty, "
        "full, arange; bytes, bytearray, list(range(n)), a literal repeated by operator.mul) "
        "and container items whose literal sizes add up to more than 256 MiB and 64 times "
        "the file's size",
    ),
    (
        "AL622",
        "METADATA_CODE",
        "Code-like text in model metadata",
        "LOW",
        "static: __import__, os.system, eval(, exec(, subprocess, import os, ... in "
        "safetensors __metadata__ or ONNX metadata_props and doc strings (text, never run)",
    ),
    (
        "AL623",
        "PACKAGE_DANGEROUS_CODE",
        "Packaged code reaches something dangerous",
        "CRITICAL",
        "static: a torch.package module's source (parsed, never run) imports or uses "
        "subprocess, socket, ctypes, os.system, os.exec*, pty, runpy, ...",
    ),
    (
        "AL624",
        "PACKAGE_DYNAMIC_CODE",
        "Packaged code builds names or code at run time",
        "HIGH",
        "static: a torch.package module's source imports a computed name "
        "(__import__(expr), importlib.import_module(expr)), looks up a computed attribute of "
        "a module, reaches sys.modules or builtins.__dict__, or calls eval, exec or compile",
    ),
    (
        "AL625",
        "PACKAGE_UNREADABLE",
        "Packaged code not read",
        "MEDIUM",
        "static: a torch.package module's source or pickle the host could not read (too "
        "large, too many files, not Python the host parses): it was not checked",
    ),
)
