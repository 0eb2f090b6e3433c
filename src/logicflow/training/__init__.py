"""Pieces of the train stage (`logicflow.stages.train` wires them):

- `data`: clean rows -> chat conversations, token statistics and the data guards;
- `trainer`: hardware/precision choice, PEFT and SFT configuration, model loading, the guards on them;
- `callbacks`: tokens/s, the NaN/inf guard, per-step MLflow metrics;
- `checkpoints`: fingerprinted checkpoint folder, resume decisions;
- `merge`: adapter + merged weights, the greedy equivalence check;
- `plots`: loss.csv and loss.png from the trainer's log history.
"""
