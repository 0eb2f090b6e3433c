"""`logicflow preflight`: each problem that would stop a run is one line with its fix, before any download.

The CLI runs as a user runs it, in a temporary project holding params.yaml. The Hub cases talk to
`hub_server.HubServer` (the network edge stood in for: the Hub cannot be reached from here) through the
real `huggingface_hub` client; the full disk is a 1 MiB tmpfs mounted in an unprivileged user + mount
namespace (`unshare -rm`).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hub_server import HubServer

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_test_preflight_token_0123456789"
CLI = [sys.executable, "-m", "logicflow.cli", "preflight"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    return root


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"HF_TOKEN", "HF_ENDPOINT", "MLFLOW_TRACKING_URI"}}
    env.pop("PREFECT_API_URL", None)
    return {**env, "LOGICFLOW_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", **extra}


def preflight(root: Path, env: dict[str, str], *args: str) -> tuple[int, list[str], list[str]]:
    """-> (exit code, the check lines, the problem lines)."""
    done = subprocess.run([*CLI, "--root", str(root), *args], env=env, capture_output=True, text=True)
    lines = done.stdout.splitlines()
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, lines, [line for line in lines if line.startswith("problem")]


def online(hub: HubServer, tmp_path: Path, token: str = TOKEN) -> dict[str, str]:
    env = _env(tmp_path, HF_ENDPOINT=hub.url, HF_TOKEN=token)
    env.pop("HF_HUB_OFFLINE")
    return env


def test_offline_it_says_which_checks_it_skipped(project: Path, tmp_path: Path) -> None:
    rc, lines, problems = preflight(project, _env(tmp_path), "--profile", "cpu")
    assert rc == 0 and problems == []
    assert [line.split()[1].rstrip(":") for line in lines] == [
        "hub", "base", "datasets", "disk", "memory", "servers"
    ]  # fmt: skip
    assert "skipped  datasets: offline" in "\n".join(lines)
    assert any(line.startswith("ok       memory: training needs about") for line in lines)


def test_no_token_for_the_hub_target_is_one_line(project: Path, tmp_path: Path) -> None:
    rc, _, problems = preflight(
        project, _env(tmp_path), "--profile", "smoke", "--set", "publish.targets=[hub]"
    )
    assert rc == 1
    assert problems == [problems[0]] and "HF_TOKEN is not set" in problems[0] and "fix:" in problems[0]


def test_a_repo_the_token_cannot_write_is_one_line(project: Path, tmp_path: Path) -> None:
    with HubServer(TOKEN) as hub:
        hub.add_repo("logicflow-test/tiny")
        settings = ["--profile", "smoke", "--set", "publish.targets=[hub]"]
        rc, lines, problems = preflight(
            project, online(hub, tmp_path), *settings, "--set", "publish.repo_id=logicflow-test/tiny"
        )
        assert rc == 0 and "ok       hub: HF_TOKEN can write to logicflow-test/tiny" in lines

        rc, _, problems = preflight(
            project, online(hub, tmp_path), *settings, "--set", "publish.repo_id=other-org/tiny"
        )
        assert rc == 1 and len(problems) == 1
        assert "has no access to 'other-org'" in problems[0] and "logicflow-test/tiny" in problems[0]

        hub.role = "read"
        rc, _, problems = preflight(
            project, online(hub, tmp_path), *settings, "--set", "publish.repo_id=logicflow-test/tiny"
        )
        assert rc == 1 and len(problems) == 1 and "403" in problems[0] and "write access" in problems[0]

        rc, _, problems = preflight(project, online(hub, tmp_path, token="hf_wrong"), *settings)
        assert rc == 1 and len(problems) == 1 and "invalid or expired" in problems[0]


def test_a_gated_base_model_and_a_missing_revision_are_one_line_each(project: Path, tmp_path: Path) -> None:
    model = "google/gemma-3-270m-it"
    with HubServer(TOKEN) as hub:
        hub.add_repo(model)
        settings = ["--profile", "smoke", "--set", f"model.id={model}"]
        rc, lines, problems = preflight(project, online(hub, tmp_path), *settings)
        assert rc == 0 and f"ok       base model: {model}@main readable" in lines

        rc, _, problems = preflight(project, online(hub, tmp_path), *settings, "--set", "model.revision=0abc")
        assert rc == 1 and len(problems) == 1 and "has no revision '0abc'" in problems[0]

        hub.gated.add(model)
        rc, _, problems = preflight(project, online(hub, tmp_path), *settings)
        assert rc == 1 and len(problems) == 1
        assert f"{model} is gated" in problems[0] and f"https://huggingface.co/{model}" in problems[0]


def test_a_full_disk_is_one_line(project: Path, tmp_path: Path) -> None:
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    command = shlex.join([*CLI, "--root", str(tiny), "--profile", "cpu"])
    script = f"mount -t tmpfs -o size=1m tmpfs {tiny} && cp {project / 'params.yaml'} {tiny}/ && {command}"
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], env=_env(tmp_path), capture_output=True, text=True
    )
    problems = [line for line in done.stdout.splitlines() if line.startswith("problem")]
    assert done.returncode == 1, done.stdout + done.stderr
    assert len(problems) == 1 and problems[0].startswith("problem  disk: 0.0 GiB free at"), problems
    assert "fix:" in problems[0]
