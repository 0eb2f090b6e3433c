"""`dvc repro` in a temporary git repo: produces the data, a re-run is a no-op, a param change re-runs
only what depends on it, and `dvc push` fills the local remote."""

from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo

from flow_fixtures import make_project, offline_env


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project as a fresh git + DVC repo on the smoke profile, with its own remote."""
    root = make_project(tmp_path / "repo", tmp_path / "remote")
    for key, value in offline_env(tmp_path / "machine-cache").items():  # stage cmds call `logicflow`
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(root)  # DVC resolves stage targets from the working directory
    return root


def _reproduce(repo: Path, *targets: str) -> list[str]:
    with Repo(str(repo)) as dvc:
        return sorted(stage.addressing for stage in dvc.reproduce(targets=list(targets) or None))


def test_repro_noop_and_param_change(repo: Path, tmp_path: Path) -> None:
    assert _reproduce(repo, "data", "model") == ["data", "model"]
    train = repo / "data" / "messages" / "train.parquet"
    assert train.exists() and (repo / "data" / "raw" / "openo1.parquet").exists()
    assert (repo / "models" / "base" / "config.json").exists()

    assert _reproduce(repo, "data", "model") == []

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["profiles"]["smoke"]["data"]["max_samples"] = 40
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert _reproduce(repo, "data", "model") == ["data"]

    with Repo(str(repo)) as dvc:
        dvc.push()
    remote_files = [p for p in (tmp_path / "remote").rglob("*") if p.is_file()]
    assert len(remote_files) >= 5
