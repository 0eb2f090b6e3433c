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

COMPACT_KWARG = "compact_lm_head"
ENTROPY_POSITIONS = 256  # evenly spaced positions per step whose mean entropy is logged


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


class CompactHeadLoss:
    """SFTTrainer mixin: loss on supervised positions only once `install` succeeded, else TRL's fused head."""

    compact_head = False  # set by the trainer builder from `install`

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001, ANN201
        import torch

        if return_outputs or not self.compact_head:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        out = model(**inputs, **{COMPACT_KWARG: True})
        log_probs = out.logits.float().log_softmax(-1)
        token_log_probs = log_probs.gather(-1, out.targets.unsqueeze(-1)).squeeze(-1)
        count = out.targets.numel() if num_items_in_batch is None else num_items_in_batch
        loss = -token_log_probs.sum() / torch.as_tensor(count).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # like TRL: DDP averages the gradients across ranks
        self._log_token_metrics(inputs, out, log_probs)
        return loss

    def _log_token_metrics(self, inputs: dict[str, Any], out: Any, log_probs: Any) -> None:
        """The per-step metrics TRL's compute_loss records: entropy, top-1 accuracy, cumulative num_tokens."""
        import torch

        mode = "train" if self.model.training else "eval"
        gather = self.accelerator.gather_for_metrics
        with torch.no_grad():  # entropy of an even sample of positions (exp over all: ~10% of a step)
            sample = log_probs[:: max(1, len(log_probs) // ENTROPY_POSITIONS)]
            entropy = -(sample.exp() * sample).sum() * (len(log_probs) / max(1, len(sample)))
            correct = (log_probs.argmax(-1) == out.targets).sum()
            valid = gather(torch.as_tensor(out.targets.numel(), device=log_probs.device)).sum()
            entropy, correct = gather(entropy).sum(), gather(correct).sum()
        metrics = self._metrics[mode]
        metrics["entropy"].append((entropy / valid).item() if valid > 0 else 0.0)
        metrics["mean_token_accuracy"].append((correct / valid).item() if valid > 0 else 0.0)
        if mode == "train":  # padding-free batches carry position_ids instead of an attention mask
            mask = inputs.get("attention_mask")
            tokens = mask.sum() if mask is not None else torch.as_tensor(inputs["position_ids"].size(1))
            self._total_train_tokens += gather(tokens.to(log_probs.device)).sum().item()
        metrics["num_tokens"] = [self._total_train_tokens]
