"""How much accelerator memory a profile's training needs, before anything is downloaded.

    logicflow plan --profile gemma3-27b [--gpus 4]

The estimate counts, per GPU, in bytes:
- **weights**: every base parameter at the load precision (bf16/fp16 2, fp32 4); with `model.quantization:
  4bit` the decoder's linear weights take NF4's 4 bits plus double-quantised block scales (4.127 bits in
  all), the rest stays 16-bit.
- **trainable state**: trainable parameters x (fp32 weight 4 + fp32 gradient 4 + optimizer state: AdamW 8,
  8-bit AdamW 2, Adafactor ~0); full fine-tuning also counts a 16-bit working copy of the weights.
- **activations**: what backward needs at the profile's cutoff x micro-batch. Per decoder layer and token a
  Llama-style block keeps about 6h + 2*kv_dim + 4i values (norm inputs/outputs, q/k/v, attention output,
  residual, gate/up/act/product of the MLP; memory-efficient attention keeps no s x s scores), 2 bytes each.
  Gradient checkpointing keeps only each layer's input (h values) and recomputes one layer at a time.
  Plus the logits in fp32, twice (values and their gradient).
- With `--gpus N` and FSDP full sharding, weights and trainable state are split N ways; activations are not.

And the compute: trained tokens = rows x mean tokens per row x epochs (the mean from the validate stage's
measured length distribution when it has run on this profile's data, else `--tokens-per-row`), FLOPs ~=
4 x N per trained token for LoRA (forward 2N, backward to the activations 2N; no weight gradients for the
frozen N), hours = FLOPs / (GPUs x dense bf16 peak x MFU), cost = GPU-hours x a stated price.

Architectures come from the model's own `config.json`: the local `models/base` when it holds the profile's
model, else the reference models' published configs below (so planning needs no download).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from logicflow.config import Config
from logicflow.errors import ConfigError
from logicflow.model import read_manifest

GIB = 1024**3
H100_BF16_DENSE_TFLOPS = 989.0  # H100 SXM, dense (no sparsity)
NF4_BITS = 4.127  # 4-bit NF4 + fp8 block scales per 64 + fp32 scales per 256 of those (double quantisation)
OPTIMIZER_BYTES = {"adamw_torch": 8, "paged_adamw_32bit": 8, "adamw_8bit": 2, "adafactor": 0}
LOAD_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4, "auto": 2}


@dataclass(frozen=True)
class Architecture:
    """The decoder's shape, as in its config.json (text model only; frozen extras counted in `other`)."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied_embeddings: bool
    other_params: int = 0  # e.g. Gemma 3's SigLIP vision tower and projector (frozen, loaded in 16 bit)

    @classmethod
    def from_config_json(cls, data: dict[str, Any]) -> Architecture:
        text = data.get("text_config", data)
        heads = text["num_attention_heads"]
        return cls(
            hidden=text["hidden_size"],
            layers=text["num_hidden_layers"],
            heads=heads,
            kv_heads=text.get("num_key_value_heads", heads),
            head_dim=text.get("head_dim") or text["hidden_size"] // heads,
            intermediate=text["intermediate_size"],
            vocab=text["vocab_size"],
            tied_embeddings=data.get("tie_word_embeddings", text.get("tie_word_embeddings", True)),
        )

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear layer of one decoder block."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        h, i = self.hidden, self.intermediate
        return {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    @property
    def linear_params(self) -> int:
        return self.layers * sum(a * b for a, b in self.linear_shapes().values())

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    @property
    def norm_params(self) -> int:
        """RMSNorm weights: two per decoder block and the final one."""
        return (2 * self.layers + 1) * self.hidden

    @property
    def params(self) -> int:
        return self.linear_params + self.embedding_params + self.norm_params + self.other_params


# From each model's published config.json (text part; Gemma 3's vision tower + projector as `other_params`).
KNOWN = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": Architecture(576, 30, 9, 3, 64, 1536, 49152, True),
    "meta-llama/Meta-Llama-3-8B-Instruct": Architecture(4096, 32, 32, 8, 128, 14336, 128256, False),
    "google/gemma-3-27b-it": Architecture(5376, 62, 32, 16, 128, 21504, 262208, True, 417_000_000),
    "google/gemma-3-270m-it": Architecture(640, 18, 4, 1, 256, 2048, 262144, True),
}


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes per GPU for one training micro-batch."""

    model: str
    params: int
    trainable_params: int
    gpus: int
    micro_batch_tokens: int
    weights: int
    trainable_state: int
    activations: int
    logits: int

    @property
    def total(self) -> int:
        return self.weights + self.trainable_state + self.activations + self.logits

    def table(self) -> str:
        gib = lambda n: f"{n / GIB:.1f} GiB"  # noqa: E731
        rows = [
            ("model", self.model),
            ("parameters", f"{self.params / 1e9:.2f} B"),
            ("trainable", f"{self.trainable_params / 1e6:.1f} M ({self.trainable_params / self.params:.3%})"),
            ("micro-batch tokens", str(self.micro_batch_tokens)),
            ("GPUs (FSDP full shard)", str(self.gpus)),
            ("weights", gib(self.weights)),
            ("trainable weights + grads + optimizer", gib(self.trainable_state)),
            ("activations", gib(self.activations)),
            ("logits (fp32, with gradient)", gib(self.logits)),
            ("total per GPU", gib(self.total)),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total}


def architecture(cfg: Config, base_dir: Path | None = None) -> Architecture:
    """The profile's model shape: the local copy's config.json when it is that model, else a known one."""
    local = read_manifest(base_dir) if base_dir else None
    if local is not None and local.id == cfg.model.id:
        return Architecture.from_config_json(json.loads((base_dir / "config.json").read_text()))
    if cfg.model.id in KNOWN:
        return KNOWN[cfg.model.id]
    raise ConfigError(
        f"model.id={cfg.model.id}: shape unknown before download; run `logicflow model fetch` first "
        f"(known without it: {', '.join(sorted(KNOWN))})"
    )


def trainable_params(arch: Architecture, cfg: Config) -> int:
    """LoRA: r x (in + out) per targeted linear layer (DoRA adds a magnitude per output); IA3: one scale per
    output of k and v and per input of the MLP's down projection; full: everything; prompt tuning: the
    virtual tokens' embeddings."""
    method = cfg.lora.method
    shapes = arch.linear_shapes()
    if method == "full":
        return arch.params - arch.other_params
    if method == "prompt_tuning":
        return cfg.lora.num_virtual_tokens * arch.hidden
    if method == "ia3":
        return arch.layers * (shapes["k_proj"][1] + shapes["v_proj"][1] + shapes["down_proj"][0])
    targets = cfg.lora.target_modules
    chosen = shapes if targets == "all-linear" else {k: v for k, v in shapes.items() if k in targets}
    magnitude = sum(out for _, out in chosen.values()) if method == "dora" else 0
    return arch.layers * (cfg.lora.r * sum(a + b for a, b in chosen.values()) + magnitude)


