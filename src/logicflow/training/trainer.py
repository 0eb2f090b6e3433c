"""Build the TRL SFTTrainer from `params.yaml`: hardware-aware precision and optimizer, PEFT config, guards.

Everything the trainer uses comes from `cfg.train`, `cfg.lora` and `cfg.model`; what the hardware cannot do
(bf16/fp16 without a GPU, 4-bit or paged optimizers without CUDA + bitsandbytes) falls back with a logged
message that is also recorded in `reports/train/params.json` (`hardware_notes`).

Less wasted work (measured in benchmarks/bench_train.py):
- batches are drawn length-grouped (`LengthGroupedShuffledSampler`: random mega-batches of 50 steps, sorted by
  length, cut into steps whose order is shuffled again), which removes most padding without biasing the data
  order (transformers' own `group_by_length` serves each mega-batch longest-first);
- the LM head sees only supervised positions (`compact_head`): TRL's fused head does that only on Triton
  devices and scores every position in fp32 elsewhere;
- on a CPU with native bf16 (AVX512-BF16/AMX) `precision: auto` trains in bf16 autocast; a frozen base is held
  in bf16 (adapters stay fp32), and attention is computed in fp32, where PyTorch's CPU kernel is faster;
- LoRA layers add their update inside the base matmul (`fused_lora`): the sum is rounded to bf16 once, so
  small updates are not rounded away (bf16 runs then learn as fp32 runs do) and the step is faster.
`train.packing: true` uses TRL's best-fit-decreasing packing, padding-free with per-row position_ids (a
block-diagonal mask under sdpa, varlen kernels under flash attention): the right choice on a GPU with flash
attention; on CPU, sdpa still computes the masked cross-row attention, so grouping wins there.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logicflow.errors import TrainingError
from logicflow.hardware import cpu_has_native_bf16

logger = logging.getLogger(__name__)

TORCH_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
FP32_SDPA = "sdpa_fp32"  # the attention `register_fp32_sdpa` adds for bf16 training on a CPU
NEEDS_BNB = {"paged_adamw_32bit", "adamw_8bit"}


@dataclass(frozen=True)
class Hardware:
    cuda: bool
    bf16: bool  # native bf16 math: a CUDA device with bf16, or a CPU with AVX512-BF16 / AMX
    bitsandbytes: bool
    flash_attn: bool
    name: str = "CPU only"

    @classmethod
    def detect(cls) -> Hardware:
        import torch

        cuda = torch.cuda.is_available()
        cpu_bf16 = not cuda and cpu_has_native_bf16()
        return cls(
            cuda=cuda,
            bf16=torch.cuda.is_bf16_supported() if cuda else cpu_bf16,
            bitsandbytes=cuda and importlib.util.find_spec("bitsandbytes") is not None,
            flash_attn=cuda and importlib.util.find_spec("flash_attn") is not None,
            name=f"CUDA {torch.cuda.get_device_name(0)}"
            if cuda
            else f"CPU{' with native bf16' if cpu_bf16 else ' only'}",
        )


@dataclass
class Plan:
    """What this hardware will actually run, and why it differs from what was asked."""

    precision: str  # the compute precision: bf16/fp16 run as mixed precision (autocast)
    optimizer: str
    quantize_4bit: bool
    notes: list[str] = field(default_factory=list)
    cuda: bool = False
    frozen_base: bool = True  # LoRA / prompt tuning: only adapter weights train (PEFT keeps those in fp32)

    @property
    def weights_dtype(self) -> str:
        """Master weights (and the merged model): half precision on a GPU; fp32 under CPU autocast."""
        return TORCH_DTYPES[self.precision] if self.cuda else "float32"

    @property
    def load_dtype(self) -> str:
        """The base model's dtype while training. A frozen base is only read, so on a CPU it is held in the
        compute precision too: no per-step casts of every weight under autocast (measured in
        benchmarks/bench_train.py); full fine-tuning keeps fp32 master weights there."""
        return TORCH_DTYPES[self.precision] if self.frozen_base else self.weights_dtype


def plan_hardware(train: Any, model_cfg: Any, hw: Hardware, method: str = "lora") -> Plan:
    notes: list[str] = []
    asked = train.precision
    if asked == "auto":
        precision = "bf16" if hw.bf16 else "fp16" if hw.cuda else "fp32"
    elif asked == "bf16" and not hw.bf16:
        precision = "fp32"
        notes.append(
            f"train.precision=bf16 needs native bf16 (a CUDA GPU with bf16, or a CPU with AVX512-BF16/AMX; "
            f"{hw.name} here): training in fp32"
        )
    elif asked == "fp16" and not hw.cuda:
        precision = "fp32"
        notes.append(f"train.precision=fp16 needs a CUDA GPU ({hw.name} here): training in fp32")
    else:
        precision = asked
    missing = []
    if train.optimizer in NEEDS_BNB and not hw.bitsandbytes:
        missing.append(f"train.optimizer={train.optimizer}")
    if model_cfg.quantization == "4bit" and not hw.bitsandbytes:
        missing.append("model.quantization=4bit (QLoRA)")
    if missing:  # never a silent fallback: the profile's memory plan depends on these
        bnb = "installed" if importlib.util.find_spec("bitsandbytes") else "missing"
        raise TrainingError(
            f"{' and '.join(missing)} need a CUDA GPU and bitsandbytes ({hw.name} here, bitsandbytes {bnb}): "
            "install the GPU extra (`make setup GPU=1`) on a GPU machine, or choose adamw_torch / none"
        )
    for note in notes:
        logger.warning(note)
    quantize = model_cfg.quantization == "4bit"
    return Plan(precision, train.optimizer, quantize, notes, cuda=hw.cuda, frozen_base=method != "full")


# ----------------------------------------------------------------------------------------- model


def load_model(base_dir: Path, plan: Plan, hw: Hardware) -> Any:
    """The base model in the training precision (4-bit NF4 for QLoRA), flash attention when installed."""
    from transformers import AutoModelForCausalLM

    from logicflow.model import load_causal_lm

    dtype = plan.load_dtype
    if plan.quantize_4bit:
        from peft import prepare_model_for_kbit_training

        quant = qlora_config(hw)
        device = {"": int(os.environ.get("LOCAL_RANK", "0"))}
        model = AutoModelForCausalLM.from_pretrained(
            base_dir, dtype=quant.bnb_4bit_compute_dtype, quantization_config=quant, device_map=device
        )
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        model = load_causal_lm(base_dir, dtype)
    if hw.flash_attn and plan.precision in ("bf16", "fp16"):
        model.set_attn_implementation("flash_attention_2")
    elif not hw.cuda and plan.precision == "bf16":
        model.set_attn_implementation(register_fp32_sdpa())
    return model


def qlora_config(hw: Hardware) -> Any:
    """QLoRA's 4-bit loading: NF4 with double-quantised scales (what `logicflow plan` counts, 4.127 bits),
    computing in bf16 where the GPU has it, else fp16."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16 if hw.bf16 else torch.float16,
    )


