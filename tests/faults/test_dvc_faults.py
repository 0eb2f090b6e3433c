"""T7: `dvc repro` and `dvc push` killed half-way, then run again: the re-run finishes the job, DVC reports
nothing left to do, the outputs equal an uninterrupted run's, and every object in the remote verifies
(its content hashes to its name)."""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from flow_fixtures import make_project, offline_env

pytestmark = pytest.mark.faults

PUSH_TRIALS = 3


def _dvc(root: Path, *args: str) -> subprocess.Popen[str]:
    """A DVC command as a user runs it, in its own process group (so a kill takes its stage with it)."""
    env = {**os.environ, **offline_env(root.parent / "machine-cache")}
    return subprocess.Popen(
        [sys.executable, "-m", "dvc", *args],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _finish(root: Path, *args: str) -> str:
    proc = _dvc(root, *args)
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out[-3000:]
    return out


def _kill_group(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)


def _output_hashes(root: Path) -> dict[str, str]:
    """Every output DVC recorded for the `data` and `model` stages, by path: what a finished run produced."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    return {out["path"]: out["md5"] for stage in ("model", "data") for out in lock[stage]["outs"]}


def _corrupt_objects(remote: Path) -> list[str]:
    """Remote objects whose content does not hash to their name (directory listings included)."""
    bad = []
    for obj in (p for p in (remote / "files" / "md5").rglob("*") if p.is_file()):
        name = obj.parent.name + obj.name
        if hashlib.md5(obj.read_bytes()).hexdigest() != name.removesuffix(".dir"):  # noqa: S324 - DVC's scheme
            bad.append(str(obj))
    return bad


def test_killed_repro_and_push_finish_on_rerun_and_verify(tmp_path: Path, reliability) -> None:  # noqa: ANN001
    reference = make_project(tmp_path / "reference", tmp_path / "reference-remote")
    _finish(reference, "repro", "data")
    want = _output_hashes(reference)

    root = make_project(tmp_path / "repo", tmp_path / "remote")
    proc = _dvc(root, "repro", "data")
    deadline = time.monotonic() + 300
    while not (root / "data" / "raw").exists():  # the data stage is writing its outputs
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "the data stage never started writing"
        time.sleep(0.02)
    _kill_group(proc)
    out = _finish(root, "repro", "data")
    assert re.search(r"Running stage '(model|data)'", out)  # the killed stage ran again, not skipped
    assert "Data and pipelines are up to date." in _finish(root, "status", "data")
    assert _output_hashes(root) == want  # same bytes as the uninterrupted run

    rng = random.Random(0)
    for _ in range(PUSH_TRIALS):
        proc = _dvc(root, "push", "-j", "1")
        time.sleep(rng.uniform(0.2, 1.5))
        if proc.poll() is None:
            _kill_group(proc)
        _finish(root, "push")
        assert "Cache and remote 'local' are in sync." in _finish(root, "status", "--cloud")
    assert _corrupt_objects(tmp_path / "remote") == []
    reliability(
        row="T7",
        fault=f"SIGKILL of `dvc repro` mid-stage and of `dvc push` {PUSH_TRIALS} times at random moments",
        outcome="re-runs finish, DVC status clean, outputs equal an uninterrupted run, remote objects verify",
        push_kills=PUSH_TRIALS,
    )
