"""Type checkers see runner's public API: the lazy names resolve to their real types."""

from __future__ import annotations

import ast
from pathlib import Path

import runner
from tests.fixtures import user_code

ROOT = Path(__file__).resolve().parents[2]


def test_type_checkers_import_every_exported_name() -> None:
    tree = ast.parse((ROOT / "runner" / "__init__.py").read_text())
    block = next(
        n
        for n in tree.body
        if isinstance(n, ast.If)
        and ast.unparse(n.test) in ("TYPE_CHECKING", "_typing.TYPE_CHECKING")
    )
    seen = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.module, ast.unparse(node)
        for alias in node.names:
            assert alias.asname == alias.name, f"{alias.name}: import it as itself (re-export)"
            seen[alias.name] = node.module
    assert seen == {name: f"runner.{module}" for name, module in runner._EXPORTS.items()}


def test_mypy_sees_the_public_types(tmp_path: Path) -> None:
    # this checkout's runner, first on the path (the venv may hold another checkout's)
    user_code.assert_sees_real_types(user_code.check(tmp_path, pythonpath=ROOT))
