"""Progress bars in a log file: one line per `step_pct` percent or per `every_s` seconds, not per redraw.

A child process (`dvc repro` running a stage) draws its tqdm bars by rewriting one terminal line: each
redraw ends where the next one begins with a carriage return. Read with `newline=""`, a segment that ends
in "\\r" is such a redraw; a segment that ends in "\\n" is a finished line (a bar's last state included).
`ProgressThrottle.keep` passes finished lines through and keeps a redraw only when its bar crossed the
next `step_pct` or `every_s` went by since that bar's last kept line; the terminal, when there is one,
still gets every redraw (`throttled(..., live=terminal())`).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO

PERCENT = re.compile(r"(\d{1,3})%\|")  # tqdm's "{desc}: 40%|####  | 4/10 [...]"
REDRAW_END = "\r"


def bar_name(line: str) -> str:
    """A bar's identity: what comes before its percentage (its description), or the whole line."""
    match = PERCENT.search(line)
    return line[: match.start()].strip() if match else line


@dataclass
class ProgressThrottle:
    """Which segments of a child's output become log lines (see the module docstring)."""

    step_pct: int = 10
    every_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _last: dict[str, tuple[int, float, str]] = field(
        default_factory=dict
    )  # bar -> its last logged step, time, line

    def keep(self, segment: str) -> str | None:
        """The line to log for `segment` (a piece of output with its line ending), or None."""
        text = segment.rstrip("\r\n").strip()
        if not text:
            return None
        bar = bar_name(text)
        if not segment.endswith(REDRAW_END):  # a finished line: kept unless it repeats the bar's last line
            last = self._last.pop(bar, None)
            return None if last is not None and last[2] == text else text
        now, match = self.clock(), PERCENT.search(text)
        step = min(int(match.group(1)), 99) // self.step_pct if match else -1  # 100%: the closing line
        last = self._last.get(bar)
        if last is not None and step <= last[0] and now - last[1] < self.every_s:
            return None
        self._last[bar] = (step, now, text)
        return text


def throttled(stream: IO[str], throttle: ProgressThrottle, live: IO[str] | None = None) -> Iterable[str]:
    """The log lines of `stream` (a text stream opened with `newline=""`, so that iterating it cuts at
    "\\r" as well as "\\n" and keeps the endings); every redraw also goes to `live` when given."""
    for segment in stream:
        if live is not None and segment.endswith(REDRAW_END):
            live.write(segment)
            live.flush()
        line = throttle.keep(segment)
        if line is not None:
            yield line


def terminal() -> IO[str] | None:
    """stderr when it is a terminal (live bars belong there), else None."""
    return sys.stderr if sys.stderr.isatty() else None
