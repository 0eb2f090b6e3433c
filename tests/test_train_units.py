"""Train-stage pieces without training: resume decisions, hardware fallbacks, Gemma-3 freezing, loss rows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from logicflow.config import LoraConfig, ModelConfig, TrainConfig
from logicflow.errors import TrainingError
from logicflow.training import checkpoints, plots
from logicflow.training import trainer as build

CPU = build.Hardware(cuda=False, bf16=False, bitsandbytes=False, flash_attn=False)
CPU_BF16 = build.Hardware(
    cuda=False, bf16=True, bitsandbytes=False, flash_attn=False, name="CPU with native bf16"
)
H100 = build.Hardware(cuda=True, bf16=True, bitsandbytes=True, flash_attn=True, name="CUDA H100")
T4 = build.Hardware(cuda=True, bf16=False, bitsandbytes=False, flash_attn=False, name="CUDA T4")


def _checkpoint(folder: Path, step: int, complete: bool = True) -> Path:
    """A checkpoint folder with every file a resume reads (`complete`), or one cut off before the state."""
    from safetensors.torch import save_file

    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    save_file({"w": torch.zeros(2)}, path / "adapter_model.safetensors")
    (path / "adapter_config.json").write_text("{}")
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        torch.save({}, path / name)
    if complete:
        (path / "trainer_state.json").write_text("{}")
    return path


def test_resume_plan_follows_the_fingerprint(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    assert checkpoints.plan(folder, "fp1", resume=False) == checkpoints.ResumePlan(None, None)
    checkpoints.prepare(folder, "fp1", checkpoints.ResumePlan(None, None))
    checkpoints.write_state(folder, checkpoints.CheckpointState("fp1", mlflow_run_id="run1"))
    _checkpoint(folder, 4)
    eight = _checkpoint(folder, 8)
    _checkpoint(folder, 12, complete=False)  # killed while saving: ignored
    assert checkpoints.plan(folder, "fp1", resume=False) == checkpoints.ResumePlan(eight, "run1")
    assert checkpoints.plan(folder, "fp1", resume=True) == checkpoints.ResumePlan(eight, "run1")
    # other params / data / code: start over, or refuse when --resume was asked for
    assert checkpoints.plan(folder, "fp2", resume=False) == checkpoints.ResumePlan(None, None)
    with pytest.raises(TrainingError, match="come from other params, data or code; run without --resume"):
        checkpoints.plan(folder, "fp2", resume=True)
    checkpoints.prepare(folder, "fp2", checkpoints.ResumePlan(None, None))
    assert not list(folder.glob("checkpoint-*"))
    assert checkpoints.read_state(folder) == checkpoints.CheckpointState("fp2")
    # a finished run leaves nothing to resume
    checkpoints.write_state(folder, checkpoints.CheckpointState("fp2", completed=True))
    _checkpoint(folder, 4)
    assert checkpoints.plan(folder, "fp2", resume=True).checkpoint is None


def test_fingerprint_covers_params_data_and_base(tmp_path: Path) -> None:
    data = tmp_path / "train.parquet"
    data.write_bytes(b"rows")
    base = checkpoints.fingerprint({"train": {"lr": 1}}, "sha", {"train": data})
    assert base == checkpoints.fingerprint({"train": {"lr": 1}}, "sha", {"train": data})
    assert base != checkpoints.fingerprint({"train": {"lr": 2}}, "sha", {"train": data})
    assert base != checkpoints.fingerprint({"train": {"lr": 1}}, "other", {"train": data})
    data.write_bytes(b"other rows")
    assert base != checkpoints.fingerprint({"train": {"lr": 1}}, "sha", {"train": data})


@pytest.mark.parametrize(
    ("hw", "asked", "used", "noted"),
    [
        (CPU, "auto", "fp32", False),
        (CPU, "bf16", "fp32", True),
        (CPU_BF16, "auto", "bf16", False),
        (CPU_BF16, "bf16", "bf16", False),
        (CPU_BF16, "fp16", "fp32", True),
        (CPU, "fp16", "fp32", True),
        (H100, "auto", "bf16", False),
        (T4, "auto", "fp16", False),
        (T4, "bf16", "fp32", True),
        (H100, "fp32", "fp32", False),
    ],
)
def test_precision_follows_the_hardware(hw, asked: str, used: str, noted: bool) -> None:
    plan = build.plan_hardware(TrainConfig(precision=asked), ModelConfig(), hw)
    assert plan.precision == used
    assert bool(plan.notes) == noted
    if noted:
        assert f"train.precision={asked} needs " in plan.notes[0]
    # master weights stay fp32 under CPU autocast; a GPU loads them in the compute precision
    assert plan.weights_dtype == (build.TORCH_DTYPES[used] if hw.cuda else "float32")
    # a frozen base (LoRA) is held in the compute precision; full fine-tuning keeps fp32 masters on a CPU
    assert plan.load_dtype == build.TORCH_DTYPES[used]
    full = build.plan_hardware(TrainConfig(precision=asked), ModelConfig(), hw, method="full")
    assert full.load_dtype == full.weights_dtype


def test_paged_optimizer_and_qlora_without_cuda_and_bitsandbytes_stop_before_loading() -> None:
    train, model = TrainConfig(optimizer="paged_adamw_32bit"), ModelConfig(quantization="4bit")
    both = r"train.optimizer=paged_adamw_32bit and model.quantization=4bit \(QLoRA\) need a CUDA GPU"
    with pytest.raises(TrainingError, match=both + r" and bitsandbytes \(CPU only here.*make setup GPU=1"):
        build.plan_hardware(train, model, CPU)
    with pytest.raises(TrainingError, match=r"^train.optimizer=adamw_8bit need"):
        build.plan_hardware(TrainConfig(optimizer="adamw_8bit"), ModelConfig(), T4)  # CUDA, no bitsandbytes
    on_gpu = build.plan_hardware(train, model, H100)
    assert (on_gpu.optimizer, on_gpu.quantize_4bit, on_gpu.notes) == ("paged_adamw_32bit", True, [])


def test_qlora_loads_nf4_double_quantised_in_the_device_precision() -> None:
    """The QLoRA config as far as a CPU allows (loading needs CUDA + bitsandbytes, refused above)."""
    for hw, compute in ((H100, torch.bfloat16), (T4, torch.float16)):
        quant = build.qlora_config(hw)
        assert quant.load_in_4bit and quant.bnb_4bit_quant_type == "nf4" and quant.bnb_4bit_use_double_quant
        assert quant.bnb_4bit_compute_dtype == compute


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
def test_gemma3_vision_tower_and_projector_stay_frozen() -> None:
    """The reference recipe: LoRA on the language model only; nothing under the vision tower trains."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, Gemma3Config, Gemma3TextConfig, SiglipVisionConfig

    text = Gemma3TextConfig(
        vocab_size=300,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=16,
    )
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=28,
        patch_size=14,
    )
    model = AutoModelForCausalLM.from_config(
        Gemma3Config(
            text_config=text,
            vision_config=vision,
            mm_tokens_per_image=4,
            image_token_index=299,
            boi_token_index=297,
            eoi_token_index=298,
        )
    )
    model_cfg = ModelConfig(
        id="google/gemma-3-27b-it", template="gemma", freeze_modules=["vision_tower", "multi_modal_projector"]
    )
    assert build.freeze_modules(model, model_cfg.freeze_modules) > 0
    build.check_target_modules(model, "all-linear", model_cfg.freeze_modules)
    peft_model = get_peft_model(model, build.build_peft_config(LoraConfig(r=4, alpha=8), model_cfg))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("language_model" in n and "lora_" in n for n in trainable)
    lora_modules = [n for n, _ in peft_model.named_modules() if n.endswith("lora_A")]
    assert not [n for n in lora_modules if "vision_tower" in n or "multi_modal_projector" in n]
    with pytest.raises(TrainingError, match="no_such_proj not found in Gemma3ForConditionalGeneration"):
        build.check_target_modules(model, ["no_such_proj"], model_cfg.freeze_modules)


