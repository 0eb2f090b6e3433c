"""Hub fetch: a seeded, reproducible selection of rows, and revisions pinned to a commit SHA.

A local dataset folder stands in for the Hub (`datasets` streams it through the same code path)."""

import json
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import HfApi

from logicflow.datasets.hub import fetch_rows, resolve_revision
from logicflow.errors import DataError

SHARDS, ROWS_PER_SHARD = 3, 200
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def local_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset folder of 3 JSONL shards; `index` is each row's position in file order."""
    repo = tmp_path_factory.mktemp("hub") / "dataset"
    repo.mkdir()
    for shard in range(SHARDS):
        lines = []
        for i in range(shard * ROWS_PER_SHARD, (shard + 1) * ROWS_PER_SHARD):
            lines.append(json.dumps({"instruction": f"What is {i} + 1?", "output": str(i + 1), "index": i}))
        (repo / f"part-{shard}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return repo


def fetch(
    repo: Path, seed: int, max_samples: int = 50, data_files: str | None = None
) -> list[dict[str, Any]]:
    return fetch_rows(
        str(repo),
        config_name=None,
        data_files=data_files,
        revision="main",
        max_samples=max_samples,
        seed=seed,
    )


def indices(rows: list[dict[str, Any]]) -> list[int]:
    return [row["index"] for row in rows]


def test_same_seed_same_rows_as_plain_dicts(local_repo: Path) -> None:
    rows = fetch(local_repo, seed=0)
    assert rows == fetch(local_repo, seed=0)
    assert len(rows) == 50
    assert all(type(row) is dict for row in rows)
    assert rows[0] == {
        "instruction": f"What is {rows[0]['index']} + 1?",
        "output": str(rows[0]["index"] + 1),
        "index": rows[0]["index"],
    }


def test_selection_is_a_seeded_shuffle_not_file_order(local_repo: Path) -> None:
    first, other = indices(fetch(local_repo, seed=0)), indices(fetch(local_repo, seed=1))
    assert set(first) != set(other)
    for picked in (first, other):
        assert set(picked) != set(range(50))  # not the first 50 rows of the first file
        assert len({i // ROWS_PER_SHARD for i in picked}) > 1  # drawn from more than one shard


def test_max_samples_caps_and_each_row_comes_once(local_repo: Path) -> None:
    assert len(fetch(local_repo, seed=0, max_samples=7)) == 7
    everything = indices(fetch(local_repo, seed=0, max_samples=10_000))
    assert sorted(everything) == list(range(SHARDS * ROWS_PER_SHARD))


def test_data_files_selects_one_file(local_repo: Path) -> None:
    picked = indices(fetch(local_repo, seed=0, data_files="part-1.jsonl"))
    assert len(picked) == 50
    assert all(ROWS_PER_SHARD <= i < 2 * ROWS_PER_SHARD for i in picked)


# The only stand-in below is the network edge: `HfApi.dataset_info`, the one call that reaches the Hub.


def test_full_sha_is_returned_without_asking_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a full commit SHA needs no Hub call")

    monkeypatch.setattr(HfApi, "dataset_info", no_network)
    assert resolve_revision("O1-OPEN/OpenO1-SFT", SHA) == SHA


def test_branch_is_resolved_to_the_commit_the_hub_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    class Info:
        sha = SHA

    def dataset_info(self: HfApi, repo_id: str, *, revision: str) -> Info:
        calls.append((repo_id, revision))
        return Info()

    monkeypatch.setattr(HfApi, "dataset_info", dataset_info)
    assert resolve_revision("O1-OPEN/OpenO1-SFT", "main") == SHA
    assert calls == [("O1-OPEN/OpenO1-SFT", "main")]


def test_unreachable_hub_is_a_data_error_naming_repo_and_revision(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(HfApi, "dataset_info", offline)
    with pytest.raises(DataError, match=r"O1-OPEN/OpenO1-SFT@main.*data\.source=offline"):
        resolve_revision("O1-OPEN/OpenO1-SFT", "main")
