"""The HF token never leaves the client: not in logs, artifacts, the card, MLflow, or error messages.

A smoke run of `logicflow -v stage card` and `logicflow -v stage publish` (targets local, hub, mlflow) in
subprocesses, with a canary value in HF_TOKEN, against the local Hub-compatible endpoint (hub_server.py,
standing in for the unreachable Hub) and a real MLflow sqlite store; the upstream stages' outputs are the
contract-shaped fixture files of publish_fixtures.py. Then every byte they produced is searched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub_server import HubServer
from publish_fixtures import mlflow_training_run, shared_models, write_run

ROOT = Path(__file__).resolve().parents[1]
CANARY = "hf_CANARY_never_print_me_7f3a9c"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_models(tmp_path_factory)


def _cli(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "logicflow.cli",
            "-v",
            "stage",
            *args,
            "--root",
            str(root),
            "--profile",
            "smoke",
            "--set",
            "publish.targets=[local, hub, mlflow]",
            "--set",
            "publish.repo_id=canary-org/canary-model",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=root,
    )


@pytest.mark.slow  # three CLI subprocesses importing torch and MLflow: ~40 s on two cores
def test_token_canary_never_appears_anywhere(tmp_path: Path, models: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    uri, experiment_id, run_id = mlflow_training_run(root)
    write_run(root, models, tracking_uri=uri, experiment_id=experiment_id, run_id=run_id)
    (root / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    with HubServer(CANARY) as hub:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MLFLOW_"))}
        env.update(
            HF_TOKEN=CANARY,
            HF_ENDPOINT=hub.url,
            HF_HUB_DISABLE_XET="1",  # the stand-in speaks LFS, not Xet (see hub_server)
            MLFLOW_DISABLE_TELEMETRY="true",
            HF_HUB_DISABLE_TELEMETRY="1",
        )
        outputs = [_cli(root, env, "card"), _cli(root, env, "publish")]
        assert [o.returncode for o in outputs] == [0, 0], outputs[-1].stderr[-3000:]
        assert '"status": "published"' in outputs[1].stdout
        assert len(hub.commits("canary-org/canary-model")) == 2  # it really went through the Hub client
        # an error path too: someone else committed (so the model is pushed again), and the Hub refuses it
        repo = hub.repos["canary-org/canary-model"]
        hub.new_commit(repo, "main", "edit README", "", {**hub.files(repo.repo_id), "NOTES.md": b"x"}, [])
        hub.fail("commit", 403)
        outputs.append(_cli(root, env, "publish"))
        assert outputs[2].returncode == 1 and "refused the publish" in outputs[2].stderr
        hub_bytes = [
            c.title.encode() + c.message.encode() + b"".join(c.files.values())
            for repo in hub.repos.values()
            for c in repo.commits.values()
        ]

    logs = "".join(o.stdout + o.stderr for o in outputs)
    assert "HTTP Request: POST" in logs  # the client's own debug/info logging was on
    assert CANARY not in logs
    for blob in hub_bytes:
        assert CANARY.encode() not in blob
    scanned = 0
    for file in root.rglob("*"):  # card/, publish/, reports/, mlflow.db, mlartifacts/ ...
        if file.is_file():
            scanned += 1
            assert CANARY.encode() not in file.read_bytes(), file
    assert (root / "card" / "README.md").is_file() and (root / "publish" / "logicflow.json").is_file()
    assert any((root / "mlartifacts").rglob("README.md")) and scanned > 30
