"""Knowledge distillation (the comparison study's KD method): the loss is zero for a copy of the teacher,
only supervised tokens count, and training on it moves the student towards the teacher."""

from __future__ import annotations

import torch

from logicflow.training.distill import IGNORE, distillation_loss, kd_loss


def _model(seed: int):  # noqa: ANN202
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
    return LlamaForCausalLM(config)


def _batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(0, 64, (4, 12), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[:, :5] = IGNORE  # the prompt is not supervised
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def test_kd_loss_is_zero_for_the_teacher_itself_and_ignores_the_prompt() -> None:
    logits = torch.randn(2, 6, 10)
    labels = torch.full((2, 6), IGNORE)
    labels[:, 3:] = 1
    assert kd_loss(logits, logits.clone(), labels, 2.0).item() == 0.0
    other = logits.clone()
    other[:, :2] += torch.randn(2, 2, 10)  # positions 0-1 predict prompt tokens 1-2: not supervised
    assert kd_loss(other, logits, labels, 2.0).item() == 0.0
    other[:, 3] += 5 * torch.randn(2, 10)
    assert kd_loss(other, logits, labels, 2.0).item() > 0


def test_kd_loss_decreases_on_a_fixed_batch() -> None:
    teacher, student, batch = _model(0).eval(), _model(1), _batch()
    optimizer = torch.optim.AdamW(student.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = distillation_loss(student, teacher, batch, alpha=0.0, temperature=2.0)  # pure distillation
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    assert all(p.grad is None for p in teacher.parameters())  # the teacher only answers