def activation_bytes(arch: Architecture, tokens: int, checkpointing: bool) -> int:
    per_layer_token = 6 * arch.hidden + 2 * arch.kv_heads * arch.head_dim + 4 * arch.intermediate
    if checkpointing:  # layer inputs kept, one layer's activations live during its recomputation
        return 2 * tokens * (arch.layers * arch.hidden + per_layer_token)
    return 2 * tokens * arch.layers * per_layer_token


def plan_memory(cfg: Config, arch: Architecture, gpus: int = 1) -> MemoryPlan:
    train = cfg.train
    if cfg.model.quantization == "4bit":
        weights = arch.linear_params * NF4_BITS / 8 + (arch.params - arch.linear_params) * 2
    else:
        weights = arch.params * LOAD_BYTES[train.precision]
    trainable = trainable_params(arch, cfg)
    state = trainable * (4 + 4 + OPTIMIZER_BYTES[train.optimizer])  # fp32 weight + gradient + optimizer
    if cfg.lora.method == "full":
        state += trainable * 2  # the 16-bit working copy mixed precision computes with
    tokens = train.batch_size * train.cutoff_len
    return MemoryPlan(
        model=cfg.model.id,
        params=arch.params,
        trainable_params=trainable,
        gpus=gpus,
        micro_batch_tokens=tokens,
        weights=round(weights / gpus),
        trainable_state=round(state / gpus),
        activations=activation_bytes(arch, tokens, train.gradient_checkpointing),
        logits=2 * tokens * arch.vocab * 4,
    )


@dataclass(frozen=True)
class ComputePlan:
    rows: int
    tokens_per_row: float
    tokens_source: str  # "measured by validate", "given" or the cutoff's upper bound
    epochs: float
    trained_tokens: float
    flops: float
    gpus: int
    mfu: float
    peak_tflops: float
    hours: float
    usd: float | None

    def table(self) -> str:
        rows = [
            ("rows x tokens/row", f"{self.rows} x {self.tokens_per_row:.0f} ({self.tokens_source})"),
            ("trained tokens", f"{self.trained_tokens:,.0f} over {self.epochs:.3g} epochs"),
            ("compute (4 N per token)", f"{self.flops:.3g} FLOP"),
            ("at", f"{self.gpus} GPUs x {self.peak_tflops:g} TFLOP/s x MFU {self.mfu:.0%}"),
            ("wall time", f"{self.hours:.3g} h ({self.hours * self.gpus:.3g} GPU-hours)"),
        ]
        if self.usd is not None:
            rows.append(("cost", f"${self.usd:,.0f}"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def measured_tokens_per_row(cfg: Config, summary_file: Path) -> tuple[int, float] | None:
    """(clean rows, mean tokens per row) from the validate stage's summary, if it measured this profile's
    tokenizer and template (else the numbers belong to another model)."""
    try:
        summary = json.loads(summary_file.read_text())
    except (OSError, ValueError):
        return None
    length = summary.get("length", {})
    if length.get("template") != cfg.model.template or length.get("tokenizer") != cfg.model.id:
        return None
    return summary["clean"], length["token_length"]["mean"]


def plan_compute(
    cfg: Config,
    arch: Architecture,
    rows: int,
    tokens_per_row: float,
    *,
    tokens_source: str,
    gpus: int,
    mfu: float,
    peak_tflops: float = H100_BF16_DENSE_TFLOPS,
    usd_per_gpu_hour: float | None = None,
) -> ComputePlan:
    train = cfg.train
    epochs = train.epochs
    if train.max_steps > 0:  # a step budget: rows seen = steps x effective batch (possibly < or > an epoch)
        epochs = train.max_steps * train.batch_size * train.grad_accum * gpus / rows
    trained = rows * tokens_per_row * epochs
    flops = 4 * (arch.params - arch.other_params) * trained  # the frozen extras (vision tower) see no text
    hours = flops / (gpus * peak_tflops * 1e12 * mfu) / 3600
    return ComputePlan(
        rows=rows,
        tokens_per_row=tokens_per_row,
        tokens_source=tokens_source,
        epochs=epochs,
        trained_tokens=trained,
        flops=flops,
        gpus=gpus,
        mfu=mfu,
        peak_tflops=peak_tflops,
        hours=hours,
        usd=None if usd_per_gpu_hour is None else hours * gpus * usd_per_gpu_hour,
    )
