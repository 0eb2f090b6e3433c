"""T15: what gets installed and loaded is what was reviewed. A pin edited in pyproject.toml without
re-locking stops `make setup` (infra/check_lock.py); a base model that would run its own code or load
pickled weights is refused before anything loads it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from logicflow.errors import ModelError
from logicflow.model import check_model_files

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parents[2]


def _check_lock(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "infra" / "check_lock.py"), str(project)], capture_output=True, text=True
    )


def test_a_pin_edited_without_relocking_fails_the_install_check(tmp_path: Path, reliability) -> None:  # noqa: ANN001
    for name in ("pyproject.toml", "requirements.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    assert _check_lock(tmp_path).returncode == 0  # the project as committed is consistent

    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"peft==0.21.2"', '"peft==0.22.0"'))
    edited = _check_lock(tmp_path)
    assert edited.returncode == 1
    assert "peft==0.21.2, but pyproject.toml pins 0.22.0" in edited.stderr
    pin = '"peft==0.21.2",'
    pyproject.write_text(pyproject.read_text().replace('"peft==0.22.0",', pin + '\n    "newdep==1.0",'))
    added = _check_lock(tmp_path)
    assert added.returncode == 1 and "newdep is not locked" in added.stderr
    reliability(
        row="T15",
        fault="pin edited in pyproject.toml, lock not regenerated",
        outcome="make setup stops before installing, naming the package",
    )


def test_a_base_model_with_its_own_code_or_pickled_weights_is_refused(tmp_path: Path, reliability) -> None:  # noqa: ANN001
    code = tmp_path / "remote-code"
    code.mkdir()
    auto_map = {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}
    (code / "config.json").write_text(json.dumps({"auto_map": auto_map}))
    (code / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match="trust_remote_code"):
        check_model_files(code, "someone/custom-model")

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (pickled / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ModelError, match="no safetensors weights"):
        check_model_files(pickled, "someone/old-model")
    reliability(
        row="T15",
        fault="base model needing trust_remote_code / shipping only pickle weights",
        outcome="refused with a one-line reason before loading",
    )
