"""Debug presets (conf/debug/): they compose with every experiment; fast, overfit, profile and anomaly runs
do what they promise on real small trainings (quick-start model on digits; every model in the slow test)."""

import gzip
import json
import logging

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from arlif.runner.checkpoint import load_checkpoint
from arlif.runner.config import CONF_DIR, resolve, validate
from arlif.runner.config import compose as compose_run
from arlif.runner.debugging import AnomalyFound, fixed_batches_loader
from arlif.errors import ConfigError
from arlif.neurons import neuron_layers
from arlif.runner.build import build_model
from arlif.runner.evaluation import evaluate_checkpoint
from arlif.runner.training import train
from arlif.runner.profiling import CATEGORIES

DEBUG_PRESETS = ("fast", "overfit", "profile", "anomaly")
# Every experiment preset (their building blocks, the recipes, are in conf/recipe/, outside the selectable group).
EXPERIMENTS = sorted(str(p.relative_to(CONF_DIR / "experiment").with_suffix(""))
                     for p in (CONF_DIR / "experiment").rglob("*.yaml"))
QUICK = ["experiment=quickstart", "trainer.progress_bar=false"]
# The profile's categories must add up to the wall-clock time of the profiled steps within this share.
PROFILE_TOLERANCE = 0.05
KEPT = ("experiment", "dataset", "model", "neuron", "loss", "optimizer", "T", "batch_size", "seed")


def check_debug_presets(experiments):
    """Each preset sets its debug keys on top of the experiment and leaves the experiment itself alone
    (compared with `anomaly`, which only switches anomaly detection on)."""
    assert {p.stem for p in (CONF_DIR / "debug").glob("*.yaml")} == set(DEBUG_PRESETS)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for preset in DEBUG_PRESETS:  # the run folder, once: it does not depend on the experiment
            run_dir = compose(config_name="config", overrides=["experiment=quickstart", f"debug={preset}"],
                              return_hydra_config=True).hydra.run.dir
            assert run_dir.startswith(f"outputs/debug/{preset}-") or preset == "anomaly", run_dir
        for experiment in experiments:
            configs = {preset: compose(config_name="config", overrides=[f"experiment={experiment}", f"debug={preset}"])
                       for preset in DEBUG_PRESETS}
            base = configs["anomaly"]
            assert base.trainer.detect_anomaly and not any(configs[p].trainer.detect_anomaly for p in DEBUG_PRESETS[:3])
            for preset, cfg in configs.items():
                validate(resolve(cfg))
                assert all(cfg[key] == base[key] for key in KEPT), (experiment, preset)
                t = cfg.trainer
                if preset != "anomaly":
                    assert cfg.logger.name == "none", (experiment, preset)
                if preset == "fast":
                    assert (t.epochs, t.limit_train_batches, t.limit_test_batches, t.num_workers) == (1, 2, 2, 0)
                elif preset == "overfit":
                    assert t.overfit_batches == 2 and t.epochs >= 50
                elif preset == "profile":
                    assert (t.epochs, t.profile_warmup, t.profile_steps) == (1, 3, 5)


def test_every_debug_preset_composes_with_an_experiment_of_each_kind():
    """The first preset of each experiment folder (quick start, Table 1, Table 2, released code, comparisons)."""
    check_debug_presets(sorted({e.rpartition("/")[0]: e for e in reversed(EXPERIMENTS)}.values()))


@pytest.mark.slow
def test_every_debug_preset_composes_with_every_experiment():
    check_debug_presets(EXPERIMENTS)


@pytest.mark.parametrize("override", ["trainer.overfit_batches=0", "trainer.profile_steps=-1",
                                      "trainer.profile_warmup=1.5", "trainer.detect_anomaly=maybe"])
def test_debug_keys_are_checked(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=key):
        validate(resolve(compose_run([*QUICK, override])))


