"""The sandbox runs generated code isolated: limits enforced, nothing outside its temp folder touched."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from logicflow.sandbox import isolation_plan, run_untrusted


def run(code: str, timeout_s: float = 3.0, memory_mb: int = 256):
    return run_untrusted(code, timeout_s=timeout_s, memory_mb=memory_mb)


def test_a_correct_program_passes_and_its_output_is_kept() -> None:
    result = run("def f(x):\n    return x * 2\n\nassert f(21) == 42\nprint('done')\n")
    assert result.passed and result.status == "passed"
    assert result.stdout == "done"


@pytest.mark.parametrize(
    "code",
    [
        "assert 1 + 1 == 3",
        "raise ValueError('boom')",
        "def broken(:\n    pass",
        "import sys\nsys.exit(0)",  # exiting 0 before the end is not a pass
        "import os\nos._exit(0)",
    ],
)
def test_failing_or_early_exiting_programs_fail(code: str) -> None:
    result = run(code)
    assert result.status == "failed" and not result.passed


def test_timeout_is_enforced_for_busy_loops_and_sleeps() -> None:
    for code in ("while True:\n    pass", "import time\ntime.sleep(60)"):
        start = time.monotonic()
        result = run(code, timeout_s=1.0)
        assert result.status == "timeout"
        assert time.monotonic() - start < 10


def test_writes_outside_the_sandbox_folder_are_blocked(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    work_tree_file = Path(__file__).resolve().parent / "sandbox_escape_probe.txt"
    for path in (target, work_tree_file, Path("/tmp/logicflow-sandbox-escape.txt")):
        result = run(f"open({str(path)!r}, 'w').write('x')")
        assert result.status == "failed"
        assert not path.exists()
    victim = tmp_path / "keep.txt"
    victim.write_text("keep")
    for code in (
        f"import os\nos.remove({str(victim)!r})",
        f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
        f"import os\nos.rename({str(victim)!r}, 'stolen.txt')",
        f"import os\nos.symlink({str(victim)!r}, 'link')\nopen('link', 'w').write('x')",
    ):
        assert run(code).status == "failed"
        assert victim.read_text() == "keep"


def test_writes_inside_the_sandbox_folder_are_allowed() -> None:
    result = run(
        "with open('scratch.txt', 'w') as fh:\n    fh.write('ok')\nprint(open('scratch.txt').read())"
    )
    assert result.passed and result.stdout == "ok"


@pytest.mark.parametrize(
    "code",
    [
        "import os\nos.fork()",
        "import subprocess\nsubprocess.run(['true'])",
        "import os\nos.system('true')",
        "import os\nos.execv('/bin/true', ['true'])",
        "import socket\nsocket.socket()",
        "import _socket\n_socket.socket()",
        "import ctypes",
        "import os, signal\nos.kill(1, signal.SIGTERM)",
        "import threading\nt = threading.Thread(target=print)\nt.start()\nt.join()",
    ],
)
def test_processes_sockets_signals_and_ctypes_are_blocked(code: str) -> None:
    assert run(code).status == "failed"


def test_memory_and_output_limits() -> None:
    assert run("x = bytearray(2 * 1024 ** 3)", memory_mb=128).status == "failed"
    flood = run("while True:\n    print('x' * 10000)", timeout_s=5)
    assert flood.status in ("failed", "killed") and len(flood.stdout) <= 2000


def test_the_environment_holds_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    result = run("import os\nprint(sorted(os.environ))\nprint(os.environ.get('HF_TOKEN'))")
    assert result.passed and "hf_secret_value" not in result.stdout and "HF_TOKEN" not in result.stdout


def test_isolation_plan_is_reported() -> None:
    name, argv, _ = isolation_plan()
    assert name in {"netns+nobody", "nobody", "netns", "hook-only"}
    assert argv and Path(argv[-1]).exists()