def register_fp32_sdpa() -> str:
    """Register (once) and name an sdpa attention that computes in fp32.

    PyTorch's CPU flash-attention kernel is several times slower in bf16 than in fp32 (forward and backward,
    measured on SmolLM2-135M); attention is a small share of the FLOPs, so on a CPU the GEMMs run in bf16
    and attention in fp32, its inputs and output cast at the boundary."""
    import torch
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    def sdpa_fp32(module: Any, query: Any, key: Any, value: Any, mask: Any, **kwargs: Any) -> Any:
        with torch.autocast(query.device.type, enabled=False):
            out, weights = sdpa_attention_forward(
                module, query.float(), key.float(), value.float(), mask, **kwargs
            )
        return out.to(query.dtype), weights

    AttentionInterface.register(FP32_SDPA, sdpa_fp32)
    return FP32_SDPA


def freeze_modules(model: Any, prefixes: list[str]) -> int:
    """Freeze every parameter under a module named in `prefixes` (e.g. a vision tower); returns how many."""
    pattern = _module_pattern(prefixes)
    frozen = 0
    if pattern is None:
        return 0
    for name, param in model.named_parameters():
        if re.fullmatch(pattern, name.rsplit(".", 1)[0]):
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


def _module_pattern(prefixes: list[str]) -> str | None:
    """A regex matching a module path that contains one of `prefixes` as a path component."""
    if not prefixes:
        return None
    names = "|".join(re.escape(p) for p in prefixes)
    return rf"(.*\.)?({names})(\..*)?"


def linear_module_names(model: Any) -> set[str]:
    import torch

    names = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__ in ("Linear4bit", "Linear8bitLt"):
            names.add(name)
    return names


def check_target_modules(model: Any, targets: str | list[str], frozen: list[str]) -> None:
    """Every listed target must name a module of this model (PEFT matches a full name or a `.`-suffix)."""
    pattern = _module_pattern(frozen)
    linear = {n for n in linear_module_names(model) if not (pattern and re.fullmatch(pattern, n))}
    suffixes = sorted({n.rsplit(".", 1)[-1] for n in linear})
    if targets == "all-linear":
        if not linear:
            raise TrainingError(
                f"lora.target_modules=all-linear: {type(model).__name__} has no trainable Linear "
                "layers outside model.freeze_modules"
            )
        return
    names = {name for name, _ in model.named_modules()}
    missing = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in names)]
    if missing:
        raise TrainingError(
            f"lora.target_modules: {', '.join(missing)} not found in {type(model).__name__}; "
            f"its linear layers "
            f"are: {', '.join(suffixes)} (or use all-linear)"
        )


