"""Helpers for the orchestration tests: a throw-away copy of the project as a git + DVC repo.

The copy runs every stage of dvc.yaml on the smoke profile (tiny random model, a few rows) with its own
DVC remote.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


def project_files() -> list[str]:
    out = git(ROOT, "ls-files", "--cached", "--others", "--exclude-standard")
    return [f for f in out.splitlines() if (ROOT / f).is_file()]


def make_project(dest: Path, remote: Path) -> Path:
    """Copy the project (code, params, dvc.yaml, flows) into `dest` as a committed git + DVC repo on smoke."""
    for name in project_files():
        if name == "dvc.lock" or name.startswith(("tests/", "docs/", "infra/", "benchmarks/")):
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["profile"] = "smoke"
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(dest, "init", "-q")
    subprocess.run([str(BIN / "dvc"), "remote", "modify", "local", "url", str(remote)], cwd=dest, check=True)
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "fixture")
    return dest


def offline_env(cache: Path) -> dict[str, str]:
    """What every process of a test run needs: no network, a per-session model cache, no dev server."""
    return {
        "LOGICFLOW_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
    }
