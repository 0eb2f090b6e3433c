"""T4: the disk fills up while a stage writes its outputs. The stage stops with one line naming the file, the
previous outputs are byte-identical and no temp file is left; with space back, the same command succeeds.

The full disk is real: the `data` folder is a small tmpfs mounted in an unprivileged user + mount namespace
(`unshare -rm`, as root or not), holding a copy of the previous outputs, so writes fail with ENOSPC.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = (
    "import hashlib, json, pathlib, sys; d = pathlib.Path(sys.argv[1]); "
    "print(json.dumps({str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() "
    "for p in sorted(d.rglob('*')) if p.is_file()}))"
)


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def stage_data(root: Path, *sets: str) -> list[str]:
    argv = [sys.executable, "-m", "logicflow.cli", "stage", "data", "--root", str(root)]
    return [*argv, "--params", str(ROOT / "params.yaml"), "--profile", "smoke", *sets]


def test_disk_full_while_writing_keeps_previous_outputs(tmp_path: Path, reliability) -> None:  # noqa: ANN001
    root = tmp_path / "project"
    subprocess.run(stage_data(root), check=True, capture_output=True)
    data = root / "data"
    before = snapshot(data)
    used = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    size = used + used // 2  # room for the old outputs and half of the new ones (written beside them first)

    rerun = shlex.join(stage_data(root, "--set", "data.seed=7"))  # new outputs: every file changes
    script = f"""
        mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(data))} 2>&1 || exit 90
        cp -a {shlex.quote(str(tmp_path / "saved"))}/. {shlex.quote(str(data))}/
        {rerun} 2>{shlex.quote(str(tmp_path / "stderr"))}
        echo "rc=$?"
        {shlex.join([sys.executable, "-c", SNAPSHOT, str(data)])}
    """
    subprocess.run(["cp", "-a", str(data), str(tmp_path / "saved")], check=True)
    full = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stdout + full.stderr
    rc_line, after_json = full.stdout.strip().splitlines()[-2:]
    stderr = (tmp_path / "stderr").read_text().strip().splitlines()

    assert rc_line == "rc=1", stderr[-20:]
    errors = [line for line in stderr if line.startswith("logicflow: error:")]
    assert len(errors) == 1 and "no space left on the device" in errors[0], stderr[-20:]
    assert str(data) in errors[0]  # names the file it was writing
    assert not any("Traceback" in line for line in stderr)
    assert json.loads(after_json) == before  # byte-identical previous outputs, no temp file left

    subprocess.run(stage_data(root, "--set", "data.seed=7"), check=True, capture_output=True)
    assert snapshot(data).keys() == before.keys() and snapshot(data) != before
    reliability(
        row="T4",
        fault="the disk fills up while the data stage writes (a tmpfs of old outputs + 50%)",
        outcome="one line naming the file, exit 1; old outputs byte-identical, no temp file; re-run works",
        tmpfs_bytes=size,
        files_checked=len(before),
    )
