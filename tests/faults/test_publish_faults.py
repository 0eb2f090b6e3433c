"""T10: `logicflow stage publish` SIGKILLed while its commit is in flight to the Hub, once before the Hub
applied it and once after (the answer never arrived); the re-run lands the model in exactly one commit whose
files equal the local publish folder.

The Hub is the network edge, stood in for by `hub_server.HubServer` (real HTTP, the real `HfApi` client in a
real `logicflow` process); only the far end is ours.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hub_server import HubServer
from logicflow.config import load_config
from logicflow.stages import card, publish
from publish_fixtures import shared_models, write_run

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hf_fault_hub_token_0123456789abcdef"
REPO = "logicflow-test/killed-push"
OVERRIDES = ["publish.targets=[local, hub]", f"publish.repo_id={REPO}"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_models(tmp_path_factory)


def _published(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _killed_mid_commit(hub: HubServer, root: Path, *, after_apply: bool) -> None:
    """Start a publish, wait until its commit request is parked at the Hub, SIGKILL it, then let it go."""
    held = hub.hold("commit", after_apply=after_apply)
    sets = [arg for item in OVERRIDES for arg in ("--set", item)]
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"} | {
        "HF_TOKEN": TOKEN,
        "HF_ENDPOINT": hub.url,
    }
    argv = [sys.executable, "-m", "logicflow.cli", "stage", "publish", "--root", str(root)]
    argv += ["--params", str(ROOT / "params.yaml")]
    proc = subprocess.Popen(
        [*argv, "--profile", "smoke", *sets], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        while not held.reached.wait(0.2):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        proc.kill()
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        held.released.set()
        proc.kill()
        proc.stderr.close()


def test_publish_killed_mid_commit_lands_exactly_one_commit(
    models: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reliability,  # noqa: ANN001
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    cfg = load_config(ROOT / "params.yaml", "smoke", OVERRIDES)
    with HubServer(TOKEN) as hub:
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        landed = {}
        for after_apply in (False, True):
            paths = write_run(tmp_path / f"project-{after_apply}", models, run_id=f"run{int(after_apply)}")
            card.run(cfg, paths)
            before = len(hub.commits(REPO)) if REPO in hub.repos else 1  # + the repo's initial commit
            _killed_mid_commit(hub, paths.root, after_apply=after_apply)
            assert len(hub.commits(REPO)) == before + after_apply  # the kill landed where it was meant to

            result = publish.run(cfg, paths)  # the re-run, as the flow's retry or the user would do it
            # before: the re-run pushes; after: the Hub holds this model already (its fingerprint)
            assert result.targets[1].status == ("unchanged" if after_apply else "pushed")
            commits = hub.commits(REPO)
            assert len(commits) == before + 1, [c.title for c in commits]
            files = {k: v for k, v in hub.files(REPO).items() if k != ".gitattributes"}
            assert files == _published(paths.publish_dir)
            landed["before_apply" if not after_apply else "after_apply"] = len(commits) - before
    reliability(
        row="T10",
        fault="SIGKILL of `stage publish`, its Hub commit in flight (before or after it landed)",
        outcome="the re-run pushes exactly one commit per model; the Hub's files equal the local folder",
        commits_before_apply=landed["before_apply"],
        commits_after_apply=landed["after_apply"],
    )
