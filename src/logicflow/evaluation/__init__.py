"""Base-vs-tuned evaluation: lm-eval tasks, scoring, the code sandbox client, reports and inference cost.

The `evaluate` stage (`logicflow.stages.evaluate`) only wires these modules together:
`tasks` (registry of offline tasks, rendered into an lm-eval include folder) and `standard` (lm-eval's own
Hub tasks, run when their data is reachable) say *what* to run; `runner` runs both models over them (checks
first, results reused from `cache` when they cannot have changed) and `harness` runs one task through
lm-eval on an in-memory model; `report` turns two result sets into deltas, a gate verdict, a table and a
chart; `inference` measures what the model costs to serve; `outputs` writes the report files and logs the
results to MLflow.
"""
