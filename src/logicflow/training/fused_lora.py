"""LoRA layers whose output `x Wᵀ + s·(x Aᵀ) Bᵀ` is one matmul, `[x, s·x Aᵀ] · [W, B]ᵀ`, rounded once.

PEFT's LoRA `Linear.forward` computes `base(x) + B(A(dropout(x))) * scaling`. Under bf16 autocast (the CPU
training path) `base(x)` is rounded to bf16 before the update is added, and the sum is rounded again: an
update smaller than half a bf16 step of the base output (2⁻⁹ relative) is then lost entirely, not just
blurred, and early in training most LoRA updates are that small. The model the optimizer sees hides much of
its own update, and bf16 runs learned more slowly: held-out loss +3.4-4.0% over fp32 after 20 steps
(benchmarks/bench_train.py; docs/benchmarks.md). With the update inside the same matmul, the sum is formed
at fp32 accumulation and rounded once, so small updates survive as they do in fp32.

It is also faster than PEFT's forward: no cast of `x` to fp32, no separate scale-and-add over every
[tokens x out_features] output, forward and backward, in each of the ~210 adapted layers of SmolLM2-135M.
The adapter weights stay fp32 masters (cast per call), so saving, merging and the optimizer see PEFT's
parameters unchanged; tests/test_train_units.py checks outputs and gradients against PEFT's forward.

Layers with anything else (a LoRA variant such as DoRA, several or mixed adapters, merged or disabled
adapters, extra arguments, a trainable base weight, an input whose dtype only PEFT's cast would fix) keep
PEFT's own forward, per call.
"""

from __future__ import annotations

import types
from typing import Any

import torch


def install(model: Any) -> int:
    """Give every plain LoRA `Linear` of `model` the fused forward; returns how many layers got it."""
    from peft.tuners.lora.layer import Linear

    count = 0
    for module in model.modules():
        if type(module) is Linear:  # not subclasses (quantised layers): their base layers differ
            module.forward = types.MethodType(_fused_forward, module)
            count += 1
    return count


def _fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    active = self.active_adapters
    name = active[0] if len(active) == 1 else None
    autocast = torch.is_autocast_enabled(x.device.type)
    if (
        args
        or kwargs
        or name not in self.lora_A
        or (x.dtype != self.lora_A[name].weight.dtype and not autocast)
        or name in self.lora_variant
        or self.merged
        or self.disable_adapters
        or self.base_layer.weight.requires_grad
    ):
        return type(self).forward(self, x, *args, **kwargs)
    dtype = torch.get_autocast_dtype(x.device.type) if autocast else x.dtype
    update = self.lora_A[name](self.lora_dropout[name](x)) * self.scaling[name]  # [..., r], autograd as usual
    with torch.autocast(x.device.type, enabled=False):
        out = _OneMatmul.apply(
            x.to(dtype).reshape(-1, x.shape[-1]),
            update.to(dtype).reshape(-1, update.shape[-1]),
            self.base_layer.weight,
            self.lora_B[name].weight,
        )
    if self.base_layer.bias is not None:
        out = out + self.base_layer.bias.to(out.dtype)
    return out.view(*x.shape[:-1], out.shape[-1])


class _OneMatmul(torch.autograd.Function):
    """`[x, u] · [W, B]ᵀ` for a frozen `W` and a trainable `B`, in the dtype of `x`; gradients for x, u, B.

    Autograd through a `torch.cat` of W and B would also compute the full gradient of the concatenated
    weight (a second [out x in] matmul per layer for a frozen W); this computes only what is needed."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, u: torch.Tensor, weight: torch.Tensor, lora_b: torch.Tensor
    ) -> Any:
        ctx.save_for_backward(x, u, weight, lora_b)
        joined = torch.cat([weight.to(x.dtype), lora_b.to(x.dtype)], dim=1)
        return torch.cat([x, u], dim=1) @ joined.t()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        x, u, weight, lora_b = ctx.saved_tensors
        grad = grad.to(x.dtype)
        # the base path's; the update's reaches x through A (autograd). None where x needs none (layer 0)
        grad_x = grad @ weight.to(x.dtype) if ctx.needs_input_grad[0] else None
        grad_u = grad @ lora_b.to(x.dtype)
        return grad_x, grad_u, None, (grad.t() @ u).to(lora_b.dtype)
