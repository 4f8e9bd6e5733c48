"""The rules of what the host reads in GGUF files (AL960-AL963: chat templates that reach Python
objects, headers out of bounds, templates that could not be judged, templates that compute the
names they look up), as rows the rule table (runner.rules.catalog) splices in: id, RuleName
member, title, Severity member, evidence; and SIGNS, the TamperKind each static finding carries,
with its rule and message. Plain data: this module imports nothing of Airlock."""

from __future__ import annotations

Row = tuple[str, str, str, str, str]

ROWS: tuple[Row, ...] = (
    (
        "AL960",
        "TEMPLATE_OBJECT_ACCESS",
        "Chat template reaches Python objects",
        "CRITICAL",
        "static: an attribute, item, attr filter or str.format field in tokenizer.chat_template "
        "(or "
        "tokenizer.chat_template.NAME) whose name starts with an underscore (__class__, "
        "__globals__, __subclasses__, __builtins__, __init__, name-mangled privates) or is a "
        "frame, code or generator attribute, also when the name is built from strings "
        "(concatenation, ~, %, join, replace, format, escapes, set and loops over constants, "
        "folded): how template injection runs code in a non-sandboxed Jinja environment",
    ),
    (
        "AL961",
        "GGUF_MALFORMED",
        "GGUF header out of bounds",
        "MEDIUM",
        "static: a GGUF magic, version (2 and 3 are read), tensor or key-value count, key or "
        "string length, array length or element type, tensor dimension count, type, alignment "
        "or offset out of the reader's bounds or past the file's size (offset and size inside "
        "the data section): what follows was not checked",
    ),
    (
        "AL962",
        "TEMPLATE_UNREADABLE",
        "Chat template could not be judged",
        "MEDIUM",
        "static: a chat template that does not parse as Jinja, nests past the parser's "
        "recursion or is over its size bound (256 KiB): what it does was not checked",
    ),
    (
        "AL963",
        "TEMPLATE_DYNAMIC",
        "Chat template computes the names it looks up",
        "MEDIUM",
        "static: an attribute or item lookup, attr filter or str.format in a chat template whose "
        "name is built at render time from what cannot be folded to constants, or an include, "
        "import or extends (another template read through a loader): what it reaches was not "
        "decided",
    ),
)
# TamperKind value: (RuleName member, the finding's message)
SIGNS: dict[str, tuple[str, str]] = {
    "template-object-access": (
        "TEMPLATE_OBJECT_ACCESS",
        "the chat template reaches Python objects, as template injection does",
    ),
    "gguf-malformed": (
        "GGUF_MALFORMED",
        "the GGUF header runs out of bounds: what follows was not checked",
    ),
    "template-unreadable": (
        "TEMPLATE_UNREADABLE",
        "the chat template could not be judged",
    ),
    "template-dynamic": (
        "TEMPLATE_DYNAMIC",
        "the chat template computes the names it looks up: what it reaches was not decided",
    ),
}
