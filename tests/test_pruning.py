"""Structured pruning (the comparison study's pruning method): the rule picks the layers it states, exactly
those are removed, and the result loads with plain transformers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from logicflow.comparison.pruning import layers_to_drop, prune
from logicflow.errors import TrainingError


def test_rule_drops_the_inner_layers_that_change_the_state_least() -> None:
    distances = [0.01, 0.30, 0.05, 0.20, 0.02, 0.40]  # first and last are kept whatever their distance
    assert layers_to_drop(distances, 0.34) == [2, 4]  # 2 of 6: the smallest inner ones
    assert layers_to_drop(distances, 0.1) == []
    with pytest.raises(TrainingError, match="fewer than 2 of 6 layers"):
        layers_to_drop(distances, 0.9)


def test_pruned_model_has_exactly_the_kept_layers_and_loads(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from logicflow.config import load_config
    from logicflow.model import load_tokenizer, resolve
    from logicflow.paths import Paths

    paths = Paths.from_root(tmp_path)
    resolve(load_config(Path(__file__).resolve().parents[1] / "params.yaml", "smoke").model, paths)
    tokenizer = load_tokenizer(paths.base_model)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=6,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)  # fmt: skip
    base = tmp_path / "six-layers"
    LlamaForCausalLM(config).save_pretrained(base)
    prompts = [f"What is {a} + {a + 3}?" for a in range(6)]

    report = prune(base, tmp_path / "pruned", tokenizer, prompts, share=0.34)
    assert report["dropped"] == layers_to_drop(report["distances"], 0.34) and len(report["dropped"]) == 2
    assert (report["layers_before"], report["layers_after"]) == (6, 4)
    original = AutoModelForCausalLM.from_pretrained(base).state_dict()
    pruned = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned")  # plain transformers
    assert pruned.config.num_hidden_layers == 4
    kept = [i for i in range(6) if i not in report["dropped"]]
    for new, old in enumerate(kept):  # the kept layers, renumbered, weights untouched
        weight = pruned.state_dict()[f"model.layers.{new}.mlp.down_proj.weight"]
        assert torch.equal(weight, original[f"model.layers.{old}.mlp.down_proj.weight"])
    ids = tokenizer("What is 1 + 2?", return_tensors="pt")
    out = pruned.generate(**ids, max_new_tokens=4, min_new_tokens=4, do_sample=False)  # KV cache by new index
    assert out.shape[1] == ids["input_ids"].shape[1] + 4
