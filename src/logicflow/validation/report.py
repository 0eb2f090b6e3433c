"""Report helpers: the token-length histogram and the reason lines of the failure message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def token_histogram(n_tokens: np.ndarray, sources: np.ndarray, cutoff_len: int, target: Path) -> None:
    """One step histogram of rendered-conversation token counts per source, with the cutoff marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    if len(n_tokens):
        top = max(int(n_tokens.max()), cutoff_len) + 1
        bins = np.linspace(0, min(top, 4 * cutoff_len), 60)
        for source in sorted(set(sources.tolist())):
            counts = np.clip(n_tokens[sources == source], 0, bins[-1])
            ax.hist(counts, bins=bins, histtype="step", linewidth=1.5, label=f"{source} ({len(counts)})")
        ax.legend(loc="upper right", fontsize=8)
    ax.axvline(cutoff_len, color="black", linestyle="--", linewidth=1)
    ax.text(cutoff_len, ax.get_ylim()[1] * 0.95, f" cutoff_len={cutoff_len}", fontsize=8, va="top")
    ax.set_xlabel("tokens per rendered conversation (longer rows in the last bin)")
    ax.set_ylabel("rows")
    ax.set_title("Token lengths of the unified rows")
    fig.tight_layout()
    fig.savefig(target, format="png")
    plt.close(fig)


def top_reasons(reasons: dict[str, int], examples: dict[str, list[str]], limit: int = 5) -> str:
    """`"role_order: 12 rows (e.g. a, b, c); duplicate: 3 rows (e.g. d)"` for the most frequent reasons."""
    ranked = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return "; ".join(
        f"{name}: {count} rows (e.g. {', '.join(examples.get(name, [])[:3])})" for name, count in ranked
    )


def counts(values: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(dict(values).items())}
