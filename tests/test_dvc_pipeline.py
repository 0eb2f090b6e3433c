"""`dvc repro` in a temporary git repo: produces the data, a re-run is a no-op, a param change re-runs
only what depends on it, and `dvc push` fills the local remote."""

import os
import shutil
import subprocess
import sys
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
        [
            str(Path(sys.executable).parent / "dvc"),
            "remote",
            "modify",
            "local",
            "url",
            str(tmp_path / "remote"),
        ],
        cwd=repo,
        check=True,
    )
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "fixture")
    monkeypatch.setenv("LOGICFLOW_CACHE", str(tmp_path / "machine-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(
        "PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    )  # stage cmds call `logicflow`
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


@pytest.mark.slow
def test_full_smoke_pipeline_end_to_end(repo: Path) -> None:
    """Every stage on the tiny model: card and Hub-layout folder come out, the published model loads
    with plain transformers and generates, the MLflow run holds the lineage, and a re-run is a no-op."""
    import json

    import mlflow
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert _reproduce(repo) == sorted(["model", "data", "validate", "train", "evaluate", "card", "publish"])
    assert _reproduce(repo) == []

    card = (repo / "card" / "README.md").read_text()
    assert card.startswith("---\n") and "model-index:" in card and "logicflow_math_heldout" in card
    tok = AutoTokenizer.from_pretrained(repo / "publish")
    model = AutoModelForCausalLM.from_pretrained(repo / "publish")
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 3?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]

    run = json.loads((repo / "reports" / "train" / "mlflow_run.json").read_text())
    client = mlflow.MlflowClient(run["tracking_uri"])
    logged = client.get_run(run["run_id"])
    assert "train/loss" in logged.data.metrics or any(k.endswith("loss") for k in logged.data.metrics)
    assert any(k.startswith("eval/") for k in logged.data.metrics)
    assert {d.dataset.name for d in logged.inputs.dataset_inputs}
