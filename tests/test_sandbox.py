"""The sandbox's contract: only the tests decide the verdict, limits hold, outputs come back, the isolation
is the kernel's and is reported. The escape corpus is in tests/faults/test_escapes.py."""

from __future__ import annotations

import time

import pytest

from logicflow import sandbox
from logicflow.sandbox import SandboxUnavailable, isolation, run_untrusted

DOUBLE = "def check(candidate):\n    assert candidate(21) == 42\n"


def run(program: str, check: str = DOUBLE, timeout_s: float = 3.0, memory_mb: int = 256, **kwargs):
    return run_untrusted(program, check, "f", timeout_s=timeout_s, memory_mb=memory_mb, **kwargs)


def test_a_correct_program_passes_and_its_output_is_kept() -> None:
    result = run("def f(x):\n    return x * 2\n\nprint('done')\n")
    assert result.passed and result.status == "passed"
    assert result.stdout == "done" and result.isolation.startswith("kernel:")


@pytest.mark.parametrize(
    "program",
    [
        "def f(x):\n    return x * 3",
        "def f(x):\n    raise ValueError('boom')",
        "def broken(:\n    pass",
        "import sys\nsys.exit(0)",  # exiting 0 before the tests ran is not a pass
        "import os\nos._exit(0)",
        "print('passed')\nimport os\nos._exit(0)",  # nor is printing what a pass looks like
        "def f(x):\n    return object()",  # a value that cannot cross the pipe is a failure, not a crash
    ],
)
def test_failing_or_early_exiting_programs_fail(program: str) -> None:
    assert run(program).status == "failed"


def test_values_keep_their_types_across_the_pipe() -> None:
    check = (
        "def check(candidate):\n"
        "    assert candidate((1, 2.5, 'a', b'b', None, True)) == [(1, 2.5, 'a', b'b', None, True)]\n"
        "    assert candidate({'k': {1, 2}}) == [{'k': {1, 2}}]\n"
        "    assert candidate(float('inf')) == [float('inf')]\n"
        "    try:\n        candidate(-1)\n"
        "    except ValueError as exc:\n        assert 'negative' in str(exc)\n"
        "    else:\n        raise AssertionError('no ValueError')\n"
    )
    program = "def f(x):\n    if x == -1:\n        raise ValueError('negative')\n    return [x]\n"
    assert run(program, check).passed


def test_the_stub_in_context_serves_the_tests() -> None:
    """HumanEval tests call helpers defined in the problem's stub (e.g. `poly`): the checker runs it too."""
    context = "def helper(x):\n    return x + 1\n\ndef f(x):\n    '''stub'''\n"
    check = "def check(candidate):\n    assert helper(candidate(1)) == 3\n"
    assert run_untrusted(context + "    return 2 * x\n", check, "f", context=context).passed


def test_timeout_is_enforced_for_busy_loops_and_sleeps() -> None:
    for program in (
        "while True:\n    pass",
        "import time\ntime.sleep(60)",
        "def f(x):\n    while True:\n        pass",
    ):
        start = time.monotonic()
        assert run(program, timeout_s=1.0).status == "timeout"
        assert time.monotonic() - start < 10


def test_the_sandbox_folder_is_writable_and_threads_run() -> None:
    program = (
        "import threading\nopen('scratch.txt', 'w').write('ok')\n"
        "t = threading.Thread(target=print, args=(open('scratch.txt').read(),))\nt.start()\nt.join()\n"
        "def f(x):\n    return 2 * x\n"
    )
    result = run(program)
    assert result.passed and result.stdout == "ok"


def test_memory_and_output_limits() -> None:
    assert run("x = bytearray(2 * 1024 ** 3)", memory_mb=128).status == "failed"
    flood = run("while True:\n    print('x' * 10000)", timeout_s=5)
    assert flood.status in ("failed", "killed") and len(flood.stdout) <= sandbox.TAIL_CHARS


def test_the_environment_holds_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    result = run("import os\nprint(sorted(os.environ))\nprint(os.environ.get('HF_TOKEN'))")
    assert "hf_secret_value" not in result.stdout and "HF_TOKEN" not in result.stdout


def test_isolation_is_the_kernels_on_this_machine() -> None:
    """`make test` machines have user namespaces, Landlock and seccomp: anything less is a failure here."""
    kernel = isolation("kernel")
    assert kernel.mode == "kernel" and "namespaces" in kernel.description and "seccomp" in kernel.description
    assert "Landlock ABI" in kernel.description and "--net" in kernel.argv and "--pid" in kernel.argv


def test_unisolated_runs_only_when_asked_and_says_so() -> None:
    result = run("def f(x):\n    return 2 * x\n", mode="unisolated")
    assert result.passed and result.isolation.startswith("unisolated:")


def test_no_kernel_isolation_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    isolation.cache_clear()
    monkeypatch.setattr(sandbox, "NAMESPACES", ["--no-such-option"])
    try:
        with pytest.raises(SandboxUnavailable, match="namespaces.*eval.sandbox: unisolated"):
            run("def f(x):\n    return 2 * x\n")
    finally:
        isolation.cache_clear()
