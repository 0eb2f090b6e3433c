"""dvc.yaml lists as deps exactly the project modules each stage imports, so `dvc repro` (and the `full`
deployment, which runs it) can neither reuse an output built by older code nor re-run for code it never runs.
Checked statically (below) and on a real DVC repo: editing a module makes exactly its importers stale.

Imports are read statically (every `import` / `from ... import` in a module, function-level ones included),
starting from `logicflow.stages.<name>` and following `logicflow.*` imports and parent packages."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
# deps of evaluate that are not imported: read as data by lm-eval (its include path), run as a script by the
# sandbox
NOT_IMPORTED = {"src/logicflow/eval_tasks", "src/logicflow/sandbox_launcher.py"}


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
        if not dep.startswith("src/") or dep in NOT_IMPORTED or path.suffix not in ("", ".py"):
            continue
        found = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        files |= {str(p.relative_to(ROOT)) for p in found}
    return files


def pipeline_stages(dvcfile: str) -> dict[str, dict]:
    """The stages of a dvc.yaml with deps relative to the project root (a foreach stage: its template)."""
    folder = Path(dvcfile).parent
    stages = yaml.safe_load((ROOT / dvcfile).read_text(encoding="utf-8"))["stages"]
    out = {}
    for name, stage in stages.items():
        stage = stage.get("do", stage)
        deps = [os.path.normpath(folder / dep) for dep in stage.get("deps", [])]
        out[name if dvcfile == "dvc.yaml" else f"{dvcfile}:{name}"] = {**stage, "deps": deps}
    return out


STAGES = pipeline_stages("dvc.yaml")
STUDY_STAGES = pipeline_stages("compare/dvc.yaml")  # the comparison study, apart from the main pipeline


def stage_module(stage: dict) -> str:
    """`logicflow stage train` -> logicflow.stages.train (`compare-report` -> its module in the registry)"""
    from logicflow.stages import STAGES as REGISTRY

    words = stage["cmd"].split()
    return REGISTRY[words[words.index("stage") + 1]].partition(":")[0]


@pytest.mark.parametrize("name", sorted(STAGES | STUDY_STAGES))
def test_stage_deps_are_exactly_the_modules_it_imports(name: str) -> None:
    stage = (STAGES | STUDY_STAGES)[name]
    imported, listed = import_closure(stage_module(stage)), code_deps(stage)
    assert not imported - listed, f"dvc.yaml {name}: add deps {sorted(imported - listed)}"
    assert not listed - imported, f"dvc.yaml {name}: remove deps {sorted(listed - imported)} (never imported)"


def test_closure_follows_function_level_and_relative_imports() -> None:
    """The reader itself: the data stage reaches eval's LM only through an import inside a function."""
    closure = import_closure("logicflow.stages.data")
    assert "src/logicflow/evaluation/harness.py" in closure
    assert "src/logicflow/validation/synth.py" not in import_closure("logicflow.stages.validate")


def _declared_outputs(stage: dict) -> list[str]:
    entries = [*stage.get("outs", []), *stage.get("metrics", []), *stage.get("plots", [])]
    return [next(iter(entry)) if isinstance(entry, dict) else entry for entry in entries]


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the project whose stage commands only write placeholder outputs, reproduced once: a DVC
    repo with a dvc.lock recording every code dep's hash, in seconds instead of a pipeline run."""
    from dvc.repo import Repo

    from flow_fixtures import make_project

    base = tmp_path_factory.mktemp("stale")
    root = make_project(base / "repo", base / "remote")
    pipeline = yaml.safe_load((root / "dvc.yaml").read_text())
    deps = [dep for stage in pipeline["stages"].values() for dep in stage.get("deps", [])]
    for stage in pipeline["stages"].values():
        outs = _declared_outputs(stage)
        inside = [dep for dep in deps if any(dep.startswith(f"{out}/") for out in outs)]  # models/base/x.json
        stage["cmd"] = f"python placeholder.py {' '.join(outs + inside)}"
    (root / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    (root / "placeholder.py").write_text(
        "import pathlib, sys\n"
        "for out in map(pathlib.Path, sys.argv[1:]):\n"
        "    target = out if out.suffix else out / 'placeholder'\n"
        "    target.parent.mkdir(parents=True, exist_ok=True)\n"
        "    target.write_text('placeholder')\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        with Repo(str(root)) as repo:
            assert {s.addressing for s in repo.reproduce()} == set(STAGES)
        yield root


MODULES = [
    "src/logicflow/paths.py",
    "src/logicflow/model.py",
    "src/logicflow/training/merge.py",
    "src/logicflow/evaluation/stats.py",
    "src/logicflow/validation/length.py",
    "src/logicflow/publishing/card.py",
]


@pytest.mark.parametrize("module", MODULES)
def test_editing_a_module_makes_exactly_its_importers_stale(reproduced: Path, module: str) -> None:
    from dvc.repo import Repo

    every = STAGES | STUDY_STAGES  # status covers every dvc.yaml of the repo, the study's too
    importers = {name for name, stage in every.items() if module in import_closure(stage_module(stage))}
    assert importers, f"{module} is imported by no stage: pick another module for this test"
    source = reproduced / module
    original = source.read_text()
    source.write_text(original + "\n# edited\n")
    try:
        with Repo(str(reproduced)) as repo:
            status = repo.status()  # {"dvc.yaml:train": [{"changed deps": {"src/logicflow/training": ...}}]}
    finally:
        source.write_text(original)
    changed = {
        name.removeprefix("dvc.yaml:").split("@")[0]: {
            dep for entry in why if isinstance(entry, dict) for dep in entry.get("changed deps", {})
        }
        for name, why in status.items()
    }
    stale = {
        name for name, deps in changed.items() if any(module == d or module.startswith(f"{d}/") for d in deps)
    }
    assert stale == importers
