"""Read a user's own dataset file (`data.datasets.<name>.path`) as rows, and fingerprint it.

    rows = read_rows(Path("data/local/my_openo1.jsonl"))
    digest = file_digest(Path("data/local/my_openo1.jsonl"))

Formats, by suffix: `.jsonl` (one JSON object a line; a line that is not JSON comes back as an
`Unreadable` row, to be quarantined, not to stop the stage), `.json` (a list of objects, or an
object holding one list), `.parquet`, and a directory saved by `datasets.Dataset.save_to_disk` (its
`train` split when it is a DatasetDict). A file that cannot be read at all is a DataError naming it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from logicflow.datasets.base import Unreadable
from logicflow.errors import DataError

SUFFIXES = (".jsonl", ".json", ".parquet")


def read_rows(path: Path) -> list[Any]:
    """The rows of `path`, in file order."""
    if not path.exists():
        raise DataError(f"{path}: not found (data.datasets.<name>.path)")
    if path.is_dir():
        return _saved_dataset(path)
    if path.suffix not in SUFFIXES:
        raise DataError(f"{path}: unknown format; use {', '.join(SUFFIXES)} or a saved HF dataset directory")
    try:
        if path.suffix == ".parquet":
            return pq.read_table(path).to_pylist()
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from None
    if path.suffix == ".json":
        return _json_list(path, text)
    rows: list[Any] = []
    for line in text.splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                rows.append(Unreadable(line, str(exc)))
    return rows


def _json_list(path: Path, text: str) -> list[Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(data, dict):
        lists = [value for value in data.values() if isinstance(value, list)]
        if len(lists) == 1:
            return lists[0]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of rows (or an object holding one list)")
    return data


def _saved_dataset(path: Path) -> list[Any]:
    from datasets import DatasetDict, load_from_disk  # heavy; only a saved-dataset path pays for it

    try:
        data = load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise DataError(f"{path}: not a dataset saved with save_to_disk ({exc})") from None
    if isinstance(data, DatasetDict):
        if "train" not in data:
            raise DataError(f"{path}: the saved DatasetDict has no 'train' split (has {', '.join(data)})")
        data = data["train"]
    return data.to_list()


def file_digest(path: Path) -> str:
    """sha256 of the file, or of every file under a directory (relative names and bytes, sorted)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        digest.update(file.read_bytes())
    return digest.hexdigest()
