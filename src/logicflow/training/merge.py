"""Save the adapter, merge it into full weights, and prove the merge changed nothing.

`models/adapter/`: the PEFT adapter (safetensors) + tokenizer with the chat template.
`models/merged/`: base + adapter merged with `merge_and_unload`, saved as safetensors in the requested
precision, with the tokenizer, so plain `AutoModelForCausalLM.from_pretrained` loads it.
The check: the adapter reloaded from disk on the base and the merged model generate greedily on a few prompts;
the tokens must be identical (done in fp32 on CPU, in the training dtype on a GPU, before the final cast).
`write_models` commits both folders together, only once the check passed.
Both folders carry `logicflow_train.json` (method, base model, whether `merged` equals base + adapter).
Prompt tuning cannot be merged (soft prompts are not weights): `merged` then holds the base weights and says
so.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from logicflow.atomic import atomic_dir
from logicflow.config import Config
from logicflow.errors import TrainingError
from logicflow.paths import TRAIN_MANIFEST, Paths
from logicflow.training.inputs import Inputs
from logicflow.training.trainer import MERGEABLE, TORCH_DTYPES, Hardware, Plan

logger = logging.getLogger(__name__)

CHECK_PROMPTS = 3
CHECK_NEW_TOKENS = 24


@dataclass(frozen=True)
class MergeCheck:
    prompts: int
    equivalent: bool  # merged == base + adapter (greedy tokens identical); False when nothing could be merged


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def write_manifest(folder: Path, **fields: Any) -> None:
    (folder / TRAIN_MANIFEST).write_text(json.dumps(fields, indent=2, sort_keys=True) + "\n")


def write_adapter(saved: Path, tokenizer: Any, folder: Path, manifest: dict[str, Any]) -> None:
    """The adapter files of `saved` (what `trainer.save_model` wrote: under FSDP/DDP every process takes part
    and the main one writes) plus the tokenizer. PEFT's boilerplate README is left out (the card stage writes
    the card) and the adapter names its base by model id, not by this machine's models/base path."""
    import shutil

    for file in saved.glob("adapter_*"):
        shutil.copy2(file, folder / file.name)
    config_file = folder / "adapter_config.json"
    if config_file.exists():
        config = json.loads(config_file.read_text())
        config["base_model_name_or_path"] = manifest["base_model"]
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tokenizer.save_pretrained(folder)
    write_manifest(folder, **manifest)


def greedy(
    model: Any, tokenizer: Any, prompts: list[list[dict[str, str]]], max_new_tokens: int = CHECK_NEW_TOKENS
) -> list[list[int]]:
    """Greedy continuations (token ids) of chat prompts, one at a time (no padding effects)."""
    import torch

    outputs = []
    device = next(model.parameters()).device
    for messages in prompts:
        ids = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"].to(device)
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        outputs.append(out[0, ids.shape[1] :].tolist())
    return outputs


def write_merged(
    base_dir: Path,
    adapter_dir: Path,
    folder: Path,
    tokenizer: Any,
    dtype: str,
    prompts: list[list[dict[str, str]]],
    manifest: dict[str, Any],
    check_dtype: str = "float32",
    device: str = "cpu",
) -> MergeCheck:
    """Merge the *saved* adapter into the base, check greedy equality, save in `dtype` (torch dtype name)."""
    import torch
    from peft import PeftModel

    from logicflow.model import load_causal_lm

    base = load_causal_lm(base_dir, check_dtype).to(device)
    peft_model = PeftModel.from_pretrained(base, adapter_dir).eval()
    expected = greedy(peft_model, tokenizer, prompts)
    merged = peft_model.merge_and_unload().eval()
    got = greedy(merged, tokenizer, prompts)
    for i, (want, have) in enumerate(zip(expected, got, strict=True)):
        if want != have:
            raise TrainingError(
                f"merged model disagrees with base + adapter on check prompt {i}: "
                f"{tokenizer.decode(want)!r} vs {tokenizer.decode(have)!r}; previous outputs are kept"
            )
    logger.info("merged model matches base + adapter on %d greedy prompts", len(prompts))
    merged.to(getattr(torch, dtype)).cpu().save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    write_manifest(folder, **manifest, merged=True, dtype=dtype)
    return MergeCheck(len(prompts), True)


def write_full(saved: Path, tokenizer: Any, folder: Path, dtype: str, manifest: dict[str, Any]) -> MergeCheck:
    """Full fine-tuning: the trained model (saved by the trainer) is the merged model; nothing to compare."""
    from logicflow.model import load_causal_lm

    load_causal_lm(saved, dtype).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    write_manifest(folder, **manifest, merged=True, dtype=dtype)
    return MergeCheck(0, True)


def write_unmergeable(
    base_dir: Path, folder: Path, tokenizer: Any, dtype: str, manifest: dict[str, Any]
) -> MergeCheck:
    """Prompt tuning: soft prompts are not weights; `merged` holds the base model and says so."""
    from logicflow.model import load_causal_lm

    load_causal_lm(base_dir, dtype).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    write_manifest(
        folder,
        **manifest,
        merged=False,
        dtype=dtype,
        note="prompt tuning cannot be merged into weights; load models/adapter with peft.PeftModel",
    )
    logger.warning(
        "lora.method=prompt_tuning: models/merged holds the base weights; the tuned model is "
        "models/adapter on top of it"
    )
    return MergeCheck(0, False)


def write_models(
    cfg: Config, paths: Paths, staging: Path, inputs: Inputs, plan: Plan, hw: Hardware
) -> MergeCheck:
    """models/adapter and models/merged from the trainer's `staging` save, committed together once the merge
    check passed."""
    base = inputs.base
    manifest = {
        "method": cfg.lora.method,
        "base_model": base.id,
        "base_revision": base.revision,
        "base_sha256": base.sha256,
        "template": cfg.model.template,
    }
    dtype = plan.weights_dtype if cfg.train.precision == "auto" else TORCH_DTYPES[cfg.train.precision]
    rows = (inputs.splits.rows["validation"] or inputs.splits.rows["train"])[:CHECK_PROMPTS]
    prompts = [[m for m in row["messages"] if m["role"] != "assistant"] for row in rows]
    with atomic_dir(paths.adapter) as adapter_tmp:
        write_adapter(staging, inputs.tokenizer, adapter_tmp, manifest)
        with atomic_dir(paths.merged) as merged_tmp:
            if cfg.lora.method in MERGEABLE:
                return write_merged(
                    paths.train_base,
                    adapter_tmp,
                    merged_tmp,
                    inputs.tokenizer,
                    dtype,
                    prompts,
                    manifest,
                    check_dtype=plan.weights_dtype,
                    device="cuda" if hw.cuda else "cpu",
                )
            if cfg.lora.method == "full":
                return write_full(staging, inputs.tokenizer, merged_tmp, dtype, manifest)
            return write_unmergeable(paths.train_base, merged_tmp, inputs.tokenizer, dtype, manifest)
