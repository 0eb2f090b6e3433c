"""The memory planner against numbers worked out by hand, and the reference models against their
published parameter counts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from logicflow.config import load_config
from logicflow.errors import ConfigError
from logicflow.planning import (
    KNOWN,
    Architecture,
    architecture,
    measured_tokens_per_row,
    plan_compute,
    plan_memory,
)

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
# hidden 8, 2 layers, 2 heads x 4 + 1 kv head x 4, MLP 16, vocab 32, tied embeddings
TOY = Architecture(hidden=8, layers=2, heads=2, kv_heads=1, head_dim=4, intermediate=16, vocab=32,
                   tied_embeddings=True)  # fmt: skip
TOY_SETS = ["train.batch_size=2", "train.cutoff_len=16", "lora.r=2", "lora.target_modules=[q_proj, v_proj]"]


def _cfg(*sets: str):  # noqa: ANN202
    return load_config(PARAMS, "cpu", [*TOY_SETS, "train.precision=bf16", *sets])


def test_toy_model_by_hand() -> None:
    # linear per layer: q 8x8 + k 8x4 + v 8x4 + o 8x8 + gate/up/down 3 x 8x16 = 576; 2 layers, 32x8 embedding,
    # RMSNorm weights: 2 per layer + the final one, 8 each
    assert TOY.params == 2 * 576 + 256 + 5 * 8 == 1448
    plan = plan_memory(_cfg(), TOY)
    assert plan.trainable_params == 2 * 2 * ((8 + 8) + (8 + 4)) == 112  # layers x r x (in + out) of q, v
    assert plan.weights == 1448 * 2  # bf16
    assert plan.trainable_state == 112 * (4 + 4 + 8)  # fp32 weight, gradient, AdamW's two moments
    tokens = 2 * 16
    per_layer_token = 6 * 8 + 2 * 4 + 4 * 16  # 120 values
    assert plan.activations == 2 * tokens * 2 * per_layer_token == 15360
    assert plan.logits == 2 * tokens * 32 * 4 == 8192
    assert plan.total == 2896 + 1792 + 15360 + 8192


def test_checkpointing_sharding_quantization_and_optimizers_by_hand() -> None:
    checkpointed = plan_memory(_cfg("train.gradient_checkpointing=true"), TOY)
    assert checkpointed.activations == 2 * 32 * (2 * 8 + 120)  # every layer's input + one layer live
    sharded = plan_memory(_cfg(), TOY, gpus=2)
    assert (sharded.weights, sharded.trainable_state) == (1448, 896)
    assert sharded.activations == 15360  # not sharded
    qlora = plan_memory(_cfg("model.quantization=4bit"), TOY)
    assert qlora.weights == round(1152 * 4.127 / 8 + (256 + 40) * 2)
    eight_bit = plan_memory(_cfg("train.optimizer=adamw_8bit"), TOY)
    assert eight_bit.trainable_state == 112 * (4 + 4 + 2)
    dora = plan_memory(_cfg("lora.method=dora"), TOY)
    assert dora.trainable_params == 112 + 2 * (8 + 4)  # + a magnitude per output of q and v, per layer
    ia3 = plan_memory(_cfg("lora.method=ia3"), TOY)
    assert ia3.trainable_params == 2 * (4 + 4 + 16)  # k and v outputs, down_proj's input, per layer
    full = plan_memory(_cfg("lora.method=full"), TOY)
    assert full.trainable_params == 1448 and full.trainable_state == 1448 * (4 + 4 + 8 + 2)


@pytest.mark.parametrize(
    ("model_id", "published"),
    [
        ("HuggingFaceTB/SmolLM2-135M-Instruct", 134.5e6),
        ("meta-llama/Meta-Llama-3-8B-Instruct", 8.03e9),
        ("google/gemma-3-27b-it", 27.4e9),
        ("google/gemma-3-270m-it", 268e6),
    ],
)
def test_reference_shapes_add_up_to_the_published_counts(model_id: str, published: float) -> None:
    assert KNOWN[model_id].params == pytest.approx(published, rel=0.01)


def test_the_27b_recipe_fits_one_80gb_gpu_with_qlora_and_four_with_fsdp() -> None:
    cfg = load_config(PARAMS, "gemma3-27b")
    arch = architecture(cfg)
    qlora = plan_memory(load_config(PARAMS, "gemma3-27b", ["model.quantization=4bit"]), arch)
    assert qlora.total < 80e9 * 0.9  # headroom for the CUDA context and allocator fragmentation
    assert plan_memory(cfg, arch, gpus=4).total < 80e9 * 0.9
    assert cfg.train.gradient_checkpointing  # without it the activations alone are ~58 GiB
    no_checkpointing = load_config(PARAMS, "gemma3-27b", ["train.gradient_checkpointing=false"])
    assert plan_memory(no_checkpointing, arch).total > 80e9


def test_local_base_model_config_is_used_and_unknown_models_are_named(tmp_path: Path) -> None:
    smol = {
        "hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
        "intermediate_size": 1536, "vocab_size": 49152, "tie_word_embeddings": True,
    }  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(smol))
    (tmp_path / "logicflow_model.json").write_text(
        json.dumps({"id": "someone/smol-copy", "revision": "main", "source": "hub", "sha256": "0"})
    )
    cfg = load_config(PARAMS, "cpu", ["model.id=someone/smol-copy"])
    assert architecture(cfg, tmp_path) == KNOWN["HuggingFaceTB/SmolLM2-135M-Instruct"]
    with pytest.raises(ConfigError, match="model.id=someone/other: shape unknown before download"):
        architecture(load_config(PARAMS, "cpu", ["model.id=someone/other"]), tmp_path)


def test_plan_command_prints_the_estimate(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "logicflow.cli", "plan", "--root", str(tmp_path), "--params", str(PARAMS)]
    done = subprocess.run([*argv, "--profile", "gemma3-27b", "--gpus", "4", "--json"], capture_output=True,
                          text=True, check=True)  # fmt: skip
    memory, compute = json.loads(done.stdout)["memory"], json.loads(done.stdout)["compute"]
    assert compute["tokens_per_row"] == 2048 and compute["tokens_source"].startswith("upper bound")
    assert memory["gpus"] == 4 and memory["model"] == "google/gemma-3-27b-it"
    assert memory["total"] == sum(memory[k] for k in ("weights", "trainable_state", "activations", "logits"))
    assert not any(tmp_path.iterdir())  # nothing downloaded or written


def test_compute_and_cost_by_hand() -> None:
    cfg = _cfg("train.max_steps=-1", "train.epochs=2")
    at = {"gpus": 2, "mfu": 0.5}
    plan = plan_compute(cfg, TOY, 100, 50, tokens_source="given", **at, peak_tflops=1.0, usd_per_gpu_hour=2)
    assert plan.trained_tokens == 100 * 50 * 2
    assert plan.flops == 4 * 1448 * 10_000  # 4 N per trained token
    assert plan.hours == pytest.approx(4 * 1448 * 10_000 / (2 * 1e12 * 0.5) / 3600)
    assert plan.usd == pytest.approx(plan.hours * 2 * 2)
    steps = _cfg("train.max_steps=10", "train.grad_accum=1")
    budget = plan_compute(steps, TOY, 100, 50, tokens_source="given", **at)
    assert budget.epochs == pytest.approx(10 * 2 * 2 / 100) and budget.usd is None  # steps x batch x GPUs


def test_tokens_per_row_come_from_validate_only_for_the_same_tokenizer(tmp_path: Path) -> None:
    cfg = load_config(PARAMS, "cpu")
    summary = tmp_path / "summary.json"
    length = {"template": "chatml", "tokenizer": cfg.model.id, "token_length": {"mean": 177.5}}
    summary.write_text(json.dumps({"clean": 480, "length": length}))
    assert measured_tokens_per_row(cfg, summary) == (480, 177.5)
    assert measured_tokens_per_row(load_config(PARAMS, "gemma3-27b"), summary) is None  # another tokenizer
    assert measured_tokens_per_row(cfg, tmp_path / "missing.json") is None


PROFILES = sorted(yaml.safe_load(PARAMS.read_text())["profiles"])


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_has_a_plan(profile: str, tmp_path: Path) -> None:
    from logicflow.model import resolve
    from logicflow.paths import Paths

    cfg, paths = load_config(PARAMS, profile), Paths.from_root(tmp_path)
    if cfg.model.id not in KNOWN:  # the tiny test model: built locally, then read from its config.json
        resolve(cfg.model, paths)
    plan = plan_memory(cfg, architecture(cfg, paths.base_model))
    assert 0 < plan.trainable_params < plan.params and plan.total > plan.weights


@pytest.mark.parametrize("method", ["lora", "dora", "ia3", "prompt_tuning", "full"])
def test_trainable_count_equals_peft_on_the_tiny_model(method: str, tmp_path: Path) -> None:
    from peft import get_peft_model

    from logicflow.model import load_causal_lm, resolve
    from logicflow.paths import Paths
    from logicflow.training.trainer import build_peft_config

    cfg, paths = load_config(PARAMS, "smoke", [f"lora.method={method}"]), Paths.from_root(tmp_path)
    resolve(cfg.model, paths)
    model = load_causal_lm(paths.base_model)
    peft_config = build_peft_config(cfg.lora, cfg.model)
    counted = sum(p.numel() for p in model.parameters()) if peft_config is None else (
        get_peft_model(model, peft_config).get_nb_trainable_parameters()[0]
    )  # fmt: skip
    assert plan_memory(cfg, architecture(cfg, paths.base_model)).trainable_params == counted