def test_loss_rows_merge_train_and_eval_and_smooth() -> None:
    history = [
        {"loss": 4.0, "step": 1},
        {"loss": 2.0, "step": 2},
        {"eval_loss": 3.0, "step": 2},
        {"train_runtime": 1.0, "step": 2},
    ]
    rows = plots.loss_rows(history)
    assert [(r["step"], r["train_loss"], r["eval_loss"]) for r in rows] == [(1, 4.0, None), (2, 2.0, 3.0)]
    assert rows[0]["train_loss_smoothed"] == pytest.approx(4.0)  # debiased EMA starts at the first value
    assert 2.0 < rows[1]["train_loss_smoothed"] < 4.0


def test_length_grouped_sampler_groups_steps_but_keeps_a_random_order() -> None:
    import random

    rng = random.Random(0)
    lengths = [rng.randint(80, 500) for _ in range(203)]
    sampler = build.LengthGroupedShuffledSampler(lengths, step_rows=4, seed=42)
    order = list(sampler)
    assert sorted(order) == list(range(203))  # every row once per epoch
    assert order == list(sampler)  # deterministic (resume sees the same order)
    steps = [order[i : i + 4] for i in range(0, 200, 4)]
    padded = sum(4 * max(lengths[i] for i in s) for s in steps)
    real = sum(lengths[i] for s in steps for i in s)
    assert 1 - real / padded < 0.05  # random batches of 4 here waste about 30%
    firsts = [max(lengths[i] for i in s) for s in steps]
    assert firsts != sorted(firsts, reverse=True)  # not served longest-first
    assert len(order[200:]) == 3  # the short step comes last
    sampler.set_epoch(1)
    assert list(sampler) != order


