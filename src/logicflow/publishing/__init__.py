"""Everything between a trained, evaluated model and its readers: the model card and the publish targets.

- `card_data`: collect the run's files (eval, train, data, validation, lineage) into one typed `RunData`.
- `card`: render `RunData` into a Hub model card (front matter by `ModelCardData`) and check it.
- `repo`: lay out the Hub-shaped folder (merged weights, tokenizer, card, eval, adapter/) and fingerprint it.
- `hub`: push that folder to a Hub endpoint in one commit, with retries that never commit twice.
- `inputs`: read and check what publish needs (eval report, card, train run, weights) into a `RepoPlan`.
- `gate`: what a failed evaluation gate means for publishing: the deltas and the warning.
- `targets`: the publish targets by name (`local`, `hub`, `mlflow`), the staged folder, the run order.

MLflow registration lives in `logicflow.registry`; the stages `card` and `publish` only wire these together.
"""
