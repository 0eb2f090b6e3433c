"""The run's headline numbers as one flat file for `dvc metrics show` / `dvc exp show`.

    write_json(paths.run_metrics, run_metrics(collect(cfg, paths)))

One key per number a person compares between experiments (`dvc exp run -S lora.r=8` vs `-S lora.r=32`):
per task (primary metric) base, tuned, delta and p; the gate; train and validation loss; train tokens/s;
the quarantine share. Everything else stays in the stages' own reports, which DVC tracks as plain outputs.
"""

from __future__ import annotations

from typing import Any

from logicflow.publishing.card_data import RunData

TRAIN_KEYS = ("train_loss", "eval_loss", "tokens_per_s")


def run_metrics(data: RunData) -> dict[str, Any]:
    metrics: dict[str, Any] = {"gate": data.eval.gate.result}
    for row in data.eval.results:
        if not row.primary:
            continue
        metrics |= {
            f"{row.task}.base": row.base.value,
            f"{row.task}.tuned": row.tuned.value,
            f"{row.task}.delta": row.delta,
            f"{row.task}.p": row.p_value,
        }
    for key in TRAIN_KEYS:
        if isinstance(data.train_metrics.get(key), int | float):
            metrics[f"train.{key}"] = round(float(data.train_metrics[key]), 4)
    share = data.validation_totals.get("quarantine_fraction")
    if isinstance(share, int | float):
        metrics["validate.quarantine_share"] = round(float(share), 4)
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}
