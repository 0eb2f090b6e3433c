"""LoRA layers whose update is added inside one matmul: `addmm(base(x), A(x), Bᵀ, alpha=scaling)`.

PEFT's LoRA `Linear.forward` computes `base(x) + B(A(dropout(x))) * scaling`: on a CPU under bf16 autocast
that is a cast of `x` to the adapter's fp32 (and back, by autocast), a multiply and an add over every
[tokens x out_features] output, forward and backward, in each of the ~210 adapted layers of SmolLM2-135M.
`addmm` folds the scaling and the add into the B matmul (the BLAS alpha/beta), and `x` stays in the compute
dtype. The adapter weights stay fp32 masters (autocast casts the small A and B per call), so saving, merging
and the optimizer see PEFT's parameters unchanged; tests/test_train_units.py checks outputs and gradients
against PEFT's forward.

Layers with anything else (a LoRA variant such as DoRA, several or mixed adapters, merged or disabled
adapters, extra arguments, an input whose dtype only PEFT's cast would fix) keep PEFT's own forward, per call.
"""

from __future__ import annotations

import types
from typing import Any


def install(model: Any) -> int:
    """Give every plain LoRA `Linear` of `model` the fused forward; returns how many layers got it."""
    from peft.tuners.lora.layer import Linear

    count = 0
    for module in model.modules():
        if type(module) is Linear:  # not subclasses (quantised layers): their base layers differ
            module.forward = types.MethodType(_fused_forward, module)
            count += 1
    return count


def _fused_forward(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
    import torch

    active = self.active_adapters
    name = active[0] if len(active) == 1 else None
    if (
        args
        or kwargs
        or name not in self.lora_A
        or (x.dtype != self.lora_A[name].weight.dtype and not torch.is_autocast_enabled(x.device.type))
        or name in self.lora_variant
        or self.merged
        or self.disable_adapters
    ):
        return type(self).forward(self, x, *args, **kwargs)
    result = self.base_layer(x)
    update = self.lora_A[name](self.lora_dropout[name](x))  # [..., r]
    flat = torch.addmm(
        result.reshape(-1, result.shape[-1]),
        update.reshape(-1, update.shape[-1]),
        self.lora_B[name].weight.t(),
        alpha=self.scaling[name],
    )
    return flat.view(result.shape)
