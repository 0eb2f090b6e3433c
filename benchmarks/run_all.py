"""`make bench`: run every benchmarks/bench_*.py one after another (never in parallel: 2 cores) and
collect the result each prints as its last stdout line (one JSON object) into benchmarks/results.json.
A result's `headline` (the ratios a reader looks for first) is printed as it comes. Figures go to
docs/benchmarks.md with the command that produced them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    results, failed = {}, []
    for script in sorted(HERE.glob("bench_*.py")):
        name = script.stem.removeprefix("bench_")
        print(f"== {script.name}", flush=True)
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode or not lines:
            failed.append(script.name)
            print(proc.stdout[-2000:], proc.stderr[-2000:], sep="\n", file=sys.stderr)
            continue
        results[name] = json.loads(lines[-1])
        print(json.dumps(results[name].get("headline", results[name])), flush=True)
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