def test_compact_head_matches_trl_fused_head_in_loss_and_gradients() -> None:
    """The CPU loss path scores label positions only, yet equals TRL's fused head (which scores them all)."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from logicflow.training import compact_head

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4
    )
    base = LlamaForCausalLM(cfg)
    add_fused_lm_head(base, outputs=("entropy", "is_top1"))
    model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    assert compact_head.install(model, torch.device("cpu"))
    ids = torch.randint(0, 97, (3, 12))
    mask = torch.ones_like(ids)
    mask[2, 8:] = 0  # a padded row
    labels = torch.where(mask.bool(), ids, -100)
    labels[:, :5] = -100  # the prompt
    lora = [p for p in model.parameters() if p.requires_grad]

    def loss_and_grads(**flag: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = model(input_ids=ids, attention_mask=mask, labels=labels, **flag)
        if "compact_lm_head" in flag:
            loss, _ = compact_head.mean_nll(out.logits, out.targets, float(out.targets.numel()))
        else:
            loss = out.loss
        grads = torch.autograd.grad(loss, lora)
        return loss.detach(), grads

    fused_loss, fused_grads = loss_and_grads(fused_lm_head=True)
    compact_loss, compact_grads = loss_and_grads(compact_lm_head=True)
    assert torch.allclose(compact_loss, fused_loss, atol=1e-5)
    for a, b in zip(compact_grads, fused_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    # without the flag the model is what it was: full logits for generation
    assert model(input_ids=ids).logits.shape == (3, 12, 97)


def test_fp32_attention_equals_sdpa_and_keeps_the_compute_dtype() -> None:
    """The CPU training attention is sdpa computed in fp32: the same result as sdpa on an fp32 model, and on a
    bf16 model (the frozen base while training) it hands bf16 on, so the next GEMMs stay bf16."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4
    )
    model = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 97, (2, 10))
    with torch.no_grad():
        reference = model(input_ids=ids).logits
        model.set_attn_implementation(build.register_fp32_sdpa())
        assert torch.equal(model(input_ids=ids).logits, reference)
        model.to(torch.bfloat16)
        captured: list[torch.dtype] = []
        model.model.layers[0].self_attn.o_proj.register_forward_pre_hook(
            lambda _m, args: captured.append(args[0].dtype)
        )
        mixed = model(input_ids=ids).logits
    assert captured == [torch.bfloat16]
    assert torch.allclose(mixed.float(), reference, atol=0.1)


def _tiny_lora(method: str = "lora") -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4
    )
    config = LoraConfig(
        r=4, target_modules="all-linear", init_lora_weights=False, use_dora=method == "dora", lora_alpha=8
    )
    return get_peft_model(LlamaForCausalLM(cfg), config)


