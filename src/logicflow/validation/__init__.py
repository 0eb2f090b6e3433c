"""Validation of chat rows with Great Expectations: the parts behind `logicflow.stages.validate`.

- `tables`   which tables are checked (the unified rows and each raw dataset), their expected columns,
             reading them; invalid UTF-8 is replaced so the bad row is quarantined, not a crash;
- `inputs`   the stage's inputs as read and the schema gate they pass (columns and types, file by file);
- `checks`   derived diagnostic columns computed with pyarrow/pandas kernels (role sequence, shortest turn,
             joined text, boxed answer, duplicate keys, ...): what the expectations look at;
- `length`   token counts of each conversation rendered with the chat template, under the base tokenizer;
- `decontam` the eval sets' prompts, their n-gram index and the contamination column;
- `suites`   the catalogue: one named check per rule, grouped in families, each a built-in GX expectation;
- `engine`   one ephemeral GX context: the schema gate, a checkpoint per table with Data Docs, failing rows;
- `content`  the content phase: derived columns, then the content suites with their `mostly`;
- `quarantine` each row's reasons, then the clean and quarantine files, counted on disk;
- `summary`  the summary metric and the checks on it that fail the stage (accounting, thresholds);
- `report`   the token-length histogram and the failure message's reason lines;
- `timing`   wall time per step;
- `synth`    synthetic rows, tables and a tiny tokenizer for the tests and the benchmark.
"""

import logging as _logging
import os as _os

# Every module here may import GX; this package runs first: no analytics calls (offline), quiet logs.
_os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
_logging.getLogger("great_expectations").setLevel(_logging.WARNING)  # its INFO lines are import internals
