"""Stage `data` on the smoke profile: outputs, counts, reproducibility, atomic failure, source selection."""

import dataclasses
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
from huggingface_hub import HfApi

from logicflow.config import DATASET_NAMES, DataConfig, load_config
from logicflow.datasets import ADAPTERS, UNIFIED_SCHEMA, read_parquet
from logicflow.datasets.generator import generate, is_heldout
from logicflow.datasets.mixing import target_counts
from logicflow.datasets.sources import resolve_source
from logicflow.errors import DataError
from logicflow.paths import Paths
from logicflow.stages import data

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def smoke(*overrides: str):
    return load_config(PARAMS, profile="smoke", overrides=list(overrides))


def output_bytes(paths: Paths) -> dict[str, bytes]:
    files = [paths.raw(name) for name in DATASET_NAMES]
    files += [paths.messages("train"), paths.messages("validation"), paths.heldout_math, paths.data_summary]
    return {str(f): f.read_bytes() for f in files}


def test_smoke_run_writes_every_output(tmp_path: Path) -> None:
    cfg, paths = smoke(), Paths.from_root(tmp_path)
    result = data.run(cfg, paths)

    assert result.source == "offline"
    assert result.rows == {"openo1": 16, "openthoughts": 16, "openr1_math": 16}
    assert (result.train_rows, result.validation_rows, result.heldout_rows) == (
        42,
        6,
        8,
    )  # val_fraction 0.125
    for name in DATASET_NAMES:
        adapter = ADAPTERS[name]
        raw = pq.read_table(paths.raw(name))
        assert raw.schema.equals(adapter.schema) and raw.num_rows == 16
    train, validation = pq.read_table(paths.messages("train")), pq.read_table(paths.messages("validation"))
    assert train.schema.equals(UNIFIED_SCHEMA) and validation.schema.equals(UNIFIED_SCHEMA)
    assert train.num_rows + validation.num_rows == cfg.data.max_samples
    ids = train.column("id").to_pylist() + validation.column("id").to_pylist()
    assert len(set(ids)) == len(ids)
    assert set(train.column("source").to_pylist()) == set(DATASET_NAMES)  # shuffled together

    heldout = [json.loads(line) for line in paths.heldout_math.read_text().splitlines()]
    assert len(heldout) == 8 and all(set(h) == {"id", "question", "answer", "kind"} for h in heldout)
    expected = generate(8, seed=cfg.data.seed, split="heldout", difficulty=cfg.data.difficulty)
    assert [h["id"] for h in heldout] == [p.id for p in expected] and all(is_heldout(p.key) for p in expected)
    questions = {h["question"] for h in heldout}
    prompts = {
        m[0]["content"]
        for m in train.column("messages").to_pylist() + validation.column("messages").to_pylist()
    }
    assert not any(q in p for q in questions for p in prompts)

    summary = json.loads(paths.data_summary.read_text())
    assert summary["source"] == "offline" and summary["rows"]["total"] == 48
    for name in DATASET_NAMES:
        assert (
            summary["datasets"][name]["raw_sha256"]
            == hashlib.sha256(paths.raw(name).read_bytes()).hexdigest()
        )


def test_rerun_is_byte_identical(tmp_path: Path) -> None:
    first, second = Paths.from_root(tmp_path / "a"), Paths.from_root(tmp_path / "b")
    data.run(smoke(), first)
    data.run(smoke(), second)
    data.run(smoke(), second)  # over its own previous outputs
    a, b = output_bytes(first), output_bytes(second)
    assert [a[k] for k in a] == [b[k.replace(str(first.root), str(second.root))] for k in a]


def test_failure_mid_run_leaves_previous_outputs_untouched(tmp_path: Path, monkeypatch) -> None:
    paths = Paths.from_root(tmp_path)
    data.run(smoke(), paths)
    before = output_bytes(paths)

    def broken(row: dict) -> None:
        raise DataError("field 'messages' is broken")

    monkeypatch.setitem(ADAPTERS, "openr1_math", dataclasses.replace(ADAPTERS["openr1_math"], parse=broken))
    with pytest.raises(DataError, match=r"field 'messages' is broken"):
        data.run(smoke("data.max_samples=30", "data.seed=5"), paths)
    assert output_bytes(paths) == before
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_corrupted_raw_parquet_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "openo1.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match=rf"{path}: not a readable parquet file"):
        read_parquet(path)
    with pytest.raises(DataError, match="not a readable parquet file"):
        read_parquet(path, b"truncated")


SHA = "a" * 40


@pytest.fixture
def local_hub(tmp_path: Path, monkeypatch) -> Path:
    """The network edge, replaced: a local dataset folder per dataset stands in for its Hub repo (streamed by
    the real `datasets` loader), and `HfApi.dataset_info` answers with a fixed commit."""
    for name in DATASET_NAMES:
        adapter = ADAPTERS[name]
        folder = tmp_path / "hub" / name
        folder.mkdir(parents=True)
        for shard in range(2):
            rows = adapter.synthesize(generate(40, seed=90 + shard)).to_pylist()
            text = "".join(json.dumps(row) + "\n" for row in rows)
            (folder / f"train-{shard}.jsonl").write_text(text)
        replaced = dataclasses.replace(adapter, hub_id=str(folder), config_name=None, data_files=None)
        monkeypatch.setitem(ADAPTERS, name, replaced)
    monkeypatch.setattr(HfApi, "dataset_info", lambda self, repo_id, revision=None: SimpleNamespace(sha=SHA))
    return tmp_path


