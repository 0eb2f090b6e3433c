"""The checkpoint folder: which checkpoint (if any) a run continues from.

`checkpoints/` is not a DVC output; it survives across runs so a crashed or killed run can continue. It holds
`logicflow_state.json` = {fingerprint, completed, mlflow_run_id} beside the trainer's `checkpoint-<step>`s.
The fingerprint hashes everything that shapes the training trajectory (train/lora/model params, base weights,
data files, the training code and templates). A run continues from the newest *complete* checkpoint (its
`trainer_state.json` is written last) when the fingerprint matches and the previous run did not finish;
otherwise the folder is cleared — except with `--resume`, where a mismatch is an error that says what to do.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import logging
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from logicflow.atomic import write_json
from logicflow.errors import TrainingError
from logicflow.paths import CHECKPOINT_STATE

logger = logging.getLogger(__name__)

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class CheckpointState:
    fingerprint: str
    completed: bool = False
    mlflow_run_id: str | None = None


def code_digest() -> str:
    """SHA-256 over the training code and chat templates: changed code must not continue old checkpoints."""
    digest = hashlib.sha256()
    package = importlib.resources.files("logicflow")
    files = sorted(
        [
            *package.joinpath("training").iterdir(),
            package.joinpath("stages", "train.py"),
            *package.joinpath("templates").iterdir(),
        ],
        key=lambda f: f.name,
    )
    for file in files:
        if file.name.endswith((".py", ".jinja")):
            digest.update(file.name.encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def fingerprint(sections: dict[str, Any], base_sha256: str, data_files: dict[str, Path]) -> str:
    from logicflow.model import file_sha256

    payload = {
        "params": sections,
        "base_sha256": base_sha256,
        "data": {split: file_sha256(path) for split, path in sorted(data_files.items())},
        "code": code_digest(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def read_state(folder: Path) -> CheckpointState | None:
    try:
        return CheckpointState(**json.loads((folder / CHECKPOINT_STATE).read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def write_state(folder: Path, state: CheckpointState) -> None:
    write_json(folder / CHECKPOINT_STATE, asdict(state))


def complete_checkpoints(folder: Path) -> list[Path]:
    """`checkpoint-<step>` folders whose trainer state exists (the trainer writes it last), oldest first."""
    found = []
    for child in folder.glob("checkpoint-*"):
        match = CHECKPOINT.match(child.name)
        if match and (child / "trainer_state.json").exists():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def last_checkpoint(folder: Path) -> Path | None:
    done = complete_checkpoints(folder)
    return done[-1] if done else None


@dataclass(frozen=True)
class ResumePlan:
    checkpoint: Path | None  # continue from here; None = from scratch
    mlflow_run_id: str | None  # the MLflow run of the interrupted attempt


def plan(folder: Path, fp: str, resume: bool) -> ResumePlan:
    """Decide, read-only, where this run starts (the same answer on every process of a multi-process run)."""
    state = read_state(folder)
    if state is None or state.completed:
        if resume:
            logger.warning("--resume: %s holds no interrupted run; training from scratch", folder)
        return ResumePlan(None, None)
    if state.fingerprint != fp:
        if resume:
            raise TrainingError(
                f"--resume: the checkpoints in {folder} come from other params, data or code; run without "
                "--resume to start over (they are then deleted), or restore the previous params"
            )
        logger.info("checkpoints in %s come from other params, data or code: starting over", folder)
        return ResumePlan(None, None)
    checkpoint = last_checkpoint(folder)
    if checkpoint is None:
        logger.info("the interrupted run left no complete checkpoint in %s: starting over", folder)
        return ResumePlan(None, state.mlflow_run_id)
    logger.info("continuing the interrupted run from %s", checkpoint)
    return ResumePlan(checkpoint, state.mlflow_run_id)


def prepare(folder: Path, fp: str, start: ResumePlan) -> None:
    """Main process only: clear the folder for a fresh start and record the fingerprint."""
    folder.mkdir(parents=True, exist_ok=True)
    if start.checkpoint is None:
        for child in folder.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            elif child.name != CHECKPOINT_STATE:
                child.unlink()
    write_state(folder, CheckpointState(fp, completed=False, mlflow_run_id=start.mlflow_run_id))


def start(folder: Path, fp: str, resume: bool, state: Any) -> ResumePlan:
    """The resume decision of a (multi-process) run: `plan` on every process, `prepare` on the main one, and
    a barrier (accelerate's PartialState `state`) so no process reads the folder while it is being cleared."""
    begin = plan(folder, fp, resume)
    if state.is_main_process:
        prepare(folder, fp, begin)
    state.wait_for_everyone()
    return begin
