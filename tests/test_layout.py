"""The library / stage split and the benchmark registry, checked on the source: what each layer may import,
and that no code outside the registry decides by a benchmark's name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from migrl.benchmarks import NAMES

SRC = Path(__file__).resolve().parents[1] / "src" / "migrl"


def _modules(folder: str) -> list[Path]:
    return sorted(p for p in (SRC / folder).glob("*.py") if p.name != "__init__.py")


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


@pytest.mark.parametrize("path", _modules("stages"), ids=lambda p: p.stem)
def test_no_stage_imports_another_stage(path):
    stages = {f"migrl.stages.{p.stem}" for p in _modules("stages")} - {f"migrl.stages.{path.stem}"}
    assert not _imported(path) & stages


@pytest.mark.parametrize("path", _modules("engines") + _modules("benchmarks") + _modules("scoring"), ids=lambda p: p.stem)
def test_library_modules_import_no_stage(path):
    assert not {m for m in _imported(path) if m.startswith("migrl.stages")}


def _name_comparisons(path: Path) -> list[str]:
    """Comparisons of a value with a benchmark's name (``x == "mig-bench"``, ``x in ("world", ...)``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Compare):
            continue
        for side in [node.left, *node.comparators]:
            values = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
            found += [f"{path}:{node.lineno} {v.value!r}" for v in values
                      if isinstance(v, ast.Constant) and v.value in NAMES]
    return found


def test_no_code_outside_the_registry_branches_on_a_benchmark_name():
    outside = [p for p in SRC.rglob("*.py") if "benchmarks" not in p.relative_to(SRC).parts]
    assert [hit for p in outside for hit in _name_comparisons(p)] == []


def test_the_name_check_sees_a_branch(tmp_path):
    branch = tmp_path / "x.py"
    branch.write_text('def f(cfg):\n    if cfg.benchmark == "mig-bench":\n        return 1\n    return cfg.b in ("world", "a")\n')
    assert len(_name_comparisons(branch)) == 2
