"""The one typed configuration object, loaded from `params.yaml` and a profile.

Precedence: field defaults < the top-level sections of `params.yaml` < `profiles.<name>` < CLI overrides.
The top-level sections hold the embedded default (`cpu`); a profile lists only what it changes.
Every section forbids unknown keys, so a typo fails with the key's dotted name and the allowed keys.

    cfg = load_config("params.yaml", profile="smoke", overrides=["lora.r=16"])
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from logicflow.errors import ConfigError

DATASET_NAMES = ("openo1", "openthoughts", "openr1_math")  # the upstream reasoning datasets
LOCAL_ONLY_DATASETS = ("chat",)  # the user's own messages/ShareGPT file: needs `path`
PosInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    """The base model every stage loads."""

    id: str = Field("HuggingFaceTB/SmolLM2-135M-Instruct", description="Hub id (or the tiny test model id)")
    revision: str = Field("main", description="Hub revision when fetched online")
    template: Literal["chatml", "gemma", "llama3"] = Field(
        "chatml", description="chat template with thinking support and generation markers"
    )
    freeze_modules: list[str] = Field(default_factory=list, description="module name prefixes kept frozen")
    quantization: Literal["none", "4bit"] = Field(
        "none", description="4bit = QLoRA (GPU + bitsandbytes only)"
    )


class DatasetSource(Section):
    weight: float = Field(1.0, gt=0, description="share of `data.max_samples` drawn from this dataset")
    max_samples: PosInt | None = Field(None, description="cap on rows taken from this dataset")
    path: str | None = Field(
        None,
        description="a local file in this dataset's upstream schema (JSONL, JSON, Parquet or a saved HF "
        "dataset directory), relative to the project root; put it under data/local so DVC tracks it",
    )


class ReplayConfig(Section):
    """Replay rows: the base model's own greedy answers to generic code and instruction prompts, mixed into
    training so the tuned model keeps answering those in their own format (0 rows = off)."""

    rows: int = Field(0, ge=0, description="replay rows added to the training mix")
    max_new_tokens: PosInt = Field(192, description="generation budget per replay answer")
    batch_size: PosInt = 16


class DataConfig(Section):
    """Fetch, convert and mix the three reasoning datasets."""

    source: Literal["auto", "hub", "offline"] = Field("auto", description="auto = hub when reachable")
    format: Literal["thinking", "react"] = Field(
        "thinking",
        description="how the reasoning is rendered: a thinking block before the answer, or a ReAct trace "
        "(Thought / Action / Observation ... Final Answer) in the assistant turn",
    )
    datasets: dict[str, DatasetSource] = Field(
        default_factory=lambda: {name: DatasetSource() for name in DATASET_NAMES}
    )
    max_samples: PosInt = Field(600, description="rows in the mixed set (train + validation)")
    val_fraction: float = Field(0.05, ge=0.0, lt=0.5)
    heldout_size: PosInt = Field(100, description="generated held-out eval problems (offline generator)")
    difficulty: Literal["easy", "hard"] = Field(
        "easy", description="generator curriculum: easy = two-digit +/- and one-step word problems"
    )
    replay: ReplayConfig = Field(default_factory=lambda: ReplayConfig())
    seed: int = 0

    @field_validator("datasets")
    @classmethod
    def _known_datasets(cls, value: dict[str, DatasetSource]) -> dict[str, DatasetSource]:
        allowed = ", ".join(DATASET_NAMES + LOCAL_ONLY_DATASETS)
        unknown = sorted(set(value) - set(DATASET_NAMES) - set(LOCAL_ONLY_DATASETS))
        if unknown:
            raise ValueError(f"unknown dataset {unknown[0]!r}; allowed: {allowed}")
        for name in LOCAL_ONLY_DATASETS:
            if name in value and value[name].path is None:
                raise ValueError(f"dataset {name!r} reads your own file: set data.datasets.{name}.path")
        if not value:
            raise ValueError(f"at least one dataset is needed; allowed: {', '.join(DATASET_NAMES)}")
        return value


class ValidateConfig(Section):
    """Great Expectations checks, quarantine and decontamination."""

    max_quarantine_fraction: Fraction = 0.2
    mostly: dict[str, Fraction] = Field(default_factory=dict, description="per-expectation `mostly`")
    overlong: Literal["quarantine", "truncate", "drop"] = Field(
        "quarantine",
        description="rows over train.cutoff_len: quarantine | truncate (when the answer starts before the "
        "cut) | drop (quarantined as overlong_dropped, not counted against max_quarantine_fraction)",
    )
    dedupe: bool = True
    decontam_ngram: int = Field(13, ge=4, le=64)
    decontam_min_overlap: float = Field(
        0.8, gt=0.0, le=1.0, description="share of an eval prompt's n-grams a training prompt must contain"
    )
    decontam_against: list[str] = Field(
        default_factory=lambda: ["logicflow_math_heldout", "humaneval", "ifeval"]
    )


class TrainConfig(Section):
    """SFT hyperparameters (TRL SFTTrainer)."""

    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, ge=-1, description="-1 = use epochs")
    learning_rate: float = Field(2e-4, gt=0, lt=1)
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    warmup_ratio: float = Field(
        0.0, ge=0, lt=1, description="warmup as a share of all steps (not with steps)"
    )
    batch_size: PosInt = 4
    grad_accum: PosInt = 1
    max_grad_norm: float = Field(1.0, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    cutoff_len: int = Field(512, ge=16)
    max_samples: PosInt | None = None
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    gradient_checkpointing: bool = False
    optimizer: Literal["adamw_torch", "paged_adamw_32bit", "adamw_8bit", "adafactor"] = "adamw_torch"
    packing: bool = False
    train_on_thinking: bool = True
    seed: int = 42
    save_steps: PosInt = 50
    save_total_limit: PosInt = 2
    eval_steps: PosInt = 50
    logging_steps: PosInt = 1

    @field_validator("max_steps")
    @classmethod
    def _nonzero_steps(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be -1 (use epochs) or a positive step count")
        return value

    @model_validator(mode="after")
    def _one_warmup(self) -> TrainConfig:
        if self.warmup_steps and self.warmup_ratio:
            raise ValueError("set warmup_steps or warmup_ratio, not both (set the other to 0)")
        return self

    @property
    def warmup(self) -> float:
        """What transformers takes as `warmup_steps`: a step count, or a float below 1 as a share of steps."""
        return self.warmup_ratio or self.warmup_steps


class LoraConfig(Section):
    """Parameter-efficient method and its settings (r/alpha/dropout/targets: LoRA and DoRA)."""

    method: Literal["lora", "dora", "ia3", "prompt_tuning", "full"] = Field(
        "lora", description="dora = LoRA with weight decomposition; ia3 = learned rescaling of k, v and MLP"
    )
    r: PosInt = 8
    alpha: PosInt = 16
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: Literal["all-linear"] | list[str] = "all-linear"
    num_virtual_tokens: PosInt = Field(20, description="prompt tuning only")


class EvalTaskConfig(Section):
    num_fewshot: int = Field(0, ge=0)
    limit: PosInt | None = None


class OfflineTaskConfig(Section):
    limit: PosInt | None = Field(None, description="None = eval.limit")
    max_new_tokens: PosInt | None = Field(None, description="None = eval.max_new_tokens")


class EvalConfig(Section):
    """Base vs tuned evaluation."""

    tasks: list[str] = Field(default_factory=lambda: ["logicflow_math_heldout", "humaneval", "ifeval"])
    per_task: dict[str, OfflineTaskConfig] = Field(
        default_factory=dict, description="limit / max_new_tokens of one offline task"
    )
    standard_tasks: dict[str, EvalTaskConfig] = Field(default_factory=dict)
    limit: PosInt | None = Field(None, description="samples per offline task (None = all)")
    max_new_tokens: PosInt = 256
    batch_size: PosInt = 8
    seed: int = 1234
    serving_cost: bool = Field(
        True,
        description="measure what base and tuned cost to serve (reports/inference.json: time to first "
        "token, tokens/s, memory at the context length); the method study turns it off: its table reports "
        "training costs",
    )
    sample_timeout_s: float = Field(60.0, gt=0, description="wall-clock limit per generated sample")
    sandbox_timeout_s: float = Field(5.0, gt=0)
    sandbox_memory_mb: PosInt = 512
    sandbox: Literal["kernel", "unisolated"] = Field(
        "kernel",
        description="how generated code is confined (logicflow.sandbox): kernel = namespaces + Landlock "
        "+ seccomp, and the stage fails when the machine cannot provide them; unisolated = rlimits only",
    )

    def sandbox_settings(self) -> dict[str, Any]:
        """What the humaneval task hands `logicflow.sandbox.run_untrusted` (settings.json of the tasks)."""
        return {
            "sandbox_timeout_s": self.sandbox_timeout_s,
            "sandbox_memory_mb": self.sandbox_memory_mb,
            "sandbox": self.sandbox,
        }

    def task_limit(self, task: str) -> int | None:
        own = self.per_task.get(task)
        return own.limit if own and own.limit is not None else self.limit

    def task_max_new_tokens(self, task: str) -> int:
        own = self.per_task.get(task)
        return own.max_new_tokens if own and own.max_new_tokens is not None else self.max_new_tokens


class SamplingConfig(Section):
    """Sampling recommended to users of the published model: generation_config.json and the card (all None:
    greedy decoding, the model's own defaults)."""

    temperature: float | None = Field(None, gt=0)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: PosInt | None = None

    def settings(self) -> dict[str, Any]:
        """The generation_config.json keys it sets (do_sample once any is given)."""
        chosen = {k: v for k, v in self.model_dump().items() if v is not None}
        return {"do_sample": True, **chosen} if chosen else {}


class CardConfig(Section):
    model_name: str = "LogicFlow-SmolLM2-135M-thinking"
    license: str | None = Field(None, description="None = inherit from the base model")
    language: list[str] = Field(default_factory=lambda: ["en"])
    tags: list[str] = Field(default_factory=lambda: ["lora", "reasoning", "logicflow"])
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)


