"""The training pipeline end to end on synthetic data: files, eval, resume, validation split, W&B."""

import json
import logging
import struct
import subprocess
import sys
import time

import pytest

from arlif.runner.checkpoint import load_checkpoint
from arlif.runner.config import CONF_DIR, compose
from arlif.errors import CheckpointError
from arlif.neurons import neuron_layers
from arlif.runner.optim import build_optimizer
from arlif.runner.build import build_model
from arlif.runner.evaluation import evaluate_checkpoint
from arlif.runner.training import train
from arlif.runner.tracking import WandbRun
from helpers import tiny_run

TINY = tiny_run("trainer.epochs=2", "batch_size=16", "dataset.train_size=64", "dataset.test_size=32",
                "dataset.noise=3.0")
PER_EPOCH = {"epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "epoch_time_s", "images_per_s",
             "firing_rate", "firing_rates", "alpha", "beta"}
TIMING = ("epoch_time_s", "images_per_s")


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_timing(rows):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def test_cli_train_then_eval(tmp_path):
    run_dir, eval_dir = tmp_path / "run", tmp_path / "eval"
    cli = dict(cwd=CONF_DIR.parent, capture_output=True, text=True, timeout=300)
    out = subprocess.run([sys.executable, "train.py", *TINY, f"hydra.run.dir={run_dir}"], **cli)
    assert out.returncode == 0, out.stderr
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "last.pt", "best.pt"):
        assert (run_dir / name).is_file(), name

    summary = json.loads((run_dir / "summary.json").read_text())
    rows = read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2] and PER_EPOCH <= set(rows[0])
    best = max(rows, key=lambda r: r["test_acc"])
    assert summary["test_acc_best"] == best["test_acc"] and summary["best_epoch"] == best["epoch"]
    assert summary["test_acc_final"] == rows[-1]["test_acc"]
    assert summary["epochs_completed"] == 2 and summary["finished"] and summary["experiment"] == \
        "synthetic-quickcnn-arlif-T2"
    assert set(rows[0]["alpha"]) == set(rows[0]["firing_rates"]) and len(rows[0]["alpha"]) == 3

    ckpt = load_checkpoint(run_dir / "last.pt")
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "best", "rng", "config"} <= set(ckpt)
    assert ckpt["epoch"] == 2 and ckpt["config"]["T"] == 2

    out = subprocess.run([sys.executable, "eval.py", f"checkpoint={run_dir}", f"hydra.run.dir={eval_dir}"], **cli)
    assert out.returncode == 0, out.stderr
    result = json.loads((eval_dir / "eval.json").read_text())
    assert result["test_acc"] == pytest.approx(best["test_acc"])  # best.pt is the best test epoch
    assert result["firing_rates"] == pytest.approx(best["firing_rates"])
    assert result["alpha"] == pytest.approx(best["alpha"]) and result["params"] == summary["params"]


def test_event_frames_with_validation_split_and_eval_overrides(tmp_path):
    cfg = compose([*TINY, "dataset.temporal=true", "dataset.val_fraction=0.25", "neuron=lif_soft"])
    summary = train(cfg, tmp_path)
    rows = read_metrics(tmp_path)
    assert {"val_loss", "val_acc"} <= set(rows[0]) and rows[0]["alpha"] == {}  # LIF has no α
    best_val = max(rows, key=lambda r: r["val_acc"])
    assert summary["val_best_epoch"] == best_val["epoch"]
    assert summary["test_acc_at_val_best"] == best_val["test_acc"]
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == best_val["epoch"]  # selected on validation

    overrides = ["trainer.limit_test_batches=1"]
    result = evaluate_checkpoint(compose([f"checkpoint={tmp_path / 'last.pt'}", *overrides], "eval"),
                                 tmp_path / "eval", overrides)
    assert result["test_samples"] == 16 and result["neuron"] == "lif_soft"


