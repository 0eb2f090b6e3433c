"""Real-world upstream rows in: every malformed row reaches quarantine with its reason; none stops a stage.

Local files in each upstream schema (the user's own data, `data.datasets.<name>.path`) hold good rows plus one
row of every defect seen in the real datasets (tests/test_datasets.py DEFECTS) and a line that is not JSON;
the data and validate stages run on them for real, and every row is accounted for per dataset.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from logicflow.config import load_config
from logicflow.datasets import ADAPTERS, get_adapter
from logicflow.datasets.generator import generate
from logicflow.errors import DataError
from logicflow.paths import Paths
from logicflow.stages import data, validate
from logicflow.validation import synth
from test_datasets import DEFECTS, GOOD_ROWS

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
MODEL_ID = "logicflow/tiny-random-llama"
GOOD = 30  # good rows per dataset, around the defects


def write_user_files(root: Path) -> dict[str, list[str]]:
    """data/local/<name>.jsonl per dataset; returns the reason codes expected in quarantine per dataset."""
    expected: dict[str, list[str]] = {}
    (root / "data" / "local").mkdir(parents=True)
    rows, expected["chat"] = chat_rows()
    (root / "data" / "local" / "chat.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    for i, (name, adapter) in enumerate((n, a) for n, a in ADAPTERS.items() if n != "chat"):
        rows = adapter.synthesize(generate(GOOD, seed=40 + i)).to_pylist()
        lines = [json.dumps(row) for row in rows]
        defects = [(GOOD_ROWS[name] | defect, code) for n, defect, code in DEFECTS if n == name]
        for k, (row, _) in enumerate(defects):
            lines.insert(3 + 4 * k, json.dumps(row))
        lines.insert(1, '{"instruction": "cut off mid-line')
        (root / "data" / "local" / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
        expected[name] = sorted([code for _, code in defects] + ["parse.invalid_json"])
    return expected


def chat_rows() -> tuple[list[dict], list[str]]:
    """The user's own chats in the shapes they come in, plus broken ones (and their reason codes)."""
    good = []
    for i, p in enumerate(generate(GOOD, seed=77)):
        answer = f"{p.steps[-1]} The answer is \\boxed{{{p.answer}}}."
        shape = i % 4
        if shape == 0:  # OpenAI messages with a reasoning field (DeepSeek API)
            row = {
                "messages": [
                    {"role": "user", "content": p.question},
                    {"role": "assistant", "content": answer, "reasoning_content": " ".join(p.steps)},
                ]
            }
        elif shape == 1:  # inline think block
            row = {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": p.question},
                    {"role": "assistant", "content": f"<think>{' '.join(p.steps)}</think>{answer}"},
                ]
            }
        elif shape == 2:  # ShareGPT
            row = {
                "conversations": [{"from": "human", "value": p.question}, {"from": "gpt", "value": answer}]
            }
        else:  # no reasoning at all: kept, thinking is optional for the user's chats
            row = {
                "id": f"mine-{i}",
                "messages": [
                    {"role": "user", "content": p.question},
                    {"role": "assistant", "content": answer},
                ],
            }
        good.append(row)
    bad = [
        ({"messages": [{"role": "user", "content": "Hello?"}]}, "parse.no_assistant_turn"),
        (
            {
                "messages": [
                    {"role": "user", "content": "2+2?"},
                    {"role": "assistant", "content": "<think>so"},
                ]
            },
            "parse.think_unclosed",
        ),
        ({"text": "a row in some other format"}, "parse.no_messages"),
        ({"messages": [{"role": "user", "content": 7}]}, "parse.type_error"),
    ]
    return good + [row for row, _ in bad], sorted(code for _, code in bad)


def settings(root: Path) -> list[str]:
    return [
        f"model.id={MODEL_ID}",
        "data.max_samples=400",
        "validate.max_quarantine_fraction=0.5",
        *(f"data.datasets.{name}.path=data/local/{name}.jsonl" for name in ADAPTERS),
    ]


