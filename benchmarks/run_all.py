"""`make bench`: run every benchmarks/bench_*.py one after another (never in parallel: 2 cores) and
collect the JSON line each prints into benchmarks/results.json. Figures go to docs/benchmarks.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    results, failed = [], []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode or not lines:
            failed.append(script.name)
            print(proc.stderr[-2000:], file=sys.stderr)
            continue
        for line in lines:
            print(line)
            results.append(json.loads(line))
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
