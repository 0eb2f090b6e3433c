"""Structured pruning by whole decoder layers, before LoRA "recovery" training (the comparison study's
pruning method).

The rule (after Gromov et al., "The Unreasonable Ineffectiveness of the Deeper Layers", 2024): run
calibration prompts through the model, and for each decoder layer measure the angular distance between the
hidden state entering it and the one leaving it, averaged over the prompts' last tokens; drop the
`share` of layers whose output is closest to their input (they change the representation least). The
first and the last layer are always kept. The pruned model is a plain `transformers` model with fewer
layers (config and layer indices rewritten), saved as safetensors and loadable with `from_pretrained`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from logicflow.errors import TrainingError


def layer_distances(model: Any, tokenizer: Any, prompts: list[str]) -> list[float]:
    """Mean angular distance (arccos of cosine similarity, / pi) between each layer's input and output."""
    import torch

    model.eval()
    totals = [0.0] * model.config.num_hidden_layers
    with torch.no_grad():
        for prompt in prompts:
            ids = tokenizer(prompt, return_tensors="pt")
            hidden = model(**ids, output_hidden_states=True).hidden_states  # embeddings, then each layer
            for i in range(len(totals)):
                before, after = hidden[i][0, -1].float(), hidden[i + 1][0, -1].float()
                cosine = torch.nn.functional.cosine_similarity(before, after, dim=0).clamp(-1, 1)
                totals[i] += math.acos(cosine.item()) / math.pi
    return [total / len(prompts) for total in totals]


def layers_to_drop(distances: list[float], share: float) -> list[int]:
    """The `share` of layers (rounded down) with the smallest distance, never the first or the last."""
    count = int(len(distances) * share)
    if count > len(distances) - 2:
        raise TrainingError(f"prune.share={share} would leave fewer than 2 of {len(distances)} layers")
    inner = sorted(range(1, len(distances) - 1), key=lambda i: (distances[i], i))
    return sorted(inner[:count])


def drop_layers(model: Any, drop: list[int]) -> Any:
    """The model without the decoder layers in `drop`, renumbered so it saves and reloads as usual."""
    import torch

    layers = model.model.layers
    kept = [layer for i, layer in enumerate(layers) if i not in set(drop)]
    for index, layer in enumerate(kept):
        if hasattr(layer.self_attn, "layer_idx"):
            layer.self_attn.layer_idx = index  # the KV cache is indexed by it
    model.model.layers = torch.nn.ModuleList(kept)
    config = model.config
    if getattr(config, "layer_types", None):
        config.layer_types = [t for i, t in enumerate(config.layer_types) if i not in set(drop)]
    config.num_hidden_layers = len(kept)
    return model


def prune(base_dir: Path, out_dir: Path, tokenizer: Any, prompts: list[str], share: float) -> dict[str, Any]:
    """Prune the model in `base_dir` by the rule above into `out_dir`; return what was dropped and why."""
    from logicflow.model import load_causal_lm

    model = load_causal_lm(base_dir)
    distances = layer_distances(model, tokenizer, prompts)
    drop = layers_to_drop(distances, share)
    drop_layers(model, drop).save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return {
        "rule": "smallest angular distance between a layer's input and output (first and last kept)",
        "share": share,
        "dropped": drop,
        "layers_before": len(distances),
        "layers_after": len(distances) - len(drop),
        "distances": [round(d, 5) for d in distances],
    }
