"""A chat template judged on the host, from its syntax tree: parsed by jinja2's parser (which
executes nothing), never rendered.

Python serving stacks render a model's chat template with a plain (not sandboxed) Jinja
environment, so a template that walks Python's object model (`cycler.__init__.__globals__`,
`''.__class__.__mro__[1].__subclasses__()`, `self._TemplateReference__context`) runs code the
moment a conversation is formatted. What is looked for, at every attribute access, item access,
`|attr()` filter and `str.format` field:

- a name that starts with an underscore, or one of the frame, code and generator attributes
  jinja2's own sandbox refuses: REACHES (AL960, critical);
- the name is computed from strings (concatenation, `~`, `%`, `|join`, `|replace`, `|format`,
  `.format()`, slices, `{% set %}` and loops over constants): folded to every value it can take,
  then judged as above; a name computed from what cannot be folded (the conversation's own
  strings too: a template that lets a user's message name an attribute is a backdoor), and any
  `|attr()` of a name not folded to constants: DYNAMIC (AL963). A plain variable as a key
  (`properties[name]`, as tool-calling templates do) is an ordinary lookup;
- `{% include %}`, `{% import %}`, `{% extends %}`: other templates read through a loader,
  which a chat template never needs: DYNAMIC too.

A template over MAX_CHARS, or one that does not parse (or nests past the parser's recursion),
cannot be judged: UNREADABLE (AL962).
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import product
from typing import Any

MAX_CHARS = 256 << 10
MAX_VALUES = 64  # folded values kept per expression
MAX_NODES = 200_000  # nodes walked of one template
MAX_FOUND = 10
_PASSES = 4  # over the template's assignments, until what names hold stops changing
# frame, code and generator attributes (jinja2.sandbox refuses these beside every "_" name)
UNSAFE = frozenset(
    {
        "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame",
        "ag_code", "ag_await", "f_globals", "f_locals", "f_builtins", "f_back", "f_code",
        "tb_frame", "tb_next", "func_globals", "func_code", "func_closure", "im_func", "mro",
    }
)  # fmt: skip
_STRING_METHODS = frozenset(
    {
        "format", "format_map", "join", "replace", "lower", "upper", "title", "capitalize",
        "swapcase", "casefold", "strip", "lstrip", "rstrip", "removeprefix", "removesuffix",
        "center", "ljust", "rjust", "zfill", "encode", "decode", "translate",
    }
)  # fmt: skip
_STRING_FILTERS = frozenset(
    {
        "join", "format", "replace", "lower", "upper", "title", "capitalize", "trim", "string",
        "reverse", "first", "last", "default", "d", "e", "escape", "safe", "center", "indent",
        "urlencode", "striptags", "wordwrap", "truncate", "forceescape", "list", "sort",
        "unique", "map", "select", "reject", "batch", "slice", "min", "max", "sum",
    }
)  # fmt: skip


@dataclass
class Judgement:
    reaches: list[str] = field(default_factory=list)  # AL960 evidence
    dynamic: list[str] = field(default_factory=list)  # AL963 evidence
    unreadable: str = ""  # AL962 evidence


@dataclass(frozen=True)
class Folded:
    """The string values an expression can take: `values` complete when `computed` is False
    and `opaque` is False; `computed`: built by string operations from something unknown;
    `opaque`: an input (a variable the template is given), never a name the template built."""

    values: frozenset[str] = frozenset()
    computed: bool = False
    opaque: bool = False


_OPAQUE = Folded(opaque=True)
_COMPUTED = Folded(computed=True)


def is_unsafe(name: str) -> bool:
    return name.startswith("_") or name in UNSAFE


def judge(source: str) -> Judgement:
    """Judge one template's source; never raises."""
    out = Judgement()
    if len(source) > MAX_CHARS:
        out.unreadable = f"{len(source)} characters, over the bound of {MAX_CHARS}"
        return out
    try:
        tree = _environment().parse(source)
    except RecursionError:
        out.unreadable = "nested too deeply for the parser"
        return out
    except Exception as e:  # jinja2 raises TemplateSyntaxError, and others on odd input
        out.unreadable = f"does not parse as Jinja: {type(e).__name__}: {str(e)[:200]}"
        return out
    try:
        _Walker(out).run(tree)
    except RecursionError:
        out.unreadable = "nested too deeply to walk"
    return out


def _environment() -> Any:
    """The environment Python serving stacks parse with: loop controls on, and the
    {% generation %} block transformers' templates may use (parsed as its body)."""
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension

    class Generation(Extension):
        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body, lineno=lineno)

    return jinja2.Environment(extensions=["jinja2.ext.loopcontrols", Generation])  # noqa: S701


