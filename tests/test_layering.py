"""The import contract: which top-level packages each package may import (docs/ARCHITECTURE.md).

Read from the source with ``ast``, so imports inside functions (lazy imports) count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("adapters", "bench", "bot", "storage")
# What each package must never import: the core knows no platform and no benchmark; storage
# knows no story rules. (The adapters may import the benchmarks: ``storybot bench`` is a command.)
FORBIDDEN = {
    "bot": {"adapters", "bench"},
    "storage": {"bot", "adapters", "bench"},
}


def imported_packages(path: Path) -> set[tuple[int, str]]:
    """(line, top-level package) of every import of one of our packages in ``path``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {(node.lineno, name.split(".")[0]) for name in names if name.split(".")[0] in OURS}
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_imports_what_it_must_not(package: str) -> None:
    broken = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, target in sorted(imported_packages(path))
        if target in FORBIDDEN[package]
    ]
    assert not broken, "\n".join(broken)


def test_the_contract_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from adapters.console import x\n    import bench.quality\n")
    assert imported_packages(module) == {(2, "adapters"), (3, "bench")}
