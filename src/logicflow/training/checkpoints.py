"""The checkpoint folder: which checkpoint (if any) a run continues from.

`checkpoints/` is not a DVC output; it survives across runs so a crashed or killed run can continue. It holds
`logicflow_state.json` = {fingerprint, completed, mlflow_run_id} beside the trainer's `checkpoint-<step>`s.
The fingerprint hashes everything that shapes the training trajectory (train/lora/model params, base weights,
data files, the training code and templates). A run continues from the newest *intact* checkpoint when the
fingerprint matches and the previous run did not finish; otherwise the folder is cleared — except with
`--resume`, where a mismatch is an error that says what to do. Intact means every file a resume reads is
there and whole (`intact`): a SIGKILL while the trainer writes a checkpoint, or deletes an old one, leaves
torn folders, which are skipped (and removed when the run continues from an older one).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import logging
import os
import re
import shutil
import struct
import zipfile
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


def _whole_safetensors(path: Path) -> bool:
    """The file is as long as its header says (8-byte length, JSON header, then the tensors' bytes)."""
    try:
        with path.open("rb") as fh:  # sizes from the open handle: a rotation may delete the path meanwhile
            (size,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(size))
            length = os.fstat(fh.fileno()).st_size
    except (OSError, struct.error, ValueError):
        return False
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    return length == 8 + size + end


def intact(checkpoint: Path) -> bool:
    """Every file a resume reads is there and whole: weights (safetensors) with their config (PEFT's
    adapter_config.json or the model's config.json), optimizer, scheduler and RNG states (torch zip
    archives), the trainer state (written last) and every other JSON file."""
    configs = [checkpoint / "adapter_config.json", checkpoint / "config.json"]
    try:  # a rotation may delete the folder while it is read: any OSError means "not intact"
        weights = list(checkpoint.glob("*.safetensors"))
        rng_states = list(checkpoint.glob("rng_state*.pth"))
        archives = [checkpoint / "optimizer.pt", checkpoint / "scheduler.pt", *rng_states]
        for file in [checkpoint / "trainer_state.json", *checkpoint.glob("*.json")]:
            json.loads(file.read_text())
    except (OSError, ValueError):
        return False
    return (
        bool(weights)
        and any(c.is_file() for c in configs)
        and len(archives) > 2
        and all(_whole_safetensors(w) for w in weights)
        and all(a.is_file() and zipfile.is_zipfile(a) for a in archives)
    )


def checkpoint_dirs(folder: Path) -> list[Path]:
    """Every `checkpoint-<step>` folder, oldest first, intact or not."""
    found = [
        (int(m.group(1)), child)
        for child in folder.glob("checkpoint-*")
        if (m := CHECKPOINT.match(child.name))
    ]
    return [path for _, path in sorted(found)]


def complete_checkpoints(folder: Path) -> list[Path]:
    """The intact `checkpoint-<step>` folders, oldest first."""
    return [path for path in checkpoint_dirs(folder) if intact(path)]


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
    else:  # torn folders must not be resumed from, rotated as if whole, or mistaken for the newest
        for torn in (path for path in checkpoint_dirs(folder) if not intact(path)):
            logger.warning("removing %s: a killed run left it half-written", torn)
            shutil.rmtree(torn)
    write_state(folder, CheckpointState(fp, completed=False, mlflow_run_id=start.mlflow_run_id))


def start(folder: Path, fp: str, resume: bool, state: Any) -> ResumePlan:
    """The resume decision of a (multi-process) run: `plan` on every process, `prepare` on the main one, and
    a barrier (accelerate's PartialState `state`) so no process reads the folder while it is being cleared."""
    begin = plan(folder, fp, resume)
    if state.is_main_process:
        prepare(folder, fp, begin)
    state.wait_for_everyone()
    return begin