def test_hub_source_pins_the_commit_and_selects_rows_with_the_seed(local_hub: Path) -> None:
    def run(root: str, seed: int) -> dict:
        paths = Paths.from_root(local_hub / root)
        result = data.run(smoke("data.source=hub", f"data.seed={seed}"), paths)
        assert result.source == "hub" and sum(result.rows.values()) == 48
        assert len(paths.heldout_math.read_text().splitlines()) == 8  # always generated
        return json.loads(paths.data_summary.read_text())["datasets"]

    first, again, other = run("a", 0), run("b", 0), run("c", 1)
    assert first["openo1"]["revision_sha"] == SHA and first["openo1"]["revision"] == "main"
    assert [d["raw_sha256"] for d in first.values()] == [d["raw_sha256"] for d in again.values()]
    assert all(first[n]["raw_sha256"] != other[n]["raw_sha256"] for n in first)


def test_hub_failure_is_a_clear_data_error(tmp_path: Path, monkeypatch) -> None:
    def unreachable(*args, **kwargs) -> None:  # the network edge
        raise ConnectionError("no route to host")

    monkeypatch.setattr(HfApi, "dataset_info", unreachable)
    with pytest.raises(DataError, match=r"O1-OPEN/OpenO1-SFT@main .*data.source=offline"):
        data.run(smoke("data.source=hub"), Paths.from_root(tmp_path))
    assert not (tmp_path / "data").exists()


def test_auto_source_stays_offline_when_hf_hub_offline_is_set(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_source("auto") == "offline"
    assert resolve_source("hub") == "hub" and resolve_source("offline") == "offline"


@pytest.mark.parametrize(
    ("total", "datasets", "expected"),
    [
        (48, {"openo1": {}, "openthoughts": {}, "openr1_math": {}}, [16, 16, 16]),
        (100, {"openo1": {}, "openthoughts": {}, "openr1_math": {}}, [34, 33, 33]),
        (
            10,
            {"openo1": {"weight": 1}, "openthoughts": {"weight": 2}, "openr1_math": {"weight": 3}},
            [2, 3, 5],
        ),
        (90, {"openo1": {"max_samples": 10}, "openthoughts": {}, "openr1_math": {"weight": 2}}, [10, 27, 53]),
        (90, {"openo1": {"max_samples": 10}, "openthoughts": {"max_samples": 5}}, [10, 5]),
    ],
)
def test_target_counts_split_by_weight_with_caps(total: int, datasets: dict, expected: list[int]) -> None:
    counts = target_counts(DataConfig(max_samples=total, datasets=datasets))
    assert list(counts.values()) == expected


def test_replay_rows_are_the_base_models_own_answers_cached_and_accounted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from logicflow.datasets import replay
    from logicflow.model import build_tiny_model

    monkeypatch.setenv("LOGICFLOW_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LOGICFLOW_THREADS", "1")
    paths = Paths.from_root(tmp_path / "project")
    build_tiny_model(paths.base_model)
    cfg = smoke("data.replay.rows=6", "data.replay.max_new_tokens=4", "data.replay.batch_size=3")
    result = data.run(cfg, paths)

    report = json.loads(paths.data_summary.read_text())["replay"]
    assert report["prompts"] == 6 and report["rows"] + report["left_out_cut_off_or_empty"] == 6
    rows = [
        r
        for split in ("train", "validation")
        for r in pq.read_table(paths.messages(split)).to_pylist()
        if r["source"] == "replay"
    ]
    assert len(rows) == report["rows"] and result.train_rows + result.validation_rows == 48 + report["rows"]
    assert {r["messages"][0]["content"] for r in rows} <= set(replay.prompts(6, cfg.data.seed))
    assert all(r["thinking"] == "" and r["answer"] is None for r in rows)  # no think block on replay rows

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("replay answers must come from the cache on the second run")

    monkeypatch.setattr(replay, "_generate", no_model)
    before = output_bytes(paths)
    data.run(cfg, paths)
    assert output_bytes(paths) == before


def test_replay_prompts_are_distinct_mixed_and_bounded() -> None:
    from logicflow.datasets.replay import prompts

    chosen = prompts(240, seed=0)
    assert len(set(chosen)) == 240 and prompts(240, seed=0) == chosen
    assert sum("Python function" in p for p in chosen) == 80  # a third code, two thirds instructions
    assert [("Python" in p) for p in chosen[:6]] == [True, False, False, True, False, False]
    with pytest.raises(ValueError, match="at most 240"):
        prompts(241, seed=0)
