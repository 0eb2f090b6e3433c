"""Stage `card`: render the model card (card/README.md, loss.png, the JSON files it links) from run files.

    logicflow stage card --profile smoke

Reads reports/eval.json (required: no eval report, no benchmark claims, no card), reports/inference.json,
reports/train/{params,metrics,mlflow_run}.json and loss.png, reports/data.json,
reports/validation/summary.json, models/base (manifest), models/merged (chat template) and the digest of
dvc.lock's earlier stages. Beside the card it writes training_params.json and validation_summary.json (the
full reports the card summarises, machine-local text scrubbed); the publish stage ships card/ as it is. The
same inputs give a byte-identical card. It also writes reports/metrics.json, the run's headline numbers in
one flat file (`logicflow.publishing.metrics`): what `dvc metrics show` and `dvc exp show` compare.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass

from logicflow.atomic import atomic_dir, write_json
from logicflow.config import Config
from logicflow.paths import CardFiles, Paths
from logicflow.publishing.card import attachments, render_card, validate_card
from logicflow.publishing.card_data import collect
from logicflow.publishing.metrics import run_metrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CardResult:
    path: str
    sha256: str
    license: str
    eval_results: int  # model-index entries (measured tuned scores)
    not_run: int
    gate_passed: bool
    missing_inputs: list[str]


def run(cfg: Config, paths: Paths) -> CardResult:
    data = collect(cfg, paths)
    text = render_card(data)
    card = validate_card(text, data.eval)
    with atomic_dir(paths.card.dir) as tmp:
        staged = CardFiles(tmp)
        staged.readme.write_text(text)
        for name, content in attachments(data).items():
            (tmp / name).write_text(content)
        if data.loss_plot:
            shutil.copyfile(data.loss_plot, staged.loss_plot)
    write_json(paths.run_metrics, run_metrics(data))
    for name in data.missing:
        logger.warning("card rendered without %s (the card says it was not recorded)", name)
    result = CardResult(
        path=str(paths.card.readme),
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        license=data.license,
        eval_results=len(card.data.eval_results or []),
        not_run=len(data.eval.not_run),
        gate_passed=data.eval.gate.passed,
        missing_inputs=data.missing,
    )
    logger.info(
        "model card written to %s (%d eval results, sha256 %s)",
        result.path,
        result.eval_results,
        result.sha256[:12],
    )
    return result
