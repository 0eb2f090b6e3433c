"""`dvc repro` in a temporary git repo: produces the data, a re-run is a no-op, a param change re-runs
only what depends on it, and `dvc push` fills the local remote."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo

ROOT = Path(__file__).resolve().parents[1]


def _project_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [f for f in out.splitlines() if (ROOT / f).is_file()]


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True, capture_output=True
    )


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project as a fresh git + DVC repo on the smoke profile, with its own remote."""
    repo = tmp_path / "repo"
    for name in _project_files():
        if name == "dvc.lock" or name.startswith(("tests/", "docs/")):
            continue
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["profile"] = "smoke"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _git(repo, "init", "-q")
    subprocess.run(
        ["dvc", "remote", "modify", "local", "url", str(tmp_path / "remote")], cwd=repo, check=True
    )
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "fixture")
    monkeypatch.setenv("LOGICFLOW_CACHE", str(tmp_path / "machine-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(repo)  # DVC resolves stage targets from the working directory
    return repo


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
