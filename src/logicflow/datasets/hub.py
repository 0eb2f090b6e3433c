"""Reproducible fetch of an upstream dataset from the Hugging Face Hub.

    sha = resolve_revision("O1-OPEN/OpenO1-SFT", "main")
    rows = fetch_rows("O1-OPEN/OpenO1-SFT", config_name=None, data_files="OpenO1-SFT.jsonl",
                      revision=sha, max_samples=500, seed=0)

- Revision: a branch or tag moves, so `resolve_revision` pins it to the commit SHA it points at now; the
  caller fetches at that SHA and records it, so a run can be repeated on exactly the same files.
- Selection: a seeded shuffle of the streamed `train` split (shard order plus a shuffle buffer), then the
  first `max_samples` rows, not the first rows in file order.
  The same (revision, seed, buffer_size) gives the same rows.
- `max_samples` applies per dataset: each call fetches one dataset's share.
- Rows come back as plain dicts, so the caller checks each one and one badly typed row cannot fail the fetch.
- `repo` may be a local dataset folder (how tests stand in for the Hub); `datasets` ignores `revision` there.
"""

from __future__ import annotations

import itertools
import logging
import re
from typing import Any

from huggingface_hub import HfApi

from logicflow.errors import DataError

log = logging.getLogger(__name__)

COMMIT_SHA = re.compile(r"[0-9a-f]{40}")


def resolve_revision(repo_id: str, revision: str) -> str:
    """The commit SHA of dataset `repo_id` at `revision` (branch, tag or SHA); a full SHA comes back as is."""
    if COMMIT_SHA.fullmatch(revision):
        return revision
    try:
        sha = HfApi().dataset_info(repo_id, revision=revision).sha
    except Exception as exc:  # network, auth, unknown repo or revision: all mean "cannot pin it now"
        raise DataError(
            f"could not resolve dataset {repo_id}@{revision} to a commit on the Hub ({exc}); "
            "check the network and HF_TOKEN, or set data.source=offline"
        ) from exc
    if not sha:
        raise DataError(f"the Hub reported no commit for {repo_id}@{revision}; set data.source=offline")
    return sha


def fetch_rows(
    repo: str,
    *,
    config_name: str | None,
    data_files: str | None,
    revision: str,
    max_samples: int,
    seed: int,
    buffer_size: int = 10_000,
) -> list[dict[str, Any]]:
    """`max_samples` rows of the `train` split of `repo` at `revision`, picked by a shuffle seeded by `seed`.

    Streams, so only what the buffer needs is downloaded. Errors from `datasets` propagate to the caller."""
    from datasets import load_dataset  # heavy; only the hub path pays for it

    log.info("fetching %d rows of %s@%s (seed %d)", max_samples, repo, revision, seed)
    stream = load_dataset(
        repo,
        config_name,
        data_files=data_files,
        split="train",
        revision=revision,
        streaming=True,
    ).shuffle(seed=seed, buffer_size=buffer_size)
    return [dict(row) for row in itertools.islice(stream, max_samples)]
