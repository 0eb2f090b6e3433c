"""Check that requirements.lock still pins what pyproject.toml asks for (`make setup` runs it first).

    python3 infra/check_lock.py [PROJECT_DIR]       # exit 1, one line per problem, when they disagree

A pin edited in pyproject.toml without re-locking would otherwise install the lock's old version and pass
unnoticed: every `name==version` of pyproject's dependencies (and the `dev` extra) must be in the lock with
that version (`2.13.0` accepts the lock's `2.13.0+cpu`, as pip does), and every other requirement must be in
the lock at some version. Stdlib only.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(==\s*([^\s;,]+))?")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def problems(project: Path) -> list[str]:
    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    wanted = [*meta["dependencies"], *meta.get("optional-dependencies", {}).get("dev", [])]
    locked = {}
    for line in (project / "requirements.lock").read_text().splitlines():
        if match := REQUIREMENT.match(line):
            locked[canonical(match[1])] = match[3]
    found = []
    for requirement in wanted:
        match = REQUIREMENT.match(requirement)
        name, version = canonical(match[1]), match[3]
        if name not in locked:
            found.append(f"requirements.lock: {match[1]} is not locked (pyproject.toml asks {requirement!r})")
        elif version and version != (locked[name] if "+" in version else locked[name].split("+")[0]):
            found.append(
                f"requirements.lock: {match[1]}=={locked[name]}, but pyproject.toml pins {version}; re-lock "
                "(install the new pin in .venv, then write the lock from `pip freeze`)"
            )
    return found


def main() -> int:
    found = problems(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