class GateConfig(Section):
    """Per-task rules on the paired comparison (see `logicflow.evaluation.report`)."""

    must_improve: list[str] = Field(
        default_factory=lambda: ["logicflow_math_heldout"], description="tasks that need a significant gain"
    )
    must_not_drop: list[str] = Field(
        default_factory=lambda: ["humaneval", "ifeval"],
        description="tasks whose drop's 95% interval must stay under max_drop",
    )
    max_drop: float = Field(0.15, ge=0, le=1, description="largest drop the interval may still allow")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="significance level of the paired tests")


class PublishConfig(Section):
    targets: list[Literal["local", "hub", "mlflow"]] = Field(default_factory=lambda: ["local", "mlflow"])
    artifacts: list[Literal["merged", "adapter"]] = Field(
        default_factory=lambda: ["merged", "adapter"],
        description="merged: full weights at the top level (with the adapter in adapter/ when both); "
        "[adapter]: an adapter-only repo, loaded with PeftModel on the base",
        min_length=1,
    )
    gguf: list[Literal["f16", "q8_0", "q4_0", "q4_k_m"]] = Field(
        default_factory=list,
        description="GGUF files of the merged model for llama.cpp/Ollama (stage export); q4_k_m needs "
        "llama.cpp's C++ quantizer and is reported as not exported",
    )
    repo_id: str = "logicflow/LogicFlow-SmolLM2-135M-thinking"
    private: bool = True
    revision: str = "main"
    registered_model_name: str = "logicflow"
    gate: GateConfig = Field(default_factory=GateConfig)


