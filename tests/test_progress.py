"""Progress bars reach the flow-run log as a few lines, not one per redraw (logicflow.progress)."""

from __future__ import annotations

import io
import subprocess
import sys

from logicflow.progress import ProgressThrottle, throttled

# A stage's eval loop as the flow sees it: real tqdm, redrawing on every item, into a pipe.
CHILD = """
import sys
from tqdm import tqdm
print("Running stage 'evaluate':", flush=True)
for _ in tqdm(range(300), desc="generate", mininterval=0, miniters=1, file=sys.stderr):
    pass
print("done", flush=True)
"""


def child_output() -> io.TextIOWrapper:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=True
    )
    return io.TextIOWrapper(io.BytesIO(proc.stdout), encoding="utf-8", newline="")


def test_a_bar_of_300_redraws_logs_one_line_per_ten_percent_and_its_end() -> None:
    redraws = child_output().read().count("\r")
    lines = list(throttled(child_output(), ProgressThrottle(step_pct=10)))
    bar_lines = [line for line in lines if line.startswith("generate")]
    assert redraws > 300
    assert len(bar_lines) == 11  # 0%, 10%, ..., 90% and the finished bar (100%)
    assert bar_lines[-1].startswith("generate: 100%") and "300/300" in bar_lines[-1]
    assert lines[0] == "Running stage 'evaluate':" and lines[-1] == "done"


def test_a_bar_that_does_not_move_logs_once_per_interval() -> None:
    now = [0.0]
    throttle = ProgressThrottle(step_pct=10, every_s=60, clock=lambda: now[0])
    kept = []
    for second in range(0, 600, 5):  # ten minutes at 0/32, redrawn every 5 s
        now[0] = float(second)
        kept.append(throttle.keep(f"eval:   0%|          | 0/32 [{second}s<?, ?it/s]\r"))
    assert len([line for line in kept if line]) == 10


def test_plain_lines_and_separate_bars_are_never_dropped() -> None:
    throttle = ProgressThrottle()
    assert throttle.keep("Stage 'data' didn't change, skipping\n") == "Stage 'data' didn't change, skipping"
    assert throttle.keep("a:  50%|#####     | 1/2\r") is not None
    assert throttle.keep("b:  50%|#####     | 1/2\r") is not None  # another bar, its own budget
    assert throttle.keep("a:  50%|#####     | 1/2\r") is None
    assert throttle.keep("\r") is None