def test_resume_continues_exactly(tmp_path):
    steady, broken = tmp_path / "steady", tmp_path / "broken"
    tiny = [*TINY, "trainer.epochs=3", "model.dropout=0.3"]  # dropout: the torch generator must be restored
    train(compose(tiny), steady)
    # the "killed" run stopped after epoch 2, having logged epoch 3 (never checkpointed) and half a line
    train(compose([*tiny, "trainer.epochs=2", "scheduler.t_max=3"]), broken)
    with open(broken / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 3, "test_acc": -1.0}) + '\n{"epoch": 4, "te')
    with pytest.raises(CheckpointError, match="trainer.resume=auto"):
        train(compose(tiny), broken)
    summary = train(compose([*tiny, "trainer.resume=auto"]), broken)
    assert without_timing(read_metrics(broken)) == without_timing(read_metrics(steady))
    assert summary["epochs_completed"] == 3 and summary["finished"]


def test_weight_decay_exemption_groups():
    cfg = compose([*TINY, "optimizer.decay_all_params=false"])
    model = build_model(cfg)
    groups = build_optimizer(model, cfg).param_groups
    no_decay = next(g for g in groups if g["weight_decay"] == 0.0)["params"]
    alpha = [m.alpha for _, m in neuron_layers(model)]
    assert all(any(a is p for p in no_decay) for a in alpha)
    assert all(p.ndim > 1 for g in groups if g["weight_decay"] > 0 for p in g["params"])


def wandb_records(path):
    """Records of a .wandb file (LevelDB log format: 32 KiB blocks of CRC/length/type-framed chunks)."""
    from wandb.proto import wandb_internal_pb2

    data, pos, chunk, block = path.read_bytes(), 7, b"", 32768  # 7: the file's ":W&B" header
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer too small for a header: padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = chunk + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # FULL or LAST chunk ends a record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            yield record
            chunk = b""


def finished_wandb_records(path, timeout_s=60.0):
    """All records once the W&B service (a separate process) has written the run's exit record."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = list(wandb_records(path))
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.5)


def test_wandb_offline_run_holds_config_and_history(tmp_path):
    train(compose([*TINY, "logger=wandb", "logger.mode=offline", "experiment.tags=[unit]"]), tmp_path)
    files = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    records = finished_wandb_records(files[0])
    history, run = [], None
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                            for item in record.history.item})
        elif kind == "run":
            run = record.run
    assert run.run_group == "synthetic-quickcnn-arlif-T2" and list(run.tags) == ["unit"]
    assert json.loads(next(i.value_json for i in run.config.update if i.key == "T")) == 2
    rows = read_metrics(tmp_path)
    assert [h["epoch"] for h in history] == [1, 2]
    for h, row in zip(history, rows):
        assert h["test_acc"] == pytest.approx(row["test_acc"])
        for layer, value in row["alpha"].items():
            assert h[f"alpha/{layer}"] == pytest.approx(value)
            assert h[f"firing_rates/{layer}"] == pytest.approx(row["firing_rates"][layer])


def test_wandb_failure_warns_once_and_training_goes_on(tmp_path, monkeypatch, caplog):
    import wandb

    def broken(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(wandb, "init", broken)
    with caplog.at_level(logging.WARNING, logger="arlif.runner.tracking"):
        summary = train(compose([*TINY, "logger=wandb", "logger.mode=online"]), tmp_path)
    assert summary["epochs_completed"] == 2
    warnings = [r.getMessage() for r in caplog.records if "W&B" in r.getMessage()]
    assert len(warnings) == 2  # online failed -> offline; offline failed -> without W&B
    assert "logging offline" in warnings[0] and "continuing without W&B" in warnings[1]


def test_wandb_logging_error_disables_it(tmp_path, caplog):
    run = WandbRun(compose([*TINY, "logger=wandb", "logger.mode=offline"]), tmp_path)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    wandb_run = run.run
    wandb_run.log = fail
    try:
        with caplog.at_level(logging.WARNING, logger="arlif.runner.tracking"):
            run.log({"epoch": 1}, step=1)
            run.log({"epoch": 2}, step=2)
    finally:
        wandb_run.finish()  # don't leave a broken active run for later tests in this process
    assert run.run is None and len(caplog.records) == 1
