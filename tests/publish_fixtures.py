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

from logicflow.model import MANIFEST, TINY_MODEL_ID, build_tiny_model, weights_sha256
from logicflow.paths import Paths

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
    (base / MANIFEST).write_text(
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


def eval_report(passed: bool = True) -> dict[str, Any]:
    return {
        "config": {"seed": 1234, "max_new_tokens": 16, "limit": 4, "batch_size": 4, "template": "chatml"},
        "models": {
            "base": {"path": "models/base", "sha256": "b" * 64},
            "tuned": {"path": "models/merged", "sha256": "m" * 64},
        },
        "results": [
            {
                "task": "logicflow_math_heldout",
                "metric": "exact_match",
                "higher_is_better": True,
                "n": 8,
                "base": {"value": 0.125, "stderr": 0.125, "seconds": 3.5},
                "tuned": {"value": 0.5, "stderr": 0.1889822365, "seconds": 3.25},
                "delta": 0.375,
                "significant": passed,
            },
            {
                "task": "ifeval",
                "metric": "prompt_level_strict_acc",
                "higher_is_better": True,
                "n": 8,
                "base": {"value": 0.375, "stderr": 0.1829812, "seconds": 9.0},
                "tuned": {"value": 0.25 if passed else 0.0, "stderr": 0.1636634, "seconds": 8.5},
                "delta": -0.125 if passed else -0.375,
                "significant": not passed,
            },
        ],
        "not_run": [
            {"task": "humaneval", "reason": "sandbox unavailable: no isolated executor on this host"}
        ],
        "gate": {
            "passed": passed,
            "reasons": [] if passed else ["ifeval prompt_level_strict_acc dropped 0.3750 > max_drop 0.05"],
        },
    }


def write_run(
    root: Path,
    models: Path,
    *,
    passed: bool = True,
    tracking_uri: str = "sqlite:///unused.db",
    run_id: str = RUN_ID,
    experiment_id: str = "1",
) -> Paths:
    """Lay out the files of a finished run under `root` and return its Paths."""
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
    base_sha = json.loads((paths.base_model / MANIFEST).read_text())["sha256"]

    def dump(path: Path, data: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

    dump(paths.eval_json, eval_report(passed))
    (paths.eval_reports).mkdir(parents=True, exist_ok=True)
    (paths.eval_reports / "table.md").write_text("| task | base | tuned |\n")
    inference = {
        "latency_p50_s": 0.21,
        "latency_p95_s": 0.35,
        "tokens_per_s_batch1": 75.5,
        "best_batch_size": 8,
        "tokens_per_s_best_batch": 310.25,
        "peak_rss_mb": 812.0,
        "weights_bytes": 123456,
    }
    dump(paths.inference_json, {"base": inference, "tuned": {**inference, "adapter_bytes": 4096}})
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
        paths.train_reports / "metrics.json",
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
        paths.train_reports / "params.json",
        {
            "train": {
                "learning_rate": 0.0003,
                "max_steps": 6,
                "batch_size": 4,
                "seed": 42,
                "lr_scheduler": "cosine",
            },
            "lora": {"method": "lora", "r": 4, "alpha": 8, "target_modules": "all-linear"},
            "model": {"id": TINY_MODEL_ID, "template": "chatml"},
        },
    )
    (paths.train_reports / "loss.png").write_bytes(png())
    dump(
        paths.data_summary,
        {  # the data stage's format
            "source": "offline",
            "datasets": {
                name: {"rows": 16, "hub_id": hub_id, "revision": "main", "raw_sha256": f"{i}" * 64}
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
