"""Pieces of the train stage (`logicflow.stages.train` wires them):

- `inputs`: what a run starts from (rows, base model, tokenizer, token statistics), checked by the guards;
- `data`: clean rows -> chat conversations, token statistics and the data guards;
- `trainer`: hardware/precision choice, PEFT and SFT configuration, model loading, the guards on them;
- `session`: the SFTTrainer assembled with its callbacks, trained, and the final eval loss;
- `callbacks`: tokens/s, the NaN/inf guard, per-step MLflow metrics;
- `checkpoints`: fingerprinted checkpoint folder, resume decisions;
- `merge`: adapter + merged weights, the greedy equivalence check;
- `plots`: loss.csv and loss.png from the trainer's log history;
- `report`: reports/train (metrics.json, params.json and the loss curve).

What the train run logs to MLflow lives in `logicflow.tracking` (`log_train_inputs`, `log_train_outputs`).
"""
