"""What the evaluation gate means for publishing: every metric's change in one line, and the warning logged
when the gate did not pass (nothing goes to the Hub then, unless forced).

    deltas(report)  # ["gsm8k exact_match: base 0.4000 [0.3000, 0.5000] -> tuned ..., delta +0.1000", ...]
"""

from __future__ import annotations

import logging

from logicflow.publishing.card import fmt_pm, fmt_signed
from logicflow.publishing.card_data import EvalReport

logger = logging.getLogger(__name__)


def deltas(report: EvalReport) -> list[str]:
    """Base vs tuned for every metric in the report, marked when it regressed."""
    return [
        f"{r.task} {r.metric}: base {fmt_pm(r.base)} -> tuned {fmt_pm(r.tuned)}, delta {fmt_signed(r.delta)}"
        + (" (regressed)" if r.regressed else "")
        for r in report.results
    ]


def warn_gate_failed(report: EvalReport, changes: list[str], force: bool) -> None:
    """Log why the gate did not pass, every delta, and what `--force` still holds back."""
    logger.warning(
        "evaluation gate %s: %s", report.gate.result, "; ".join(report.gate.reasons) or "no reason"
    )
    for line in changes:
        logger.warning("  %s", line)
    if force:
        logger.warning("--force: publishing anyway (alias `champion` still does not move)")
