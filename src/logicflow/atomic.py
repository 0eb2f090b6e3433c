"""Atomic writes: build an output beside its target, then rename it into place.

An interrupted or failing stage therefore leaves the previous good output (or none), never half a file.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from logicflow.errors import DiskFull

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def _disk_full_names(target: Path) -> Iterator[None]:
    """A full disk or quota while building `target` -> DiskFull naming it (the innermost writer names it)."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in NO_SPACE:
            raise
        raise DiskFull(
            f"{target}: no space left on the device while writing it; free space there and re-run "
            "(the previous version is untouched)"
        ) from None


@contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temp path in `target`'s folder; on success it replaces `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with _disk_full_names(target):
            yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield an empty temp folder beside `target`; on success it replaces `target` as a whole. Leftovers of an
    earlier writer that was killed (`.<name>.*` beside it, e.g. half a merged model) are removed first."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*"):
        if stale.is_dir():  # never a sibling file's `.<name>.<suffix>.tmp`
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp.chmod(0o755)
    old = target.with_name(f".{target.name}.old")
    try:
        with _disk_full_names(target):
            yield tmp
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(target: Path, data: Any) -> None:
    """Write pretty, key-sorted JSON atomically (stable bytes for DVC metrics)."""
    with atomic_file(target) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_text(target: Path, text: str) -> None:
    with atomic_file(target) as tmp:
        tmp.write_text(text)
