"""Loss on supervised tokens only, for devices where TRL's fused LM head scores every position.

TRL 1.16 replaces the LM head by a chunked log-prob kernel. On CUDA/XPU (Triton) it projects only the
positions that carry a label; elsewhere it projects **every** position (prompt and padding included) and folds
each tile in fp32 torch ops, computing entropy and top-1 on the way. Profiled on this 2-core CPU
(SmolLM2-135M, vocab 49,152, batch 4 x ~300 tokens) that head was ~47% of a training step.

`CompactHeadLoss` (a trainer mixin) does on those devices what the Triton path does: the backbone runs as
usual, then only hidden states at label positions meet the LM head, as one matmul (bf16 under autocast) and a
log-softmax. The loss, `mean_token_accuracy`, `entropy` and `num_tokens` are the same quantities TRL logs.
The model is still called through its wrapper (DDP, PEFT), so gradient sync and adapters work unchanged.
It materialises the [supervised tokens x vocab] logits (fp32 for the log-softmax): ~0.2 GB per 1,000 tokens
at SmolLM2's 49k vocabulary, fine on CPU batches; GPUs keep TRL's chunked kernel.
"""

from __future__ import annotations

import functools
import types
from typing import Any

import torch

COMPACT_KWARG = "compact_lm_head"
ENTROPY_POSITIONS = 256  # evenly spaced positions per step whose mean entropy is logged
NLL_CHUNK_ROWS = 128  # logits rows turned into loss and gradient at once (fp32: 25 MB at 49k vocab)


def install(model: Any, device: Any) -> bool:
    """Teach the causal LM under any PEFT wrapper to return (logits at label positions, their targets).

    Called with `compact_lm_head=True` (which PEFT and DDP pass through), the forward returns a namespace with
    `logits` [N, V] and `targets` [N] for the N shifted positions whose label is not -100; otherwise it is the
    forward it was before. Installed only where TRL's head scores every position (no Triton on `device`) and
    the head is a plain projection (no logit softcapping or scaling); returns whether it was installed.
    """
    from trl.trainer.utils import _use_triton  # TRL's own test; private, so pinned by tests/test_train_units

    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    text = lm.config.get_text_config()
    plain_head = all(
        getattr(text, k, None) in (None, 1.0) for k in ("final_logit_softcapping", "logit_scale")
    )
    if _use_triton(device) or not plain_head:
        return False
    previous = lm.forward

    @functools.wraps(previous)
    def forward(
        self: Any, *args: Any, compact_lm_head: bool = False, labels: Any = None, **kwargs: Any
    ) -> Any:
        if not compact_lm_head:
            return previous(*args, labels=labels, **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
        targets = labels[:, 1:]
        mask = targets != -100
        return types.SimpleNamespace(logits=self.get_output_embeddings()(hidden[mask]), targets=targets[mask])

    lm.forward = types.MethodType(forward, lm)
    return True


def mean_nll(logits: torch.Tensor, targets: torch.Tensor, count: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(-sum of log softmax(logits)[target] / count, rows whose top-1 is the target) for logits [N, V].

    Equal to `-log_softmax(logits.float()).gather(targets).sum() / count` and its gradient, computed in one
    pass over row chunks that also yields the gradient (softmax minus one-hot, over count) in the logits'
    dtype: one exp per logit instead of two (log-softmax and its backward), and no fp32 copy of all logits
    kept for backward. On SmolLM2's 49k vocabulary the log-softmax path was ~15% of a CPU training step."""
    return _MeanNLL.apply(logits, targets, count)


class _MeanNLL(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, logits: torch.Tensor, targets: torch.Tensor, count: float
    ) -> tuple[torch.Tensor, ...]:
        grad = torch.empty_like(logits) if ctx.needs_input_grad[0] else None
        total = torch.zeros((), dtype=torch.float32, device=logits.device)
        correct = torch.zeros((), dtype=torch.long, device=logits.device)
        for start in range(0, len(logits), NLL_CHUNK_ROWS):
            rows = slice(start, start + NLL_CHUNK_ROWS)
            chunk = logits[rows].to(torch.float32, copy=True)  # a copy: worked on in place below
            target = targets[rows].unsqueeze(-1)
            peak, top = chunk.max(-1, keepdim=True)
            picked = chunk.gather(-1, target)
            chunk.sub_(peak).exp_()
            norm = chunk.sum(-1, keepdim=True)
            total += (norm.log() + peak - picked).sum()
            correct += (top == target).sum()
            if grad is not None:
                grad[rows] = chunk.div_(norm).scatter_add_(-1, target, -torch.ones_like(picked)).div_(count)
        ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(correct)
        return total / count, correct

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, _: Any) -> tuple[torch.Tensor, None, None]:
        (grad,) = ctx.saved_tensors
        return grad * grad_loss.to(grad.dtype), None, None


class CompactHeadLoss:
    """SFTTrainer mixin: loss on supervised positions only once `install` succeeded, else TRL's fused head."""

    compact_head = False  # set by the trainer builder from `install`

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001, ANN201
        if return_outputs or not self.compact_head:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        out = model(**inputs, **{COMPACT_KWARG: True})
        count = out.targets.numel() if num_items_in_batch is None else num_items_in_batch
        loss, correct = mean_nll(out.logits, out.targets, float(max(1, int(count))))
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # like TRL: DDP averages the gradients across ranks
        self._log_token_metrics(inputs, out, correct)
        return loss

    def _log_token_metrics(self, inputs: dict[str, Any], out: Any, correct: Any) -> None:
        """The per-step metrics TRL's compute_loss records: entropy, top-1 accuracy, cumulative num_tokens."""
        mode = "train" if self.model.training else "eval"
        gather = self.accelerator.gather_for_metrics
        logits = out.logits
        with torch.no_grad():  # entropy of an even sample of positions (exp over all: ~10% of a step)
            sample = logits[:: max(1, len(logits) // ENTROPY_POSITIONS)].float().log_softmax(-1)
            entropy = -(sample.exp() * sample).sum() * (len(logits) / max(1, len(sample)))
            valid = gather(torch.as_tensor(out.targets.numel(), device=logits.device)).sum()
            entropy, correct = gather(entropy).sum(), gather(correct).sum()
        metrics = self._metrics[mode]
        metrics["entropy"].append((entropy / valid).item() if valid > 0 else 0.0)
        metrics["mean_token_accuracy"].append((correct / valid).item() if valid > 0 else 0.0)
        if mode == "train":  # padding-free batches carry position_ids instead of an attention mask
            mask = inputs.get("attention_mask")
            tokens = mask.sum() if mask is not None else torch.as_tensor(inputs["position_ids"].size(1))
            self._total_train_tokens += gather(tokens.to(logits.device)).sum().item()
        metrics["num_tokens"] = [self._total_train_tokens]