class _Walker:
    def __init__(self, out: Judgement) -> None:
        self.out = out
        self.names: dict[str, Folded] = {}
        self.seen = 0

    def run(self, tree: Any) -> None:
        from jinja2 import nodes

        all_nodes = list(self._nodes(tree))
        for _ in range(_PASSES):  # what each name may hold, to a fixed point (bounded)
            before = dict(self.names)
            for n in all_nodes:
                if isinstance(n, nodes.Assign):
                    self._bind(n.target, self.fold(n.node))
                    self._namespace(n)
                elif isinstance(n, nodes.AssignBlock):
                    self._bind(n.target, self._fold_body(n.body))
                elif isinstance(n, nodes.For):
                    self._bind(n.target, self._items(n.iter))
            if self.names == before:
                break
        for n in all_nodes:
            self._check(n)

    def _nodes(self, tree: Any) -> Iterator[Any]:
        stack = [tree]
        while stack and self.seen < MAX_NODES:
            n = stack.pop()
            self.seen += 1
            yield n
            stack.extend(reversed(list(n.iter_child_nodes())))

    # --- what names hold ------------------------------------------------------------------

    def _bind(self, target: Any, value: Folded) -> None:
        from jinja2 import nodes

        if isinstance(target, nodes.Name):
            key = target.name
        elif isinstance(target, nodes.NSRef):
            key = f"{target.name}.{target.attr}"
        elif isinstance(target, nodes.Tuple):  # unpacking: each part may be any of it
            for t in target.items:
                self._bind(t, value)
            return
        else:
            return
        old = self.names.get(key)
        if old is not None:
            value = _union([old, value])
        self.names[key] = value

    def _namespace(self, n: Any) -> None:
        """{% set ns = namespace(k=...) %}: what ns.k starts with."""
        from jinja2 import nodes

        call, target = n.node, n.target
        if (
            isinstance(call, nodes.Call)
            and isinstance(target, nodes.Name)
            and isinstance(call.node, nodes.Name)
            and call.node.name == "namespace"
        ):
            for kw in call.kwargs:
                self._bind(nodes.NSRef(target.name, kw.key), self.fold(kw.value))

    def _fold_body(self, body: list[Any]) -> Folded:
        from jinja2 import nodes

        parts: list[Folded] = []
        for stmt in body:
            if not isinstance(stmt, nodes.Output):
                return _COMPUTED
            parts += [self.fold(n) for n in stmt.nodes]
        return _concat(parts)

    def _items(self, node: Any) -> Folded:
        """What a loop's target takes, iterating over node."""
        from jinja2 import nodes

        if isinstance(node, (nodes.List, nodes.Tuple)):
            return _union([self.fold(i) for i in node.items])
        folded = self.fold(node)
        if folded.opaque:
            return _OPAQUE
        # iterating over a string gives its characters
        return Folded(frozenset(c for v in folded.values for c in v), folded.computed)

    # --- folding --------------------------------------------------------------------------

    def fold(self, node: Any) -> Folded:
        from jinja2 import nodes

        if isinstance(node, nodes.Const):
            v = node.value
            return Folded(frozenset({v if isinstance(v, str) else str(v)}))
        if isinstance(node, nodes.TemplateData):
            return Folded(frozenset({node.data}))
        if isinstance(node, nodes.Name):
            return self.names.get(node.name, _OPAQUE)
        if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name):
            known = self.names.get(f"{node.node.name}.{node.attr}")
            if known is not None:
                return known
            whole = self.names.get(node.node.name)  # a dict the template built: any value
            if whole is not None and not whole.opaque:
                return whole
        if isinstance(node, nodes.Dict):
            return _union([self.fold(i.value) for i in node.items])
        if isinstance(node, nodes.Concat):
            return _concat([self.fold(n) for n in node.nodes])
        if isinstance(node, nodes.Add):
            if any(_number(n) for n in (node.left, node.right)):
                return _OPAQUE  # arithmetic (loop.index0 + 1): not a name
            left, right = self.fold(node.left), self.fold(node.right)
            if left.opaque and right.opaque:
                return _OPAQUE  # numbers, or lists: not a name this template built
            return _concat([left, right])
        if isinstance(node, nodes.Mul):
            return self._repeat(node)
        if isinstance(node, nodes.Mod):
            return self._percent(node)
        if isinstance(node, nodes.CondExpr):
            alt = self.fold(node.expr2) if node.expr2 is not None else Folded(frozenset({""}))
            return _union([self.fold(node.expr1), alt])
        if isinstance(node, nodes.Filter):
            return self._filter(node)
        if (
            isinstance(node, nodes.Call)
            and isinstance(node.node, nodes.Getattr)
            and node.node.attr in _STRING_METHODS
        ):
            return self._method(node)
        if isinstance(node, nodes.Getitem):
            return self._subscript(node)
        if isinstance(node, (nodes.List, nodes.Tuple)):
            return _union([self.fold(i) for i in node.items])
        return _OPAQUE

    def _repeat(self, node: Any) -> Folded:
        from jinja2 import nodes

        left = self.fold(node.left)
        if isinstance(node.right, nodes.Const) and isinstance(node.right.value, int):
            n = node.right.value
            if 0 <= n <= 64 and not left.opaque:
                return Folded(frozenset(v * n for v in left.values), left.computed)
        return _COMPUTED if not left.opaque else _OPAQUE

    def _percent(self, node: Any) -> Folded:
        from jinja2 import nodes

        left = self.fold(node.left)
        if left.opaque:
            return _OPAQUE
        right = node.right.items if isinstance(node.right, nodes.Tuple) else [node.right]
        args = [self.fold(a) for a in right]
        return _apply(left, args, lambda f, *a: f % tuple(a))

    def _filter(self, node: Any) -> Folded:
        from jinja2 import nodes

        name = node.name
        base = self.fold(node.node) if node.node is not None else _OPAQUE
        if name == "join" and isinstance(node.node, (nodes.List, nodes.Tuple)):
            sep = self.fold(node.args[0]) if node.args else Folded(frozenset({""}))
            items = [self.fold(i) for i in node.node.items]
            return _apply(sep, items, lambda s, *a: s.join(a))
        if name in ("lower", "upper", "title", "capitalize", "trim", "string", "reverse"):
            ops = {
                "lower": str.lower,
                "upper": str.upper,
                "title": str.title,
                "capitalize": str.capitalize,
                "trim": str.strip,
                "string": str,
                "reverse": lambda s: s[::-1],
            }
            return _apply(base, [], ops[name])
        if name == "replace" and len(node.args) >= 2:
            args = [self.fold(a) for a in node.args[:2]]
            return _apply(base, args, lambda s, a, b: s.replace(a, b))
        if name == "format":
            args = [self.fold(a) for a in node.args]
            return _apply(base, args, lambda f, *a: f % tuple(a))
        if name in ("first", "last"):
            return _apply(base, [], lambda s: s[:1] if name == "first" else s[-1:])
        if name in _STRING_FILTERS:
            return _COMPUTED  # a string made from what the template was given
        return _OPAQUE

    def _method(self, node: Any) -> Folded:
        attr = node.node.attr
        base = self.fold(node.node.node)
        args = [self.fold(a) for a in node.args]
        if attr == "format" and not node.kwargs and _plain_fields(base):
            return _apply(base, args, lambda f, *a: f.format(*a))
        if attr in ("format", "format_map"):
            return _OPAQUE if base.opaque else _COMPUTED  # its fields are judged in _check
        if attr == "join" and not base.opaque:
            return _COMPUTED
        return _apply(base, args, lambda s, *a: getattr(str, attr)(s, *a))

    def _subscript(self, node: Any) -> Folded:
        from jinja2 import nodes

        base = self.fold(node.node)
        if base.opaque:
            return _OPAQUE
        arg = node.arg
        if isinstance(arg, nodes.Slice):
            bounds: list[int | None] = []
            for p in (arg.start, arg.stop, arg.step):
                if p is None:
                    bounds.append(None)
                elif isinstance(p, nodes.Const) and isinstance(p.value, int) and p.value != 0:
                    bounds.append(p.value)
                elif isinstance(p, nodes.Const) and p.value == 0 and p is not arg.step:
                    bounds.append(0)
                else:
                    return _COMPUTED
            s = slice(*bounds)
            return Folded(frozenset(v[s] for v in base.values), base.computed)
        elif isinstance(arg, nodes.Const) and isinstance(arg.value, str):
            return base  # a key into a dict the template built: any of its values
        elif isinstance(arg, nodes.Const) and isinstance(arg.value, int):
            i = arg.value
            return Folded(
                frozenset(v[i] for v in base.values if -len(v) <= i < len(v)), base.computed
            )
        return _COMPUTED

    # --- judging access sites -------------------------------------------------------------

    def _check(self, n: Any) -> None:
        from jinja2 import nodes

        if isinstance(n, nodes.Getattr):
            self._name(n.attr, f".{n.attr}", n)
        elif isinstance(n, nodes.Getitem) and not isinstance(n.arg, nodes.Slice):
            self._key(self.fold(n.arg), "[...]", n)
        elif isinstance(n, nodes.Filter) and n.name == "attr" and n.args:
            folded = self.fold(n.args[0])  # |attr of a name the caller gives: dynamic too
            self._key(Folded(folded.values, folded.computed or folded.opaque), "|attr(...)", n)
        elif isinstance(n, nodes.Call) and isinstance(n.node, nodes.Getattr):
            if n.node.attr in ("format", "format_map"):
                self._format(self.fold(n.node.node), n)
            elif n.node.attr in ("__getattribute__", "__getattr__", "getattr"):
                for a in n.args[:1]:
                    self._key(self.fold(a), f".{n.node.attr}(...)", n)
        elif isinstance(n, (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
            self._dynamic(f"{{% {type(n).__name__.lower()} %}} reads another template", n)

    def _name(self, name: str, shown: str, n: Any) -> None:
        if is_unsafe(name) and len(self.out.reaches) < MAX_FOUND:
            self.out.reaches.append(f"{shown} at line {getattr(n, 'lineno', '?')}")

    def _key(self, folded: Folded, shown: str, n: Any) -> None:
        for v in sorted(folded.values):
            if is_unsafe(v):
                self._name(v, f"{shown} = {v!r}", n)
                return
        if folded.computed:
            self._dynamic(f"{shown} with a name computed at render time", n)

    def _format(self, folded: Folded, n: Any) -> None:
        for v in sorted(folded.values):
            for part in _format_fields(v):
                if is_unsafe(part):
                    self._name(part, f"a format field {{...{part}}} in {v[:60]!r}", n)
                    return
        if folded.computed:
            self._dynamic(".format() of a string computed at render time", n)

    def _dynamic(self, what: str, n: Any) -> None:
        if len(self.out.dynamic) < MAX_FOUND:
            self.out.dynamic.append(f"{what} at line {getattr(n, 'lineno', '?')}")


def _plain_fields(folded: Folded) -> bool:
    """Every value a format string whose fields name no attribute or key ({0}, {}, {x})."""
    try:
        return all(
            f is None or not any(c in f for c in ".[!:")
            for v in folded.values
            for _, f, _, _ in string.Formatter().parse(v)
        )
    except ValueError:
        return False


def _number(node: Any) -> bool:
    from jinja2 import nodes

    return isinstance(node, nodes.Const) and isinstance(node.value, int | float)


def _format_fields(fmt: str) -> Iterable[str]:
    """The attribute and key names in a str.format string's fields ({0.__class__}, {x[_y]})."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(fmt) if f]
    except ValueError:
        return ["_unparsable"] if "{" in fmt and "_" in fmt else []
    names: list[str] = []
    for f in fields[:64]:
        for chunk in f.replace("]", "").replace("[", ".").split(".")[1:]:
            names.append(chunk.strip())
    return names


def _union(parts: list[Folded]) -> Folded:
    values: set[str] = set()
    for p in parts:
        values |= p.values
    computed = any(p.computed for p in parts) or len(values) > MAX_VALUES
    opaque = all(p.opaque for p in parts) and bool(parts)
    return Folded(frozenset(sorted(values)[:MAX_VALUES]), computed, opaque)


def _concat(parts: list[Folded]) -> Folded:
    """Strings joined end to end: every combination of the parts' values; a part that is
    unknown (an input, or computed) makes the result computed from it."""
    if not parts:
        return Folded(frozenset({""}))
    unknown = any(p.opaque or p.computed for p in parts)
    known = [sorted(p.values) or [""] for p in parts]
    values: set[str] = set()
    total = 1
    for k in known:
        total *= len(k)
    if total <= MAX_VALUES:
        values = {"".join(c) for c in product(*known)}
    else:
        unknown = True
    return Folded(frozenset(values), unknown)


def _apply(base: Folded, args: list[Folded], op: Any) -> Folded:
    """op over every combination of base's and args' values; an unknown one makes the
    result computed (an exception from op drops that combination)."""
    if base.opaque and not base.values:
        return _COMPUTED  # a string made from what the template was given
    unknown = base.computed or base.opaque or any(a.computed or a.opaque for a in args)
    pools = [sorted(base.values)] + [sorted(a.values) or [""] for a in args]
    total = 1
    for p in pools:
        total *= max(len(p), 1)
    if total > MAX_VALUES:
        return _COMPUTED
    values: set[str] = set()
    for combo in product(*pools):
        try:
            r = op(*combo)
        except (TypeError, ValueError, IndexError, KeyError, OverflowError):
            continue
        if isinstance(r, str) and len(r) <= 4096:
            values.add(r)
    return Folded(frozenset(values), unknown)
