"""The typed config: every profile loads, precedence holds, and bad input names the key."""

from pathlib import Path

import pytest
import yaml

from logicflow.config import build_config, load_config
from logicflow.errors import ConfigError

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
PROFILES = ["cpu", "smoke", "gemma3-27b", "llama3-8b-react", "compare-small", "compare-270m"]


@pytest.fixture
def params() -> dict:
    return yaml.safe_load(PARAMS.read_text())


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_loads(profile: str) -> None:
    cfg = load_config(PARAMS, profile)
    assert cfg.profile == profile
    assert cfg.experiment_name == f"logicflow-{profile}"


def test_reference_recipe_is_expressed_exactly() -> None:
    cfg = load_config(PARAMS, "gemma3-27b")
    lora, train = cfg.lora, cfg.train
    assert (lora.r, lora.alpha, lora.dropout, lora.target_modules) == (8, 16, 0.0, "all-linear")
    assert (train.learning_rate, train.epochs, train.lr_scheduler, train.warmup_steps) == (
        5e-5,
        5,
        "cosine",
        100,
    )
    assert (train.batch_size, train.grad_accum, train.cutoff_len, train.max_samples) == (2, 8, 2048, None)
    assert {name: d.max_samples for name, d in cfg.data.datasets.items()} == dict.fromkeys(
        ["openo1", "openthoughts", "openr1_math"], 100000
    )  # "max 100k samples" per dataset, not for the mix
    assert (train.precision, train.packing, cfg.model.template) == ("bf16", False, "gemma")
    assert set(cfg.model.freeze_modules) == {"vision_tower", "multi_modal_projector"}


def test_llama_recipe() -> None:
    cfg = load_config(PARAMS, "llama3-8b-react")
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.target_modules) == (
        64,
        32,
        0.05,
        ["q_proj", "v_proj"],
    )
    assert (cfg.train.learning_rate, cfg.train.epochs, cfg.train.optimizer) == (2e-5, 2, "paged_adamw_32bit")
    assert cfg.model.template == "llama3"  # trains on <|eot_id|>, as Llama 3 generates
    assert (cfg.train.precision, cfg.train.gradient_checkpointing) == ("fp16", True)


def test_warmup_is_steps_or_a_share_never_both() -> None:
    cfg = load_config(PARAMS, "cpu", ["train.warmup_steps=0", "train.warmup_ratio=0.03"])
    assert cfg.train.warmup == 0.03  # transformers reads a warmup_steps below 1 as a share of all steps
    assert load_config(PARAMS, "cpu", ["train.warmup_steps=7"]).train.warmup == 7
    with pytest.raises(ConfigError, match="train: .*set warmup_steps or warmup_ratio, not both"):
        load_config(PARAMS, "cpu", ["train.warmup_steps=7", "train.warmup_ratio=0.03"])


def test_published_artifacts_must_exist_for_the_method() -> None:
    assert load_config(PARAMS, "cpu", ["publish.artifacts=[adapter]"]).publish.artifacts == ["adapter"]
    with pytest.raises(ConfigError, match="full fine-tuning has no adapter"):
        load_config(PARAMS, "cpu", ["lora.method=full", "publish.artifacts=[adapter]"])
    with pytest.raises(ConfigError, match="prompt tuning cannot be merged"):
        load_config(PARAMS, "cpu", ["lora.method=prompt_tuning", "publish.artifacts=[merged]"])
    sampling = load_config(PARAMS, "gemma3-27b").card.sampling.settings()
    assert sampling == {"do_sample": True, "temperature": 0.7, "top_p": 0.95, "top_k": 64}  # as its card says


def test_precedence_defaults_sections_profile_overrides(params: dict) -> None:
    cfg = build_config(params, "smoke", ["lora.r=12"])
    assert cfg.lora.r == 12  # override beats profile (4)
    assert cfg.lora.alpha == 8  # profile beats sections (32)
    assert cfg.lora.target_modules == "all-linear"  # sections
    assert cfg.train.weight_decay == 0.0  # default
    assert load_config(PARAMS).profile == params["profile"]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("lora.rank=4", "unknown key 'lora.rank'; allowed keys here: alpha, dropout"),
        ("train.precision=fp8", "train.precision: Input should be 'auto', 'bf16', 'fp16' or 'fp32'"),
        ("data.max_samples=0", "data.max_samples: Input should be greater than 0"),
        ("data.max_samples=-5", "data.max_samples: Input should be greater than 0"),
        ("train.batch_size=many", "train.batch_size: Input should be a valid integer"),
        (
            "data.datasets.nope={weight: 1}",
            "unknown dataset 'nope'; allowed: openo1, openthoughts, openr1_math",
        ),
        (
            "validate.max_quarantine_fraction=1.5",
            "validate.max_quarantine_fraction: Input should be less than",
        ),
        ("train.max_steps=0", "train.max_steps: Value error, must be -1"),
        ("nosection.x=1", "unknown key 'nosection'"),
        ("novalue", "must look like section.key=value"),
    ],
)
def test_bad_values_name_the_key(params: dict, override: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        build_config(params, "cpu", [override])
    assert expected in str(info.value)


def test_unknown_profile_lists_the_valid_ones(params: dict) -> None:
    with pytest.raises(
        ConfigError, match="unknown profile 'gpt5'; allowed: compare-270m, compare-small, cpu, cpu-hard, "
    ):
        build_config(params, "gpt5")


def test_profile_missing_a_section_is_an_error(params: dict) -> None:
    del params["profiles"]["smoke"]["card"]
    with pytest.raises(ConfigError, match=r"profiles.smoke: missing section\(s\) card"):
        build_config(params, "smoke")


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "params.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match=f"{bad}: not valid YAML"):
        load_config(bad)


def test_per_task_eval_settings_fall_back_to_the_eval_defaults(params: dict) -> None:
    cfg = build_config(params, "cpu")
    assert cfg.eval.task_limit("humaneval") == 32 and cfg.eval.task_max_new_tokens("humaneval") == 512
    assert cfg.eval.task_limit("logicflow_math_heldout") is None  # all 200 held-out problems
    assert cfg.eval.task_max_new_tokens("gsm8k") == cfg.eval.max_new_tokens
    assert cfg.publish.gate.must_improve == ["logicflow_math_heldout"]
    assert cfg.publish.gate.must_not_drop == ["humaneval", "ifeval"]
    assert build_config(params, "cpu-hard").data.difficulty == "hard"
