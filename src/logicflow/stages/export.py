"""Stage `export`: GGUF files of the merged model for llama.cpp and Ollama (`publish.gguf`), each checked.

    logicflow stage export --profile smoke --set "publish.gguf=[f16, q8_0]"

Writes `models/gguf/model-<type>.gguf` and `models/gguf/gguf.json` (per type: file, size, whether it answers
the first held-out problem greedily like the merged model, or why it was not exported); the card shows that
table and the publish stage ships the files under `gguf/`. With `publish.gguf: []` (the default) the
folder stays empty.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from logicflow.atomic import atomic_dir, write_json
from logicflow.config import Config
from logicflow.model import load_tokenizer
from logicflow.paths import Paths
from logicflow.publishing.gguf_export import GGUFResult, export_gguf


@dataclass(frozen=True)
class ExportResult:
    exported: list[str]
    not_exported: dict[str, str]  # type -> why


def run(cfg: Config, paths: Paths) -> ExportResult:
    results: list[GGUFResult] = []
    with atomic_dir(paths.gguf_dir) as tmp:
        if cfg.publish.gguf:
            results = export_gguf(paths.merged, tmp, cfg.publish.gguf, _check_prompt(cfg, paths))
        write_json(tmp / paths.gguf_report.name, {"gguf": [r.to_dict() for r in results]})
    return ExportResult(
        exported=[r.type for r in results if r.file],
        not_exported={r.type: r.reason for r in results if r.reason},
    )


def _check_prompt(cfg: Config, paths: Paths) -> list[int]:
    """The first held-out problem in the model's chat template."""
    first = json.loads(paths.heldout_math.read_text().splitlines()[0])
    tokenizer = load_tokenizer(paths.merged, cfg.model.template)
    messages = [{"role": "user", "content": first["question"]}]
    encoded = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    return list(encoded["input_ids"])
