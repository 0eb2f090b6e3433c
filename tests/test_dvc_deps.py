"""dvc.yaml lists as deps exactly the project modules each stage imports, so `dvc repro` (and the `full`
deployment, which runs it) can neither reuse an output built by older code nor re-run for code it never runs.

Imports are read statically (every `import` / `from ... import` in a module, function-level ones included),
starting from `logicflow.stages.<name>` and following `logicflow.*` imports and parent packages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
# read as data by lm-eval (its include path), not imported: a dep of evaluate without being in the closure
DATA_PACKAGES = {"src/logicflow/eval_tasks"}


def module_file(name: str) -> Path | None:
    path = SRC.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def imported_names(path: Path) -> set[str]:
    package = list(path.relative_to(SRC).parts[:-1])  # the package a relative import starts from
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {n for n in names if n == "logicflow" or n.startswith("logicflow.")}


def import_closure(start: str) -> set[str]:
    """Repo-relative paths of every project module that importing `start` can run."""
    seen: set[Path] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        path = module_file(name)
        if path is None or path in seen:
            continue
        seen.add(path)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run first
        todo += imported_names(path)
    return {str(p.relative_to(ROOT)) for p in seen}


def code_deps(stage: dict) -> set[str]:
    """The stage's listed deps under src/, folders expanded to their .py files."""
    files: set[str] = set()
    for dep in stage.get("deps", []):
        path = ROOT / dep
        if not dep.startswith("src/") or dep in DATA_PACKAGES or path.suffix not in ("", ".py"):
            continue
        found = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        files |= {str(p.relative_to(ROOT)) for p in found}
    return files


STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_are_exactly_the_modules_it_imports(name: str) -> None:
    stage = STAGES[name]
    module = f"logicflow.stages.{stage['cmd'].split()[-1]}"
    imported, listed = import_closure(module), code_deps(stage)
    assert not imported - listed, f"dvc.yaml {name}: add deps {sorted(imported - listed)}"
    assert not listed - imported, f"dvc.yaml {name}: remove deps {sorted(listed - imported)} (never imported)"


def test_closure_follows_function_level_and_relative_imports() -> None:
    """The reader itself: the data stage reaches eval's LM only through an import inside a function."""
    closure = import_closure("logicflow.stages.data")
    assert "src/logicflow/evaluation/harness.py" in closure
    assert "src/logicflow/validation/synth.py" not in import_closure("logicflow.stages.validate")