class TrackingConfig(Section):
    uri: str | None = Field(None, description="None = $MLFLOW_TRACKING_URI, else the local server")
    experiment: str | None = Field(None, description="None = logicflow-<profile>")


COMPARED_METHODS = ("lora", "dora", "ia3", "prompt_tuning", "full", "prune_lora", "distill")


class CompareConfig(Section):
    """The method comparison study: each method trains the same base on the same validated data and is
    evaluated like the pipeline's model (`dvc repro compare`, `prefect deployment run logicflow/compare`)."""

    methods: list[Literal[COMPARED_METHODS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(COMPARED_METHODS), description="methods run (the base is the baseline)"
    )
    learning_rates: dict[str, float] = Field(
        default_factory=dict, description="per-method learning rate (prompt tuning and IA3 want larger ones)"
    )
    prune_share: float = Field(0.25, gt=0, lt=1, description="prune_lora: share of decoder layers dropped")
    distill_alpha: float = Field(
        0.5, ge=0, le=1, description="distill: weight of the usual loss vs the KD loss"
    )
    distill_temperature: float = Field(2.0, gt=0, description="distill: softmax temperature of the KD loss")
    teacher: str | None = Field(
        None, description="distill: a local model folder to learn from (default: the study's LoRA model)"
    )

    @field_validator("learning_rates")
    @classmethod
    def _known_methods(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(COMPARED_METHODS))
        if unknown:
            raise ValueError(f"unknown method {unknown[0]!r}; allowed: {', '.join(COMPARED_METHODS)}")
        return value


class Config(Section):
    """Everything a stage may read. Built only by `load_config`."""

    profile: str = "cpu"
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")
    train: TrainConfig = Field(default_factory=TrainConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    card: CardConfig = Field(default_factory=CardConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    compare: CompareConfig = Field(default_factory=CompareConfig)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        if self.lora.method == "lora" and self.lora.alpha > 64 * self.lora.r:
            raise ValueError("lora.alpha is over 64x lora.r; check the values")
        if self.lora.method == "full" and self.publish.artifacts == ["adapter"]:
            raise ValueError("publish.artifacts: full fine-tuning has no adapter; use [merged]")
        if self.lora.method == "prompt_tuning" and "adapter" not in self.publish.artifacts:
            raise ValueError("publish.artifacts: prompt tuning cannot be merged into weights; add adapter")
        if len(set(self.publish.artifacts)) != len(self.publish.artifacts):
            raise ValueError("publish.artifacts: each of merged, adapter at most once")
        return self

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or f"logicflow-{self.profile}"

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json")


SECTIONS = tuple(name for name in Config.model_fields if name != "profile")
SECTION_KEYS = tuple(Config.model_fields[name].alias or name for name in SECTIONS)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return `base` with `override` merged in; nested dicts merge, everything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """`"lora.r=16"` -> `{"lora": {"r": 16}}`; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like section.key=value")
    value: Any = yaml.safe_load(raw) if raw.strip() else None
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def _format_error(err: dict[str, Any], model: type[BaseModel]) -> str:
    loc = ".".join(str(p) for p in err["loc"] if p != "validate_") or "(top level)"
    loc = loc.replace("validate_", "validate")
    if err["type"] == "extra_forbidden":
        parent = _model_at(model, [str(p) for p in err["loc"][:-1]])
        allowed = ", ".join(sorted(f.alias or n for n, f in parent.model_fields.items())) if parent else "?"
        return f"unknown key {loc!r}; allowed keys here: {allowed}"
    return f"{loc}: {err['msg']} (got {err.get('input')!r})"


def _model_at(model: type[BaseModel], path: list[str]) -> type[BaseModel] | None:
    """The pydantic model class that owns the keys at `path`, if it is a plain nested section."""
    for part in path:
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def build_config(params: dict[str, Any], profile: str | None = None, overrides: list[str] = ()) -> Config:
    """Validate a parsed `params.yaml` dict (see module docstring for precedence)."""
    params = dict(params or {})
    profiles = params.pop("profiles", {}) or {}
    name = profile or params.pop("profile", None) or "cpu"
    params.pop("profile", None)
    if name not in profiles and name != "cpu":
        raise ConfigError(f"unknown profile {name!r}; allowed: {', '.join(sorted(profiles) or ['cpu'])}")
    overlay = profiles.get(name) or {}
    missing = [key for key in SECTION_KEYS if profiles and not isinstance(overlay.get(key), dict)]
    if missing:
        raise ConfigError(
            f"profiles.{name}: missing section(s) {', '.join(missing)}; write e.g. `{missing[0]}: {{}}` "
            "(DVC tracks profiles.<name>.<section> per stage, so every profile lists every section)"
        )
    merged = deep_merge(params, overlay)
    for text in overrides:
        merged = deep_merge(merged, parse_override(text))
    merged["profile"] = name
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError("; ".join(_format_error(e, Config) for e in exc.errors())) from None


def with_overrides(cfg: Config, overrides: list[str]) -> Config:
    """`cfg` with `--set`-style overrides applied, validated like any config."""
    merged = cfg.to_dict()
    for text in overrides:
        merged = deep_merge(merged, parse_override(text))
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError("; ".join(_format_error(e, Config) for e in exc.errors())) from None


def load_config(
    path: str | Path = "params.yaml", profile: str | None = None, overrides: list[str] = ()
) -> Config:
    """Read `params.yaml` and return the validated config for `profile` (default: its `profile:` key)."""
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; run from the project root or pass --params") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    try:
        return build_config(params, profile, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