@pytest.fixture(scope="module")
def user_data_run(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    root = tmp_path_factory.mktemp("byo")
    expected = write_user_files(root)
    paths = Paths.from_root(root)
    synth.build_tokenizer(root / "tok", MODEL_ID)
    shutil.copytree(root / "tok", paths.base_model)
    cfg = load_config(PARAMS, profile="smoke", overrides=settings(root))
    data_result = data.run(cfg, paths)
    validate_result = validate.run(cfg, paths)
    return paths, expected, data_result, validate_result


def test_no_malformed_row_stops_the_data_stage(user_data_run) -> None:  # noqa: ANN001
    paths, expected, result, _ = user_data_run
    summary = json.loads(paths.data_summary.read_text())["datasets"]
    for name, codes in expected.items():
        entry = summary[name]
        assert entry["source"] == "local" and entry["path"] == f"data/local/{name}.jsonl"
        assert len(entry["file_sha256"]) == 64
        assert entry["rows_in"] == GOOD + len(codes) and entry["rows"] == GOOD
        assert sum(entry["rejected_by_reason"].values()) == entry["rejected"] == len(codes)
    assert result.rejected == sum(len(c) for c in expected.values())


def test_every_bad_row_is_in_quarantine_with_its_reason_and_raw_content(user_data_run) -> None:  # noqa: ANN001
    paths, expected, _, _ = user_data_run
    quarantine = pq.read_table(paths.quarantine_rows).to_pylist()
    unparsed = [row for row in quarantine if row["split"] == "unparsed"]
    for name, codes in expected.items():
        rows = [row for row in unparsed if row["source"] == name]
        assert sorted(r for row in rows for r in row["reasons"]) == codes
        assert all(row["raw"] and row["detail"].startswith(f"{name} row ") for row in rows)


def test_chat_rows_in_every_shape_convert_with_or_without_reasoning(user_data_run) -> None:  # noqa: ANN001
    paths, _, _, _ = user_data_run
    clean = (
        pq.read_table(paths.clean("train")).to_pylist() + pq.read_table(paths.clean("validation")).to_pylist()
    )
    chats = [row for row in clean if row["source"] == "chat"]
    assert len(chats) == GOOD
    assert sum(bool(row["thinking"]) for row in chats) == sum(i % 4 < 2 for i in range(GOOD))  # shapes 0, 1
    assert all("<think>" not in row["messages"][-1]["content"] for row in chats)
    assert any(row["id"] == "chat-mine-3" for row in chats)  # the user's own id is kept


def test_raw_rows_equal_clean_plus_quarantined_per_dataset(user_data_run) -> None:  # noqa: ANN001
    paths, expected, _, result = user_data_run
    summary = json.loads(paths.validation_summary.read_text())
    assert summary["accounting_ok"] and result.rows_in == result.clean + result.quarantined
    for name, codes in expected.items():
        entry = summary["datasets"][name]
        assert entry["rows_in"] == GOOD + len(codes) == entry["clean"] + entry["quarantined"]
        assert entry["not_converted"] == len(codes)
    assert summary["families"]["parse"] == sum(len(c) for c in expected.values())
    docs = paths.validation_reports.docs.rglob("*.html")
    assert any("parsed (parse)" in page.read_text() for page in docs)  # the Data Docs show them


def test_a_file_without_a_required_column_stops_naming_file_and_column(tmp_path: Path) -> None:
    (tmp_path / "data" / "local").mkdir(parents=True)
    (tmp_path / "data" / "local" / "o1.jsonl").write_text(
        json.dumps({"instruction": "q", "answer": "a"}) + "\n"
    )
    cfg = load_config(PARAMS, profile="smoke", overrides=["data.datasets.openo1.path=data/local/o1.jsonl"])
    with pytest.raises(
        DataError, match=r"data/local/o1\.jsonl: openo1 column 'output' is missing from every row"
    ):
        data.run(cfg, Paths.from_root(tmp_path))


def test_a_row_set_aside_from_a_sampled_file_names_its_line_in_the_file(tmp_path: Path) -> None:
    rows = get_adapter("openo1").synthesize(generate(60, seed=5)).to_pylist()
    lines = [json.dumps(row | {"instruction": ""} if i % 5 == 0 else row) for i, row in enumerate(rows)]
    (tmp_path / "data" / "local").mkdir(parents=True)
    (tmp_path / "data" / "local" / "o1.jsonl").write_text("\n".join(lines) + "\n")
    overrides = ["data.datasets={openo1: {path: data/local/o1.jsonl}}", "data.max_samples=30"]
    paths = Paths.from_root(tmp_path)
    data.run(load_config(PARAMS, profile="smoke", overrides=overrides), paths)  # 30 of 60 rows, sampled
    set_aside = pq.read_table(paths.unparsed).to_pylist()
    assert set_aside and all(r["index"] % 5 == 0 for r in set_aside)
    assert all(json.loads(r["raw"]) == json.loads(lines[r["index"]]) for r in set_aside)
