"""Logit knowledge distillation (the comparison study's KD method): the student learns the teacher's
next-token distribution on the supervised (assistant) tokens, mixed with the usual cross-entropy.

    loss = alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))

(Hinton et al., 2015; T^2 keeps the gradient scale independent of the temperature.) Teacher and student
must share the tokenizer. The teacher is the LoRA-tuned model of the main pipeline unless a larger one is
configured; it runs without gradients.
"""

from __future__ import annotations

from typing import Any

IGNORE = -100  # label of a token that is not supervised (prompt, padding)


def kd_loss(student_logits: Any, teacher_logits: Any, labels: Any, temperature: float) -> Any:
    """Mean over supervised positions of T^2 x KL(teacher || student), both at temperature T. Logits at
    position i predict token i + 1, so they are compared where labels[i + 1] is supervised."""
    import torch.nn.functional as F  # noqa: N812 - the usual name

    mask = labels[:, 1:] != IGNORE
    student = F.log_softmax(student_logits[:, :-1][mask].float() / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits[:, :-1][mask].float() / temperature, dim=-1)
    kl = F.kl_div(student, teacher, log_target=True, reduction="batchmean")
    return kl * temperature**2


def distillation_loss(
    student: Any, teacher: Any, batch: dict[str, Any], alpha: float, temperature: float
) -> Any:
    """The mixed loss of one batch (input_ids, attention_mask, labels); the teacher runs without gradients."""
    import torch

    inputs = {k: batch[k] for k in ("input_ids", "attention_mask") if k in batch}
    out = student(**inputs, labels=batch["labels"])
    with torch.no_grad():
        teacher_logits = teacher(**inputs).logits
    soft = kd_loss(out.logits, teacher_logits, batch["labels"], temperature)
    return alpha * out.loss + (1 - alpha) * soft