def test_fast_run_trains_two_batches_and_its_checkpoint_evaluates(tmp_path):
    summary = train(compose_run([*QUICK, "debug=fast"]), tmp_path)
    assert summary["status"] == "finished" and summary["epochs_completed"] == 1
    rows = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 1
    state = load_checkpoint(tmp_path / "last.pt")
    steps = {int(s["step"]) for s in state["optimizer"]["state"].values()}
    assert steps == {2}  # two optimizer steps: two training batches
    overrides = ["trainer.device=cpu"]
    result = evaluate_checkpoint(compose_run([f"checkpoint={tmp_path}", *overrides], "eval"), tmp_path / "eval",
                                 overrides)
    assert result["test_samples"] == 2 * 64 and result["test_acc"] == pytest.approx(json.loads(rows[0])["test_acc"])


def test_fixed_batches_are_the_same_every_epoch_with_augmentation_frozen():
    from PIL import Image

    from arlif.data.static import cifar_transforms

    cfg = resolve(compose_run(["experiment=table1/cifar10_resnet18_t4", "debug=overfit", "batch_size=4"]))
    train_tf, _, _ = cifar_transforms(cfg.dataset)
    images = [Image.fromarray((torch.rand(32, 32, 3) * 255).byte().numpy()) for _ in range(10)]

    class Augmented(torch.utils.data.Dataset):  # PIL images through the published CIFAR-10 training transform
        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            return train_tf(images[i]), i

    data = Augmented()
    torch.manual_seed(0)
    assert not torch.equal(data[0][0], data[0][0])  # the transform is random
    loader = fixed_batches_loader(data, cfg)
    epochs = []
    for epoch in (1, 2):
        loader.batch_sampler.start(epoch)
        epochs.append(list(loader))
    assert len(epochs[0]) == 2 and [y.tolist() for _, y in epochs[0]] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(epochs[0], epochs[1]))
    with pytest.raises(ConfigError, match="trainer.overfit_batches=3"):
        fixed_batches_loader(data, OmegaConf.merge(cfg, {"trainer": {"overfit_batches": 3}}))


# One batch of 16 digits; the quick-start model fits it in about 10 steps.
OVERFIT = [*QUICK, "debug=overfit", "batch_size=16", "trainer.overfit_batches=1", "optimizer.lr=0.01"]


