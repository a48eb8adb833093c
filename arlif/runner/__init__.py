"""The runner: a composed Hydra config becomes a run folder (train.py, eval.py); docs/architecture.md maps its modules."""
