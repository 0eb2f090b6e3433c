"""Where the data stage's rows come from: the Hub or the offline generator (`data.source`), and for each
dataset the user's own file when `data.datasets.<name>.path` names one.

    source = resolve_source("auto")   # "hub" when the Hub answers, else "offline"
    sample = upstream_sample(get_adapter("openo1"), 200, source, cfg.data, paths.root)
    sample.rows, sample.positions, sample.lineage

The lineage (file digest, Hub commit or generator settings) is what `reports/data.json` records per dataset.
"""

from __future__ import annotations

import logging
import os
import random
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from logicflow.config import DATASET_NAMES, DataConfig
from logicflow.datasets.base import DatasetAdapter
from logicflow.datasets.files import file_digest, read_rows
from logicflow.datasets.generator import generate
from logicflow.datasets.hub import fetch_rows, resolve_revision
from logicflow.errors import DataError

logger = logging.getLogger(__name__)

Source = Literal["hub", "offline"]
HUB_TIMEOUT_S = 3.0


def hub_reachable() -> bool:
    """False when HF_HUB_OFFLINE is set or a quick HEAD request to the Hub endpoint fails."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return False
    from huggingface_hub.constants import ENDPOINT

    try:
        with urllib.request.urlopen(urllib.request.Request(ENDPOINT, method="HEAD"), timeout=HUB_TIMEOUT_S):
            return True
    except OSError:
        return False


def resolve_source(setting: str) -> Source:
    """`data.source` as the source to use: `auto` asks the Hub whether it is reachable."""
    if setting != "auto":
        return "hub" if setting == "hub" else "offline"
    source: Source = "hub" if hub_reachable() else "offline"
    logger.info(
        "data.source=auto: using %s data (%s)",
        source,
        "the Hub is reachable" if source == "hub" else "HF_HUB_OFFLINE is set or the Hub is unreachable",
    )
    return source


@dataclass(frozen=True)
class UpstreamSample:
    """One dataset's rows as dicts, before any check."""

    rows: list[Any]
    positions: list[int] | None  # each row's place in the user's file when sampled from one
    lineage: dict[str, Any]  # where the rows came from


def upstream_sample(
    adapter: DatasetAdapter, count: int, source: Source, data: DataConfig, root: Path
) -> UpstreamSample:
    """`count` rows of one dataset from the user's file (`data.datasets.<name>.path`, relative to `root`), the
    Hub at a pinned commit, or the offline generator."""
    path = data.datasets[adapter.name].path
    if path is not None:
        file = root / path
        rows = read_rows(file)
        lineage = {"source": "local", "path": path, "file_sha256": file_digest(file)}
        if len(rows) <= count:
            return UpstreamSample(rows, None, lineage)
        positions = sorted(random.Random(data.seed).sample(range(len(rows)), count))  # seeded, in file order
        return UpstreamSample([rows[i] for i in positions], positions, lineage)
    if source == "offline":
        # a distinct seed per dataset, so the three datasets hold different problems
        seed = data.seed + DATASET_NAMES.index(adapter.name)  # (local-only datasets always have a path)
        table = adapter.synthesize(generate(count, seed=seed, split="train", difficulty=data.difficulty))
        return UpstreamSample(table.to_pylist(), None, {"source": "generated", "difficulty": data.difficulty})
    sha = resolve_revision(adapter.hub_id, adapter.revision)
    try:
        rows = fetch_rows(
            adapter.hub_id,
            config_name=adapter.config_name,
            data_files=adapter.data_files,
            revision=sha,
            max_samples=count,
            seed=data.seed,
        )
    except Exception as exc:  # network, auth, a vanished revision: all mean "cannot use the Hub now"
        raise DataError(
            f"{adapter.name}: could not load {adapter.hub_id}@{sha} from the Hub ({exc}); "
            "check the network and HF_TOKEN, or set data.source=offline"
        ) from exc
    lineage = {"source": "hub", "hub_id": adapter.hub_id, "revision": adapter.revision, "revision_sha": sha}
    return UpstreamSample(rows, None, lineage)
