"""Helpers the test modules import (`from helpers import tiny_run`); fixtures live in conftest.py."""

TINY_RUN = {"dataset": "synthetic", "model": "quickcnn", "logger": "none", "dataset.image_size": 8,
            "dataset.train_size": 16, "dataset.test_size": 8, "trainer.num_workers": 0, "trainer.epochs": 1,
            "batch_size": 8, "T": 2}


def tiny_run(*overrides: str) -> list[str]:
    """Overrides for a real training of a few seconds: synthetic 8×8 data, quickcnn, T=2, no logger and no
    loader workers; `overrides` ("key=value") replace or add keys."""
    values = dict(TINY_RUN)
    for override in overrides:
        key, _, value = override.partition("=")
        values[key] = value
    return [f"{key}={value}" for key, value in values.items()]
