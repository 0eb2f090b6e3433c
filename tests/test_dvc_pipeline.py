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
    root = make_project(tmp_path / "repo", tmp_path / "remote", stages=None)
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

    # `dvc metrics show` / `dvc exp show` compare the flat headline numbers only, not the detailed reports
    import dvc.api

    flat = json.loads((repo / "reports" / "metrics.json").read_text())
    shown = dvc.api.metrics_show(repo=str(repo))
    assert len(shown) == len(flat) and "gate" in flat and "logicflow_math_heldout.p" in flat

    run = json.loads((repo / "reports" / "train" / "mlflow_run.json").read_text())
    client = mlflow.MlflowClient(run["tracking_uri"])
    logged = client.get_run(run["run_id"])
    assert "train/loss" in logged.data.metrics or any(k.endswith("loss") for k in logged.data.metrics)
    assert any(k.startswith("eval/") for k in logged.data.metrics)
    assert {d.dataset.name for d in logged.inputs.dataset_inputs}