def _logits_and_grads(
    model: torch.nn.Module, ids: torch.Tensor, bf16: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and the adapters' gradients (flattened into one vector) of a mean-square loss on the logits;
    with `bf16`, as in CPU training: the frozen base in bf16, fp32 adapters, under bf16 autocast."""
    if bf16:
        model.get_base_model().model.to(torch.bfloat16)
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.data = param.data.float()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=ids).logits.float()
    adapters = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(logits.square().mean(), adapters)
    return logits.detach(), torch.cat([g.flatten() for g in grads])


def test_fused_lora_forward_equals_peft_in_outputs_and_gradients() -> None:
    """[x, s·A(x)] · [W, B]ᵀ is PEFT's base(x) + B(A(x)) * s: the same logits and adapter gradients in
    fp32; under bf16 autocast (the CPU training path) no further from fp32 than PEFT."""
    from logicflow.training import fused_lora

    ids = torch.randint(0, 97, (3, 12))
    fused = _tiny_lora()
    assert fused_lora.install(fused) == 2 * 7  # q k v o gate up down in each layer
    ref_logits, ref_grads = _logits_and_grads(_tiny_lora(), ids)
    logits, grads = _logits_and_grads(fused, ids)
    assert torch.allclose(logits, ref_logits, atol=1e-5) and torch.allclose(grads, ref_grads, atol=1e-7)

    fused = _tiny_lora()
    fused_lora.install(fused)
    peft_error = (_logits_and_grads(_tiny_lora(), ids, bf16=True)[1] - ref_grads).norm()
    fused_error = (_logits_and_grads(fused, ids, bf16=True)[1] - ref_grads).norm()
    assert fused_error <= 1.5 * peft_error, (fused_error, peft_error)


def _single_lora_layer() -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(64, 256, bias=False))
    return get_peft_model(base, LoraConfig(r=4, lora_alpha=4, target_modules=["0"], init_lora_weights=False))


def test_fused_lora_keeps_updates_smaller_than_a_bf16_step() -> None:
    """Under bf16 autocast PEFT rounds base(x) to bf16 and then adds the update, so an update under half a
    bf16 step of the output is lost; the fused layer rounds the sum once and the update survives on average
    (the cause of bf16 runs' slower learning, docs/benchmarks.md)."""
    from logicflow.training import fused_lora

    x = torch.randn(512, 64)
    recovered = {}
    for name in ("peft", "fused"):
        model = _single_lora_layer()
        layer = model.base_model.model[0]
        with torch.no_grad():
            base = layer.base_layer(x)
            update = model(x) - base
            layer.lora_B["default"].weight.mul_(3e-4 / update.abs().mean())  # |update| ~ 3e-4, |base| ~ 0.5
            update = model(x) - base
            layer.base_layer.to(torch.bfloat16)
            if name == "fused":
                fused_lora.install(model)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(x).float()
        # the share of the update the bf16 output carries: 1 when it survives, 0 when rounded away
        recovered[name] = float(((out - base) * update.sign()).mean() / update.abs().mean())
    assert recovered["fused"] > 0.9 and recovered["peft"] < 0.5, recovered  # measured: 1.00 and 0.28


def test_fused_lora_leaves_dora_and_disabled_adapters_to_peft() -> None:
    """Layers with a LoRA variant (DoRA) or with adapters switched off compute exactly PEFT's forward."""
    from logicflow.training import fused_lora

    ids = torch.randint(0, 97, (2, 8))
    peft_model, fused_model = _tiny_lora("dora"), _tiny_lora("dora")
    fused_lora.install(fused_model)
    with torch.no_grad():
        assert torch.equal(fused_model(input_ids=ids).logits, peft_model(input_ids=ids).logits)
        with fused_model.disable_adapter(), peft_model.disable_adapter():
            assert torch.equal(fused_model(input_ids=ids).logits, peft_model(input_ids=ids).logits)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_mean_nll_equals_log_softmax_loss_gradient_and_top1(dtype: torch.dtype) -> None:
    """The one-pass loss equals log-softmax + gather (value and gradient; in bf16 within one rounding of the
    gradient), counts top-1 hits, and leaves fp32 logits untouched (it works on chunk copies)."""
    from logicflow.training import compact_head

    torch.manual_seed(0)
    n, vocab = 2 * compact_head.NLL_CHUNK_ROWS + 7, 300  # several chunks and a ragged last one
    logits = (torch.randn(n, vocab) * 4).to(dtype).requires_grad_()
    targets = torch.randint(0, vocab, (n,))
    targets[:20] = logits.detach()[:20].float().argmax(-1)  # some rows right at top-1
    kept = logits.detach().clone()
    loss, correct = compact_head.mean_nll(logits, targets, 50.0)
    (loss * 3).backward()
    reference = logits.detach().float().requires_grad_()
    want = -reference.log_softmax(-1).gather(-1, targets[:, None]).sum() / 50.0
    (want * 3).backward()
    assert torch.equal(logits.detach(), kept)
    torch.testing.assert_close(loss, want.detach(), rtol=1e-5, atol=1e-5)
    assert int(correct) == int((reference.argmax(-1) == targets).sum()) >= 20
    tolerance = {"rtol": 1e-5, "atol": 1e-7} if dtype == torch.float32 else {"rtol": 1e-2, "atol": 1e-4}
    torch.testing.assert_close(logits.grad.float(), reference.grad, **tolerance)
