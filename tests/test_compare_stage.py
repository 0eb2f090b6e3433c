"""The comparison study's stage on the tiny model: each method trains and is evaluated against the same base
into its own folder, its MLflow run is nested under the study's parent, and the report, plots and study
card come out of the results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from logicflow.config import load_config
from logicflow.datasets.generator import generate
from logicflow.paths import Paths
from logicflow.stages import compare
from train_fixtures import OVERRIDES, make_project, tracking_env

METHODS = ["lora", "ia3", "prompt_tuning", "distill"]
SETS = [*OVERRIDES, "train.max_steps=4", "train.eval_steps=100", "eval.limit=3", "eval.max_new_tokens=8",
        f"compare.methods=[{', '.join(METHODS)}]", "compare.learning_rates={ia3: 0.05}"]  # fmt: skip


@pytest.fixture
def study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Paths, str]:
    uri = tracking_env(monkeypatch, tmp_path)
    monkeypatch.setenv("LOGICFLOW_CACHE", str(tmp_path / "cache"))
    paths = make_project(tmp_path / "project")
    paths.heldout_math.parent.mkdir(parents=True, exist_ok=True)
    paths.heldout_math.write_text(
        "".join(
            json.dumps({"id": p.id, "question": p.question, "answer": p.answer, "kind": p.kind}) + "\n"
            for p in generate(3, seed=0, split="heldout")
        )
    )
    return paths, uri


def test_methods_train_apart_nest_in_mlflow_and_make_the_report(study: tuple[Paths, str]) -> None:
    from mlflow import MlflowClient

    paths, uri = study
    cfg = load_config(paths.params, "smoke", SETS)
    for method in METHODS:
        assert compare.run(cfg, paths, method).status == "run"
    skipped = compare.run(cfg, paths, "full")  # not in this profile's compare.methods
    assert skipped.status == "skipped" and "not in compare.methods" in Path(skipped.result_file).read_text()
    assert all((folder / "SKIPPED").is_file() for folder in paths.for_study("full").study_outputs)  # DVC outs

    results = {m: json.loads(paths.compare_reports.method(m).read_text()) for m in METHODS}
    assert (
        results["ia3"]["learning_rate"] == 0.05
        and results["lora"]["learning_rate"] == cfg.train.learning_rate
    )
    assert all(results[m]["tokens_per_s"] > 0 for m in METHODS)  # distillation's own loss counts tokens too
    assert (
        results["ia3"]["trainable_params"]
        < results["lora"]["trainable_params"]
        < results["lora"]["total_params"]
    )
    for method in METHODS:  # own models and reports; the shared base stays the baseline of every evaluation
        study_paths = paths.for_study(method)
        assert (study_paths.merged / "model.safetensors").exists() and not paths.merged.exists()
        evaluated = json.loads(study_paths.eval_json.read_text())
        assert evaluated["models"]["base"]["path"] == "models/base"
        assert evaluated["models"]["tuned"]["path"] == f"compare/{method}/models/merged"
        serving = json.loads(study_paths.inference_json.read_text())
        assert serving == {}  # serving costs: not the study's question
    soft = json.loads(paths.for_study("prompt_tuning").eval_json.read_text())["models"]
    assert soft["tuned"]["adapter"] == "compare/prompt_tuning/models/adapter"  # soft prompts load on the base
    assert soft["tuned"]["sha256"] != soft["base"]["sha256"]  # so its results are never the base's

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(cfg.experiment_name)
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("logicflow.study") == "compare"]
    assert len(parents) == 1
    children = {
        r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id
    }
    assert set(children) == {f"{m}-smoke" for m in METHODS}
    assert all(run.data.metrics.get("final.global_step") == 4 for run in children.values())
    first_loss = {
        name: client.get_metric_history(run.info.run_id, "loss")[0].value for name, run in children.items()
    }
    assert first_loss["distill-smoke"] != first_loss["lora-smoke"]  # same rows and seed; the KD term differs

    out = compare.report(cfg, paths)
    assert out["methods"] == ["base", *METHODS]
    folder = paths.compare_reports.summary
    table = (folder / "table.md").read_text().splitlines()
    assert [line.split(" | ")[0].lstrip("| ") for line in table[2:]] == ["base", *METHODS]
    card = (folder / "README.md").read_text()
    assert "# Fine-tuning methods compared on logicflow/tiny-random-llama" in card and "**ia3**" in card
    parent = client.get_run(parents[0].info.run_id)
    history = client.get_metric_history(parent.info.run_id, "compare/trainable_params")
    assert [m.step for m in history] == list(
        range(len(METHODS) + 1)
    )  # one point per row: the chart view compares methods
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "compare")}
    assert "compare/README.md" in artifacts and "compare/table.md" in artifacts