LOW_RANK = ("lora", "dora")  # methods with r/alpha/targets; with ia3, mergeable into the weights
MERGEABLE = (*LOW_RANK, "ia3")


def build_peft_config(lora: Any, model_cfg: Any) -> Any:
    """LoRA / DoRA / IA3 / prompt tuning config, or None for full fine-tuning."""
    from peft import IA3Config, LoraConfig, PromptTuningConfig, PromptTuningInit, TaskType

    if lora.method == "full":
        return None
    if lora.method == "prompt_tuning":
        return PromptTuningConfig(
            task_type=TaskType.CAUSAL_LM,
            num_virtual_tokens=lora.num_virtual_tokens,
            prompt_tuning_init=PromptTuningInit.RANDOM,
        )
    if lora.method == "ia3":  # PEFT's per-architecture default: k, v and the MLP's down projection
        frozen = _module_pattern(model_cfg.freeze_modules)
        return IA3Config(task_type=TaskType.CAUSAL_LM, exclude_modules=frozen)
    targets = lora.target_modules if lora.target_modules == "all-linear" else list(lora.target_modules)
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        exclude_modules=_module_pattern(model_cfg.freeze_modules),
        bias="none",
        use_dora=lora.method == "dora",
    )


# ----------------------------------------------------------------------------------------- trainer


def build_sft_config(cfg: Any, output_dir: Path, plan: Plan, hw: Hardware, has_eval: bool) -> Any:
    import warnings

    from trl import SFTConfig

    train = cfg.train
    with warnings.catch_warnings():  # transformers 5 renames gradient_checkpointing; TRL 1.16 still uses it
        warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)
        return SFTConfig(
            output_dir=str(output_dir),
            # schedule
            num_train_epochs=train.epochs,
            max_steps=train.max_steps,
            learning_rate=train.learning_rate,
            lr_scheduler_type=train.lr_scheduler,
            warmup_steps=train.warmup,
            weight_decay=train.weight_decay,
            max_grad_norm=train.max_grad_norm,
            optim=plan.optimizer,
            seed=train.seed,
            data_seed=train.seed,
            # batches
            per_device_train_batch_size=train.batch_size,
            per_device_eval_batch_size=train.batch_size,
            gradient_accumulation_steps=train.grad_accum,
            max_length=train.cutoff_len,
            packing=train.packing,
            packing_strategy="bfd",
            train_sampling_strategy="random",  # the stage's trainer swaps in LengthGroupedShuffledSampler
            assistant_only_loss=True,
            dataloader_num_workers=0,
            # hardware
            use_cpu=not hw.cuda,
            bf16=plan.precision == "bf16",
            fp16=plan.precision == "fp16",
            gradient_checkpointing=train.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False} if train.gradient_checkpointing else None,
            ddp_find_unused_parameters=False,
            # checkpoints, eval, logs
            save_strategy="steps",
            save_steps=train.save_steps,
            save_total_limit=train.save_total_limit,
            eval_strategy="steps" if has_eval else "no",
            eval_steps=train.eval_steps,
            prediction_loss_only=True,
            logging_steps=train.logging_steps,
            logging_nan_inf_filter=False,  # NanGuard must see a NaN loss, not the trainer's running average
            report_to="none",  # MLflow is logged by logicflow.tracking (transformers 5 defaults to none)
            disable_tqdm=False,  # keep ProgressCallback (not PrinterCallback); swapped for QuietProgress
        )


class LengthGroupedShuffledSampler:
    """Indices for steps of rows with similar lengths, in a random step order.

    A seeded permutation is cut into mega-batches of `mega` steps; each is sorted by length and cut into steps
    of `step_rows` rows (per-device batch x processes, so every process gets a similar length); all full steps
    are shuffled, a short last step stays last. Deterministic in (seed, epoch), so a resumed run sees the
    same order.
    """

    def __init__(self, lengths: list[int], step_rows: int, seed: int, mega: int = 50) -> None:
        self.lengths, self.step_rows, self.seed, self.mega = lengths, step_rows, seed, mega
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):  # noqa: ANN204 - Sampler protocol
        import torch

        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        size = self.step_rows * self.mega
        steps: list[list[int]] = []
        for start in range(0, len(order), size):
            chunk = sorted(order[start : start + size], key=lambda i: self.lengths[i], reverse=True)
            steps += [chunk[i : i + self.step_rows] for i in range(0, len(chunk), self.step_rows)]
        full = [s for s in steps if len(s) == self.step_rows]
        short = [s for s in steps if len(s) < self.step_rows]
        shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
        return iter([i for step in shuffled + short for i in step])


