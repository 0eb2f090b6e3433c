"""Paired statistics for base vs tuned on the same items: intervals, tests and the verdict per task.

    compare_items(base_items, tuned_items)   # -> Paired(n, base, tuned, delta, delta_ci, p_value, test)

Both models answer the same items, so a delta is judged on the pairs, not on two independent means:
- per-item pass/fail (every value 0 or 1): the exact McNemar test on the discordant pairs (a two-sided
  binomial test of b successes in b + c at 1/2), each score with its 95% Wilson interval;
- otherwise (a score per item in [0, 1], or a list of per-instruction results as IFEval's instruction-level
  accuracy, pooled): a paired bootstrap over items with a fixed seed, percentile intervals, and the
  two-sided bootstrap p-value (twice the share of resampled deltas on the far side of 0).
The interval of the delta is always the paired bootstrap percentile interval. A task where both models
score 0 on every item (or 1 on every item) carries no signal: `inconclusive`, not "no change".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

Interval = tuple[float, float]
Z95 = 1.959963984540054
BOOTSTRAP_ITERS = 10_000
BOOTSTRAP_SEED = 20251202


@dataclass(frozen=True)
class Paired:
    n: int
    base: float
    tuned: float
    base_ci: Interval
    tuned_ci: Interval
    delta: float
    delta_ci: Interval
    p_value: float
    test: str  # "mcnemar-exact" | "paired-bootstrap"
    degenerate: bool  # both models at the floor, or both at the ceiling, on every item


def wilson(successes: float, n: int, z: float = Z95) -> Interval:
    """95% Wilson score interval of a proportion (successes may be pooled counts)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if successes <= 0 else max(0.0, centre - half)  # exact at the ends (no 5e-17 rounding dust)
    high = 1.0 if successes >= n else min(1.0, centre + half)
    return (low, high)


def mcnemar_exact(base_only: int, tuned_only: int) -> float:
    """Two-sided exact McNemar p from the discordant counts (base right & tuned wrong, and the reverse)."""
    discordant = base_only + tuned_only
    if discordant == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(tuned_only, discordant, 0.5, alternative="two-sided").pvalue)


def _as_pairs(items: Sequence[Any]) -> tuple[list[float], list[int]]:
    """Per item (score sum, count): a scalar is (value, 1); a list of results is (sum, len)."""
    sums, counts = [], []
    for item in items:
        values = item if isinstance(item, list | tuple) else [item]
        sums.append(float(sum(float(v) for v in values)))
        counts.append(len(values))
    return sums, counts


def _is_binary(items: Sequence[Any]) -> bool:
    return all(not isinstance(v, list | tuple) and float(v) in (0.0, 1.0) for v in items)


def _bootstrap(
    base: tuple[list[float], list[int]], tuned: tuple[list[float], list[int]]
) -> tuple[Interval, Interval, Interval, float]:
    """Percentile intervals of base, tuned and tuned - base, and the two-sided p of the delta."""
    import numpy as np

    b_sum, counts = np.asarray(base[0]), np.asarray(base[1], dtype=float)
    t_sum, t_counts = np.asarray(tuned[0]), np.asarray(tuned[1], dtype=float)
    n = len(counts)
    picks = np.random.default_rng(BOOTSTRAP_SEED).integers(0, n, size=(BOOTSTRAP_ITERS, n))
    b = b_sum[picks].sum(1) / np.maximum(counts[picks].sum(1), 1)
    t = t_sum[picks].sum(1) / np.maximum(t_counts[picks].sum(1), 1)
    d = t - b

    def ci(x: Any) -> Interval:
        low, high = np.percentile(x, [2.5, 97.5])
        return (float(low), float(high))

    p = 1.0 if not d.any() else float(min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean())))
    return ci(b), ci(t), ci(d), p


def _tidy(paired: Paired) -> Paired:
    """Scores and bounds to 12 decimals: float dust (5.6e-17 for a zero) must not put a bound past a score."""

    def r(x: float) -> float:
        return round(x, 12) + 0.0  # + 0.0 turns -0.0 into 0.0

    return replace(
        paired,
        base=r(paired.base),
        tuned=r(paired.tuned),
        delta=r(paired.delta),
        base_ci=(r(paired.base_ci[0]), r(paired.base_ci[1])),
        tuned_ci=(r(paired.tuned_ci[0]), r(paired.tuned_ci[1])),
        delta_ci=(r(paired.delta_ci[0]), r(paired.delta_ci[1])),
    )


def compare_items(base_items: Sequence[Any], tuned_items: Sequence[Any]) -> Paired:
    """Paired comparison of two models' per-item scores on the same items, in the same order."""
    return _tidy(_compare(base_items, tuned_items))


def _compare(base_items: Sequence[Any], tuned_items: Sequence[Any]) -> Paired:
    if len(base_items) != len(tuned_items):
        raise ValueError(f"paired scores need the same items: {len(base_items)} vs {len(tuned_items)}")
    n = len(base_items)
    if n == 0:
        raise ValueError("no items to compare")
    base, tuned = _as_pairs(base_items), _as_pairs(tuned_items)
    base_mean = sum(base[0]) / max(sum(base[1]), 1)
    tuned_mean = sum(tuned[0]) / max(sum(tuned[1]), 1)
    base_ci, tuned_ci, delta_ci, p_boot = _bootstrap(base, tuned)
    scores = [*base[0], *tuned[0]]
    sizes = [*base[1], *tuned[1]]
    degenerate = all(s == 0 for s in scores) or all(s == c for s, c in zip(scores, sizes, strict=True))
    if _is_binary(base_items) and _is_binary(tuned_items):
        base_only = sum(1 for b, t in zip(base_items, tuned_items, strict=True) if b and not t)
        tuned_only = sum(1 for b, t in zip(base_items, tuned_items, strict=True) if t and not b)
        return Paired(
            n,
            base_mean,
            tuned_mean,
            wilson(sum(base[0]), n),
            wilson(sum(tuned[0]), n),
            tuned_mean - base_mean,
            delta_ci,
            mcnemar_exact(base_only, tuned_only),
            "mcnemar-exact",
            degenerate,
        )
    return Paired(
        n,
        base_mean,
        tuned_mean,
        base_ci,
        tuned_ci,
        tuned_mean - base_mean,
        delta_ci,
        p_boot,
        "paired-bootstrap",
        degenerate,
    )
