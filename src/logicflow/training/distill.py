"""Logit knowledge distillation (the comparison study's `distill` method): the student learns the teacher's
next-token distribution on the supervised (assistant) tokens, mixed with the usual cross-entropy.

    loss = alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))

(Hinton et al., 2015; T^2 keeps the gradient scale independent of the temperature.) Both terms are sums over
the supervised tokens divided by `count` (the tokens of the whole accumulated batch, as the trainer's own
loss is), so gradient accumulation weighs tokens, not micro-batches. Teacher and student share the
tokenizer; the teacher runs without gradients. `DistillationLoss` puts this into the SFTTrainer.
"""

from __future__ import annotations

from typing import Any

IGNORE = -100  # label of a token that is not supervised (prompt, padding)


def _supervised(logits: Any, labels: Any) -> tuple[Any, Any]:
    """Logits at the positions that predict a supervised token (position i predicts token i + 1), and it."""
    targets = labels[:, 1:]
    mask = targets != IGNORE
    return logits[:, :-1][mask].float(), targets[mask]


def kd_loss(
    student_logits: Any, teacher_logits: Any, labels: Any, temperature: float, count: Any = None
) -> Any:
    """T^2 x KL(teacher || student) at temperature T, summed over supervised tokens, divided by `count`
    (default: their number)."""
    import torch.nn.functional as F  # noqa: N812 - the usual name

    student, _ = _supervised(student_logits, labels)
    teacher, _ = _supervised(teacher_logits, labels)
    log_s = F.log_softmax(student / temperature, dim=-1)
    log_t = F.log_softmax(teacher / temperature, dim=-1)
    kl = F.kl_div(log_s, log_t, log_target=True, reduction="sum")
    return kl * temperature**2 / (len(student) if count is None else count)


def distillation_loss(
    student: Any, teacher: Any, batch: dict[str, Any], alpha: float, temperature: float, count: Any = None
) -> Any:
    """The mixed loss of one batch (input_ids, attention_mask or position_ids, labels)."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    logits = student(**inputs).logits
    with torch.no_grad():
        teacher_logits = teacher(**inputs).logits
    supervised, targets = _supervised(logits, batch["labels"])
    count = len(targets) if count is None else count
    ce = F.cross_entropy(supervised, targets, reduction="sum") / count
    return alpha * ce + (1 - alpha) * kd_loss(logits, teacher_logits, batch["labels"], temperature, count)


class DistillationLoss:
    """SFTTrainer mixin: with a `teacher` set, the loss is `distillation_loss`; without, the usual one."""

    teacher: Any = None
    alpha = 0.5
    temperature = 2.0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001, ANN201
        if self.teacher is None or return_outputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss = distillation_loss(
            model, self.teacher, inputs, self.alpha, self.temperature, num_items_in_batch
        )
        if model.training:  # TRL's own loss counts the trained tokens for its `num_tokens` log; so do we
            mask = inputs.get("attention_mask")
            local = (
                mask.sum()
                if mask is not None
                else inputs["input_ids"].new_tensor(inputs["input_ids"].numel())
            )
            self._total_train_tokens += int(self.accelerator.gather_for_metrics(local).sum().item())
            self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # like TRL: DDP averages the gradients across ranks
        return loss