def _trainer_class() -> type:
    from trl import SFTTrainer

    from logicflow.training.compact_head import CompactHeadLoss
    from logicflow.training.distill import DistillationLoss

    class LogicFlowSFTTrainer(DistillationLoss, CompactHeadLoss, SFTTrainer):
        """SFTTrainer with the compact LM-head loss where it pays, length-grouped batches unless packing, and
        a distillation loss when given a teacher.

        Training batches come from `LengthGroupedShuffledSampler`, eval batches are sorted by length.
        """

        group_by_length = True

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            if not self.group_by_length:
                return super()._get_train_sampler(train_dataset)
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            lengths = [len(ids) for ids in dataset["input_ids"]]
            step_rows = self.args.per_device_train_batch_size * max(1, self.args.world_size)
            return LengthGroupedShuffledSampler(lengths, step_rows, self.args.data_seed or self.args.seed)

        def _get_eval_sampler(self, eval_dataset: Any) -> Any:
            if (
                not self.group_by_length
                or self.args.world_size > 1
                or "input_ids" not in eval_dataset.column_names
            ):
                return super()._get_eval_sampler(eval_dataset)
            lengths = [len(ids) for ids in eval_dataset["input_ids"]]
            return sorted(
                range(len(lengths)), key=lengths.__getitem__
            )  # similar lengths batched: less padding

    return LogicFlowSFTTrainer


def build_trainer(
    model: Any,
    tokenizer: Any,
    args: Any,
    train_ds: Any,
    eval_ds: Any,
    peft_config: Any,
    callbacks: list[Any],
    group_by_length: bool = True,
) -> Any:
    """The SFTTrainer (length-grouped unless packing, where rows are already packed into full blocks)."""
    from transformers.trainer_callback import ProgressCallback

    from logicflow.training import compact_head, fused_lora

    cls = _trainer_class()
    cls.group_by_length = group_by_length and not args.packing
    try:
        trainer = cls(
            model=model,
            args=args,
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=callbacks,
        )
    except ValueError as exc:  # TRL/PEFT refuse a combination: say it as a training error
        raise TrainingError(f"cannot build the trainer: {exc}") from None
    trainer.remove_callback(ProgressCallback)
    trainer.compact_head = compact_head.install(trainer.model, args.device)
    fused_lora.install(trainer.model)
    return trainer


def _jsonable(value: Any) -> Any:
    if hasattr(value, "value") and not isinstance(value, int | float | str | bool):
        return value.value  # enums (scheduler, optimizer, strategies)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if all(isinstance(v, str) for v in value) else list(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


TRAINER_KEYS = (
    "num_train_epochs",
    "max_steps",
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "weight_decay",
    "max_grad_norm",
    "optim",
    "seed",
    "data_seed",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "max_length",
    "packing",
    "packing_strategy",
    "padding_free",
    "assistant_only_loss",
    "bf16",
    "fp16",
    "gradient_checkpointing",
    "use_cpu",
    "save_steps",
    "save_total_limit",
    "eval_strategy",
    "eval_steps",
    "logging_steps",
)


def used_params(trainer: Any, plan: Plan, extra: dict[str, Any]) -> dict[str, Any]:
    """Hyperparameters as the trainer and PEFT hold them (read back, not retyped)."""
    args = trainer.args
    out: dict[str, Any] = {"trainer": {k: _jsonable(getattr(args, k)) for k in TRAINER_KEYS}}
    out["trainer"]["world_size"] = args.world_size
    out["trainer"]["effective_batch_size"] = (
        args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    )
    out["trainer"]["padding_free"] = bool(getattr(trainer, "padding_free", args.padding_free))
    out["trainer"]["train_sampler"] = type(trainer._get_train_sampler()).__name__
    out["trainer"]["compact_lm_head"] = trainer.compact_head
    peft_cfg = getattr(trainer.model, "peft_config", {}).get("default")
    out["peft"] = _jsonable(peft_cfg.to_dict()) if peft_cfg is not None else None
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trainer.model.parameters())
    out["model"] = {
        "trainable_params": trainable,
        "total_params": total,
        "attn_implementation": getattr(trainer.model.config, "_attn_implementation", None),
        "dtype": str(next(trainer.model.parameters()).dtype).removeprefix("torch."),
    }
    out["precision"] = plan.precision
    out["quantize_4bit"] = plan.quantize_4bit
    out["hardware_notes"] = plan.notes
    out.update(extra)
    return out