def test_overfit_reaches_100_percent_on_the_quickstart_model(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="arlif.runner.debugging"):
        summary = train(compose_run([*OVERFIT, "trainer.epochs=20"]), tmp_path)
    verdict = summary["overfit"]
    assert verdict["reached_100"] and verdict["final_train_acc"] == 100.0 and verdict["samples"] == 16
    accuracies = [json.loads(line)["train_acc"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert accuracies[0] < 100.0 and verdict["first_epoch_at_100"] == accuracies.index(100.0) + 1
    assert json.loads((tmp_path / "summary.json").read_text())["overfit"] == verdict
    assert any("overfit check passed" in r.getMessage() for r in caplog.records)


def test_overfit_reports_failure_when_no_gradient_reaches_the_weights(tmp_path, caplog):
    """Neurons that never fire (threshold 1e6) pass no surrogate gradient and give the readout only zeros."""
    with caplog.at_level(logging.INFO, logger="arlif.runner.debugging"):
        summary = train(compose_run([*OVERFIT, "trainer.epochs=5", "neuron.v_threshold=1e6"]), tmp_path)
    verdict = summary["overfit"]
    assert not verdict["reached_100"] and verdict["first_epoch_at_100"] is None
    assert verdict["best_train_acc"] <= 25.0  # one class predicted for all: chance level
    assert any(r.levelno == logging.WARNING and "overfit check FAILED" in r.getMessage() for r in caplog.records)


def profile_run(run_dir, *overrides):
    cfg = compose_run([*QUICK, "debug=profile", "batch_size=16", "trainer.profile_warmup=1",
                       "trainer.profile_steps=2", *overrides])
    summary = train(cfg, run_dir)
    assert summary["status"] == "finished"
    return cfg, json.loads((run_dir / "profile" / "profile.json").read_text())


def test_profile_adds_up_and_attributes_time_and_memory(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="arlif.runner.training"):
        cfg, fused = profile_run(tmp_path / "fused")
    folder = tmp_path / "fused" / "profile"
    trace = json.loads(gzip.open(folder / "trace.json.gz").read())
    names = {e.get("name") for e in trace["traceEvents"]}
    layers = [name for name, _ in neuron_layers(build_model(cfg))]
    assert {f"neuron: {layer}" for layer in layers} <= names and any(str(n).startswith("ProfilerStep") for n in names)
    assert fused["neuron_backend"] == "cpu" and fused["profiled_steps"] == 2

    times = fused["time_ms_per_step"]
    assert set(times) == set(CATEGORIES)
    total = sum(t["cpu"] for t in times.values())
    assert total == pytest.approx(fused["wall_ms_per_step"], rel=PROFILE_TOLERANCE)
    for category in ("convolution", "batch norm", "neuron", "loss", "optimizer", "data loading"):
        assert times[category]["cpu"] > 0, category
    assert list(fused["neuron_layers_ms_per_step"]) == layers
    assert all(t["forward"] > 0 and t["backward"] > 0 for t in fused["neuron_layers_ms_per_step"].values())
    assert fused["images_per_s"] == pytest.approx(16 * 1000 / fused["wall_ms_per_step"], rel=0.01)
    assert "category" in (folder / "profile.txt").read_text()
    assert any("convolution" in r.getMessage() and "kept for backward" in r.getMessage() for r in caplog.records)

    saved = fused["saved_for_backward_bytes"]
    assert saved["total"] == sum(saved[c] for c in CATEGORIES) and saved["convolution"] > 0
    # The fused ARLIF keeps its fp32 input and one flag byte per neuron-step (docs/kernels.md); the
    # step-by-step reference loop keeps its intermediate tensors instead.  A storage counts for its first
    # saver, so the reference's spikes (saved by the neuron, then by the next conv) count as neuron memory.
    _, reference = profile_run(tmp_path / "reference", "neuron.backend=reference")
    assert reference["neuron_backend"] == "reference"
    assert reference["saved_for_backward_bytes"]["neuron"] > 3 * saved["neuron"]
    assert reference["saved_for_backward_bytes"]["batch norm"] == saved["batch norm"]


def test_profile_needs_enough_batches(tmp_path):
    with pytest.raises(ConfigError, match="trainer.profile_steps=500"):
        train(compose_run([*QUICK, "debug=profile", "trainer.profile_steps=500"]), tmp_path)
    assert not (tmp_path / "last.pt").exists()


def test_anomaly_detection_names_the_backward_op_that_made_a_nan(tmp_path):
    """A learning rate of 1e30 blows the weights up after one step; the next backward returns nan."""
    cfg = compose_run([*QUICK, "debug=[fast,anomaly]", "batch_size=16", "optimizer.lr=1e30"])
    with pytest.warns(UserWarning, match="Traceback of forward call"), \
            pytest.raises(AnomalyFound, match=r"Function '(\w+Backward\w*|[\w:<>() ]+NeuronFunction>)' returned nan"):
        train(cfg, tmp_path)
    assert not torch.is_anomaly_enabled()  # switched off again


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("model,extra", [("resnet18", ["trainer.precision=bf16"]), ("vgg11", []), ("vgg13", []),
                                         ("vggsnn", ["dataset.temporal=true", "neuron=lif_soft"]),
                                         ("quickcnn", ["neuron=arlif_fixed_both"])])
def test_profile_works_with_every_model_backend_and_precision(tmp_path, model, extra, backend):
    cfg = compose_run(["dataset=synthetic", "dataset.image_size=32", "dataset.train_size=16", "dataset.test_size=4",
                       f"model={model}", f"neuron.backend={backend}", "debug=profile", "batch_size=4", "T=2",
                       "trainer.profile_warmup=1", "trainer.profile_steps=2", "trainer.progress_bar=false", *extra])
    assert train(cfg, tmp_path)["status"] == "finished"
    report = json.loads((tmp_path / "profile" / "profile.json").read_text())
    total = sum(t["cpu"] for t in report["time_ms_per_step"].values())
    assert total == pytest.approx(report["wall_ms_per_step"], rel=PROFILE_TOLERANCE)
    assert list(report["neuron_layers_ms_per_step"]) == [name for name, _ in neuron_layers(build_model(cfg))]
    assert min(report["time_ms_per_step"][c]["cpu"] for c in ("convolution", "batch norm", "neuron")) > 0
    assert report["saved_for_backward_bytes"]["neuron"] > 0
