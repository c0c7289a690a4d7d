"""The package's layering, read from the import statements: contracts at the bottom, methods and
binarisers beside each other (neither imports the other, nor the engine), the engine above both
(reaching them only through their registries and seams), the executors and edges above it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "raydist"


def imports(path: Path) -> set[str]:
    """Every raydist module a file imports (at module level or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("raydist")}


def modules_under(sub: str) -> list[Path]:
    return sorted((PKG / sub).rglob("*.py"))


# (package, modules it must not import, exceptions allowed)
RULES = [
    ("methods", ("raydist.engine", "raydist.distributed", "raydist.segment", "raydist.cli", "raydist.tracking"), ()),
    ("segment", ("raydist.methods", "raydist.engine", "raydist.distributed", "raydist.cli", "raydist.tracking"), ()),
    ("engine", ("raydist.methods.", "raydist.segment.", "raydist.distributed", "raydist.cli", "raydist.tracking"),
     ("raydist.segment.base", "raydist.segment.registry")),
]


@pytest.mark.parametrize("package, banned, allowed", RULES, ids=[r[0] for r in RULES])
def test_no_import_runs_back_up_the_layers(package, banned, allowed):
    bad = [f"{p.relative_to(PKG.parent)} imports {m}" for p in modules_under(package) for m in sorted(imports(p))
           if m.startswith(banned) and m not in allowed]  # fmt: skip
    assert not bad, "\n".join(bad)


def test_contracts_import_nothing_of_raydist():
    assert imports(PKG / "contracts.py") == set()


def test_the_engine_names_no_binariser():
    text = "\n".join(p.read_text() for p in modules_under("engine")).lower()
    assert "ttt4as" not in text and "mebin" not in text
