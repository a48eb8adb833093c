"""Mutation check: does the test suite notice a deliberate bug in the core modules?

Each mutant below is one small bug: a file, an exact snippet of its source, the snippet's
replacement and the tests that should fail because of it.  The check copies the repository
(the files `git ls-files` reports, tracked or new but not ignored) into a temporary folder,
applies one mutant at a time there, runs only that mutant's tests with pytest, and puts the
file back.  A mutant is caught when its tests fail and survives when they pass.  A table of
the results and the score (caught / all) is printed at the end.

    python scripts/mutation_check.py                 # every mutant (about 45 min on 2 busy cores)
    python scripts/mutation_check.py --only NAME ... # some of them
    python scripts/mutation_check.py --list          # the mutants and their tests
    python scripts/mutation_check.py --check         # only check that every snippet is still there

The mapped tests first run once without any mutant: they must pass, or nothing is measured.
Exit status: 0 when every mutant was caught, 1 when one survived, 2 when a snippet no longer
occurs exactly once in its file (the list must follow the code, not rot silently; the default
suite checks this too, tests/test_mutation_list.py) or the tests fail without a mutant.  A survivor points at a missing test:
add the test that catches it.  docs/testing.md records the last score.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 1200  # per mutant; a mutant whose tests hang counts as caught

SIGTERM_RESUME = "tests/test_faults.py::test_sigterm_saves_mid_epoch_exits_3_and_resumes_exactly"
DDP_RESUME = "tests/test_distributed.py::test_ddp_stop_on_one_rank_then_exact_resume"
EPOCH_ORDER = "tests/test_resume_randomness.py::test_every_epoch_draws_its_own_sample_order"
SCALER = "tests/test_resume_randomness.py::test_resume_restores_the_grad_scaler"
HOLDERS = ("tests/test_run_safety.py::test_stale_holders",
           "tests/test_run_safety.py::test_a_holder_runs_only_while_its_own_process_does")
TRIAL_ENDS = "tests/test_search.py::test_every_way_a_trial_ends_is_told_to_optuna"
CLAIMS = "tests/test_search.py::test_a_rerun_claims_trials_by_how_their_last_sweep_left_them"
ORPHANS = "tests/test_search.py::test_a_trial_is_orphaned_when_its_own_sweep_process_is_gone"
CHECKSUMS = "tests/test_checksums.py"
PROFILE = "tests/test_debug.py::test_profile_adds_up_and_attributes_time_and_memory"
CURVES = "tests/test_plots.py::test_groups_band_over_seeds_and_diverged_runs_marked"
COMPETITORS = "tests/test_competitor_neurons.py"
SJ_EQUALITY = "tests/test_spikingjelly_equality.py"
PUBLISHED_PRESET = "tests/test_compare_presets.py::test_published_preset_has_that_papers_recipe"
ANTIALIAS = "tests/test_data_events.py::test_antialiasing_is_part_of_the_cache_key_and_changes_the_frames"
CUTOUT_DRAWS = "tests/test_data_static.py::test_clif_cutout_draws_follow_torchtoolbox_defaults"
VERDICT_BY_HAND = "tests/test_tables.py::test_verdict_agrees_with_a_hand_computed_welch_interval"
CUTOUT_PIPELINE = ("tests/test_data_static.py::"
                   "test_clif_recipe_cuts_the_8bit_image_after_the_crop_and_before_flip_and_normalize")
RELEASED_CODE_PRESET = ("tests/test_compare_presets.py::"
                        "test_released_code_preset_is_the_paper_preset_with_the_codes_differences")
SECOND_AUDIT = "tests/test_second_audit.py"
KERNELS = "tests/test_kernels.py"


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str  # relative to the repository root
    original: str  # must occur exactly once in the file
    replacement: str
    tests: tuple[str, ...]  # pytest paths or node ids, cheapest first (pytest stops at the first failure)


MUTANTS = (
    # The four survivors of the first measurement (issue 14).
    Mutant("resume-skips-torch-rng", "arlif/runner/runtime.py",
           'torch.set_rng_state(state["torch"])', "torch.get_rng_state()",
           (SIGTERM_RESUME,)),
    Mutant("monitor-rate-times-T", "arlif/instruments/firing_rates.py",
           "module.firing_element_count.add_(out.numel())", "module.firing_element_count.add_(out[0].numel())",
           ("tests/test_monitor.py",)),
    Mutant("loss-weights-swapped", "arlif/runner/build.py",
           "return TETMSELoss(c.tet_weight, c.mse_weight,", "return TETMSELoss(c.mse_weight, c.tet_weight,",
           ("tests/test_wiring.py",)),
    Mutant("shape-error-escapes-raw", "arlif/runner/checkpoint.py",
           "    if not problems:\n        return\n", "    return\n",
           ("tests/test_checkpoint_shapes.py",)),
    # Resume and random state.
    Mutant("resume-skips-python-rng", "arlif/runner/runtime.py",
           'random.setstate(state["python"])', "random.getstate()",
           ("tests/test_resume_randomness.py",)),
    Mutant("resume-skips-numpy-rng", "arlif/runner/runtime.py",
           'np.random.set_state((n["kind"], n["keys"].numpy(), n["pos"], n["has_gauss"], n["gauss"]))',
           "np.random.get_state()",
           ("tests/test_resume_randomness.py",)),
    # The same bugs again, for each end-to-end resume test that must notice them on its own.
    Mutant("resume-skips-torch-rng-epoch-boundary", "arlif/runner/runtime.py",
           'torch.set_rng_state(state["torch"])', "torch.get_rng_state()",
           ("tests/test_pipeline.py::test_resume_continues_exactly",)),
    Mutant("resume-skips-torch-rng-ddp", "arlif/runner/runtime.py",
           'torch.set_rng_state(state["torch"])', "torch.get_rng_state()",
           (DDP_RESUME,)),
    Mutant("worker-augmentation-unseeded", "arlif/data/sample_seeds.py",
           "            seed_generators(seed)\n            return self.dataset[index]",
           "            return self.dataset[index]",
           (SIGTERM_RESUME,)),  # a SIGKILL resumes at an epoch boundary, where workers start afresh anyway
    Mutant("worker-augmentation-unseeded-ddp", "arlif/data/sample_seeds.py",
           "            seed_generators(seed)\n            return self.dataset[index]",
           "            return self.dataset[index]",
           (DDP_RESUME,)),
    Mutant("worker-augmentation-unseeded-unit", "arlif/data/sample_seeds.py",
           "        with seeded_generators(seed):\n            return self.dataset[index]",
           "        return self.dataset[index]",
           ("tests/test_resume_randomness.py::test_sample_draws_depend_on_the_epoch_and_position_only",)),
    Mutant("sample-seed-ignores-batch", "arlif/runner/distributed.py",
           "sample_seeds(len(batch), self.seed, self.epoch, r, b)", "sample_seeds(len(batch), self.seed, self.epoch, r)",
           ("tests/test_resume_randomness.py",)),
    Mutant("resume-retrains-done-batches", "arlif/runner/training.py",
           'self.train_loader.batch_sampler.start(epoch, resume["batches"] if resume else 0)',
           "self.train_loader.batch_sampler.start(epoch, 0)",
           (SIGTERM_RESUME,)),
    # Firing-rate monitor and its combination over processes.
    Mutant("monitor-mean-is-max", "arlif/instruments/firing_rates.py",
           "return sum(rates.values()) / len(rates) if rates else 0.0", "return max(rates.values()) if rates else 0.0",
           ("tests/test_monitor.py",)),
    Mutant("ddp-rates-not-sample-weighted", "arlif/runner/steps.py",
           "*(rates.get(name, 0.0) * seen for name in layers)", "*(rates.get(name, 0.0) for name in layers)",
           ("tests/test_monitor.py",)),
    # Loss.
    Mutant("loss-label-smoothing-dropped", "arlif/loss.py",
           "per_step_target,\n                              label_smoothing=self.label_smoothing)",
           "per_step_target,\n                              label_smoothing=0.0)",
           ("tests/test_loss.py",)),
    Mutant("loss-mse-summed", "arlif/loss.py",
           "F.mse_loss(logits, mse_target)", 'F.mse_loss(logits, mse_target, reduction="sum")',
           ("tests/test_loss.py",)),
    # Neurons and kernels.
    Mutant("arlif-reset-without-memory", "arlif/spikes/dynamics.py",
           "u = h - s * (vth + torch.sigmoid(r))", "u = h - s * vth",
           ("tests/test_neurons.py",)),
    Mutant("arlif-threshold-sign", "arlif/spikes/dynamics.py",
           "vth = spec.v_threshold + beta * torch.tanh(i)", "vth = spec.v_threshold - beta * torch.tanh(i)",
           ("tests/test_neurons.py",)),
    Mutant("surrogate-window-doubled", "arlif/spikes/surrogate.py",
           "(z.abs() <= self.width / 2)", "(z.abs() <= self.width)",
           ("tests/test_neurons.py",)),
    # The surrogate choice and the competitor neurons (issue 19).
    Mutant("spike-fires-at-threshold-always", "arlif/spikes/surrogate.py",
           "fired = z >= 0 if surrogate.fire_at_threshold else z > 0", "fired = z >= 0",
           (COMPETITORS,)),
    Mutant("triangle-surrogate-height", "arlif/spikes/surrogate.py",
           "clamp(min=0.0) / self.width ** 2", "clamp(min=0.0) / self.width",
           (COMPETITORS,)),
    Mutant("arctangent-slope-not-halved", "arlif/spikes/surrogate.py",
           "half = self.slope / 2", "half = self.slope",
           (SJ_EQUALITY,)),
    Mutant("tet-lif-fires-at-threshold", "arlif/neurons/__init__.py",
           'surrogate="triangle", fire_at_threshold=False)', 'surrogate="triangle", fire_at_threshold=True)',
           (COMPETITORS,)),
    Mutant("clif-reset-without-complement", "arlif/neurons/clif.py",
           "v = h - s * (self.v_threshold + torch.sigmoid(m))", "v = h - s * self.v_threshold",
           (SJ_EQUALITY,)),
    Mutant("clif-memory-not-decayed", "arlif/neurons/clif.py",
           "m = m * torch.sigmoid(h / self.tau) + s", "m = m + s",
           (COMPETITORS,)),
    Mutant("plif-reset-flipped", "arlif/neurons/plif.py",
           "v = h * (1.0 - (s.detach() if self.detach_reset else s))",
           "v = h * (s.detach() if self.detach_reset else s)",
           (COMPETITORS,)),
    Mutant("plif-detach-reset-ignored", "arlif/neurons/plif.py",
           "(s.detach() if self.detach_reset else s)", "s",
           (SJ_EQUALITY,)),
    Mutant("glif-soft-reset-wrong-gate", "arlif/neurons/glif.py",
           "- (1.0 - gamma) * v_subreset * s", "- gamma * v_subreset * s",
           (COMPETITORS,)),
    Mutant("glif-conductance-of-step-0", "arlif/neurons/glif.py",
           "torch.sigmoid(self.conduct[t])", "torch.sigmoid(self.conduct[0])",
           (SJ_EQUALITY,)),
    Mutant("glif-fires-at-threshold", "arlif/neurons/glif.py",
           "fire_at_threshold: bool = False, backend", "fire_at_threshold: bool = True, backend",
           (COMPETITORS,)),
    Mutant("psn-bias-dropped", "arlif/neurons/psn.py",
           "torch.addmm(bias.to(x.dtype), weight.to(x.dtype), x.flatten(1))",
           "torch.mm(weight.to(x.dtype), x.flatten(1))",
           (COMPETITORS,)),
    Mutant("masked-psn-band-one-too-wide", "arlif/neurons/masked_psn.py",
           "torch.triu(ones, -(order - 1))", "torch.triu(ones, -order)",
           (SJ_EQUALITY,)),
    Mutant("masked-psn-schedule-rate-ignored", "arlif/neurons/masked_psn.py",
           "self.lambda_init + self.lambda_rate * epoch", "self.lambda_init + epoch",
           (COMPETITORS,)),
    Mutant("masked-psn-schedule-not-run", "arlif/runner/training.py",
           "neuron.on_epoch(epoch - 1, self.cfg.trainer.epochs)", "pass",
           (COMPETITORS + "::test_training_runs_the_masked_psn_schedule",)),
    Mutant("sliding-psn-weights-reversed", "arlif/neurons/sliding_psn.py",
           "self.weight[self.order - n:]", "self.weight[:n]",
           (COMPETITORS,)),
    Mutant("arlif-psn-code-memory-sign", "arlif/neurons/arlif_psn_code.py",
           "(2.0 * s - 1.0) * torch.sigmoid(i)", "s * torch.sigmoid(i)",
           (COMPETITORS,)),
    Mutant("arlif-psn-code-reset-without-threshold-term", "arlif/neurons/arlif_psn_code.py",
           "u = h - s * (vth + torch.sigmoid(r))", "u = h - s * (self.v_threshold + torch.sigmoid(r))",
           (COMPETITORS,)),
    Mutant("neuron-log-mean-is-max", "arlif/runner/steps.py",
           '{"mean": value.mean().item()', '{"mean": value.max().item()',
           (COMPETITORS,)),
    Mutant("build-passes-fixed-neuron-keys", "arlif/runner/build.py",
           '.items() if k not in NOT_NEURON_OPTIONS}',
           '.items() if k in ("decay", "v_threshold", "surrogate_width", "backend")}',
           (COMPETITORS,)),
    Mutant("kernel-alpha-beta-grads-swapped", "arlif/kernels/function.py",
           "return (grad_x, grad_alpha if want_alpha else None, grad_beta if want_beta else None,",
           "return (grad_x, grad_beta if want_alpha else None, grad_alpha if want_beta else None,",
           ("tests/test_kernels.py",)),
    # torch.compile: the compiled step loop, fused kernels traced into a graph, trainer.compile.
    Mutant("compiled-loop-unchecked", "arlif/kernels/compiled.py",
           "lambda: _check(neuron, x), explicit,", "lambda: None, explicit,",
           ("tests/test_compiled_backend.py::test_a_failed_check_falls_back_once_under_auto_and_stops_an_explicit_backend",)),
    Mutant("compiled-loop-per-layer-shape", "arlif/kernels/compiled.py",
           "for dim in range(1, x.dim()):", "for dim in range(1, 1):",
           ("tests/test_compiled_backend.py::test_compiled_matches_the_eager_loop_with_one_graph_for_two_layer_shapes",)),
    Mutant("traced-engine-unchecked", "arlif/kernels/__init__.py",
           "if not selfcheck.passes(chosen, engine, device, spec, dtype, grads, explicit=backend != \"auto\"):",
           "if False:",
           ("tests/test_compile.py::test_the_self_check_runs_before_a_traced_first_use",)),
    Mutant("compile-warm-up-trains", "arlif/runner/compiling.py",
           "        trainer.load_state_dict(saved)\n", "",
           ("tests/test_trainer_compile.py::test_compiled_training_matches_eager_and_times_its_compile_apart",)),
    # Energy.
    Mutant("energy-ac-costs-a-mac", "arlif/instruments/energy.py",
           "E_AC_PJ = 0.9", "E_AC_PJ = 4.6",
           ("tests/test_energy.py",)),
    # Data splits and sharding.
    Mutant("test-shards-overlap", "arlif/runner/distributed.py",
           "self.indices = range(rank(), num_samples, world_size())", "self.indices = range(rank(), num_samples)",
           ("tests/test_distributed.py::test_samplers_split_the_data_without_padding",)),
    Mutant("digits-split-moves-with-seed", "arlif/data/digits.py",
           "random_state=SPLIT_SEED", "random_state=cfg.seed",
           ("tests/test_bundled_data.py::test_digits_fixed_stratified_split",)),
    Mutant("dvs-test-files-from-the-end", "arlif/data/events.py",
           "test += [EventSample(p, label) for p in paths[:test_per_class]]",
           "test += [EventSample(p, label) for p in paths[-test_per_class:]]",
           ("tests/test_data_events.py::test_cifar10_dvs_split_labels_and_frames",)),
    Mutant("val-split-moves-with-seed", "arlif/runner/build.py",
           "generator=torch.Generator().manual_seed(VAL_SPLIT_SEED)", "generator=torch.Generator().manual_seed(cfg.seed)",
           ("tests/test_wiring.py::test_validation_split_does_not_move_with_seed",)),
    # Comparison architectures, normalisation, dropout, loss and reports (issue 21).
    Mutant("tdbn-without-threshold-scale", "arlif/models/layers.py",
           "gain = self.alpha * self.v_threshold", "gain = self.alpha",
           ("tests/test_models.py::test_tdbn_equals_hand_computed_normalisation",)),
    Mutant("tdbn-statistics-per-step", "arlif/models/layers.py",
           'if self.bn_mode == "per_step" and self.training:', 'if self.bn_mode in ("per_step", "tdbn") and self.training:',
           ("tests/test_models.py::test_tdbn_equals_hand_computed_normalisation",)),
    Mutant("tebn-one-scale-for-all-steps", "arlif/models/layers.py",
           "y = y * self.scale.view(-1, 1, 1, 1, 1)", "y = y * self.scale.mean()",
           ("tests/test_models.py::test_tebn_equals_hand_computed_normalisation",)),
    Mutant("step-dropout-shares-its-mask", "arlif/models/layers.py",
           'shape = x.shape[1:] if self.mask == "sequence" else x.shape', "shape = x.shape[1:]",
           ("tests/test_models.py::test_step_dropout_draws_a_mask_per_step_and_the_classifier_dropout_is_wired",)),
    Mutant("classifier-dropout-is-the-block-dropout", "arlif/models/__init__.py",
           "classifier_dropout=partial(SeqDropout, classifier_dropout, dropout_mask)",
           "classifier_dropout=partial(SeqDropout, dropout, dropout_mask)",
           ("tests/test_models.py::test_step_dropout_draws_a_mask_per_step_and_the_classifier_dropout_is_wired",)),
    Mutant("residual-branch-without-tdbn-alpha", "arlif/models/resnet_postact.py",
           "self.bn2 = parts.norm(out_ch, alpha=RESIDUAL_ALPHA)", "self.bn2 = parts.norm(out_ch)",
           ("tests/test_models.py::test_tdbn_scales_the_residual_branches_of_a_postact_block_by_one_over_root_two",)),
    Mutant("mean-ce-on-the-first-step", "arlif/loss.py",
           "F.cross_entropy(logits.float().mean(0), soft,", "F.cross_entropy(logits.float()[0], soft,",
           ("tests/test_loss.py::test_mean_output_ce_with_labels_soft_targets_and_smoothing",)),
    Mutant("neuron-lr-scale-ignored", "arlif/runner/optim.py",
           '"lr": c.lr * scale}', '"lr": c.lr}',
           ("tests/test_wiring.py::test_neuron_parameters_get_their_own_weight_decay_and_learning_rate",)),
    Mutant("crop-flip-keeps-cutout", "arlif/data/static.py",
           'if ds.recipe == "classic":', 'if ds.recipe in ("classic", "crop_flip"):',
           ("tests/test_data_static.py::test_cifar_crop_flip_recipe_only_crops_and_flips",)),
    Mutant("energy-real-input-counted-as-spikes", "arlif/instruments/energy.py",
           "spikes = i > 0 and float(t.low) >= 0.0 and float(t.high) <= 1.0", "spikes = i > 0",
           ("tests/test_energy.py::test_a_layer_fed_real_values_costs_macs",)),
    Mutant("same-recipe-keeps-the-neuron-in-the-name", "arlif/reports/results.py",
           '"<neuron>" if part == neuron else part', "part",
           ("tests/test_tables.py::test_competitor_rows_published_rerun_and_same_recipe_beside_arlif",)),
    Mutant("published-number-dropped", "arlif/reports/results.py",
           '"published": cell.acc,', '"published": None,',
           ("tests/test_tables.py::test_competitor_rows_published_rerun_and_same_recipe_beside_arlif",)),
    # What an epoch boundary and a resume must carry (issue 22): sample order, scaler, scheduler, optimizer,
    # the interrupted epoch's loss and accuracy sums.
    Mutant("epoch-order-ignores-epoch", "arlif/runner/distributed.py",
           "self.generator.manual_seed(self.seed + epoch + rank() * _RANK_SEED_STRIDE)",
           "self.generator.manual_seed(self.seed + rank() * _RANK_SEED_STRIDE)",
           (EPOCH_ORDER,)),
    Mutant("ddp-epoch-order-ignores-epoch", "arlif/runner/distributed.py",
           "            self.order.set_epoch(epoch)\n", "            pass\n",
           (EPOCH_ORDER,)),
    Mutant("sample-seed-ignores-epoch", "arlif/runner/distributed.py",
           "sample_seeds(len(batch), self.seed, self.epoch, r, b)", "sample_seeds(len(batch), self.seed, 0, r, b)",
           ("tests/test_resume_randomness.py::test_sample_draws_depend_on_the_epoch_and_position_only",)),
    Mutant("resume-skips-scaler", "arlif/runner/steps.py",
           'self.scaler.load_state_dict(state["scaler"])', 'state["scaler"]',
           (SCALER,)),
    Mutant("checkpoint-holds-a-fresh-scaler", "arlif/runner/steps.py",
           '"scaler": self.scaler.state_dict()}', '"scaler": torch.amp.GradScaler(self.device.type).state_dict()}',
           (SCALER,)),
    Mutant("resume-skips-scheduler", "arlif/runner/resume.py",
           'scheduler.load_state_dict(state["scheduler"])', 'state["scheduler"]',
           (SIGTERM_RESUME,)),
    Mutant("resume-skips-optimizer-state", "arlif/runner/steps.py",
           'load_optimizer_state(self.optimizer, state["optimizer"])', 'state["optimizer"]',
           ("tests/test_pipeline.py::test_resume_continues_exactly",)),
    Mutant("resume-drops-partial-loss", "arlif/runner/steps.py",
           'loss_sum = torch.tensor(p["loss_sum"], device=self.device, dtype=torch.float64)',
           "loss_sum = torch.tensor(0.0, device=self.device, dtype=torch.float64)",
           (SIGTERM_RESUME,)),
    Mutant("resume-drops-partial-correct", "arlif/runner/steps.py",
           'correct = torch.tensor(p["correct"], device=self.device, dtype=torch.int64)',
           "correct = torch.tensor(0, device=self.device, dtype=torch.int64)",
           (SIGTERM_RESUME,)),
    # Run lock: every rule that judges a holder alive or gone.
    Mutant("runlock-pid-alone", "arlif/runner/runlock.py",
           'if holder.get("process_start") and holder["process_start"] != process_start(pid):', "if False:",
           HOLDERS),
    Mutant("runlock-dead-pid-alive", "arlif/runner/runlock.py",
           "        if not process_runs(pid):\n", "        if False:\n",
           HOLDERS),
    Mutant("runlock-other-host-judged-by-pid", "arlif/runner/runlock.py",
           'if holder.get("host") == socket.gethostname() and holder.get("pid"):', 'if holder.get("pid"):',
           HOLDERS),
    Mutant("runlock-ignores-reboot", "arlif/runner/runlock.py",
           'if holder.get("boot_id") and holder["boot_id"] != _boot_id():', "if False:",
           HOLDERS),
    Mutant("runlock-heartbeat-never-stale", "arlif/runner/runlock.py",
           "    if heartbeat_age_s > STALE_AFTER_S:", "    if False:",
           HOLDERS),
    Mutant("runlock-requeue-same-restart", "arlif/runner/runlock.py",
           'theirs["restart"] < mine["restart"]', 'theirs["restart"] <= mine["restart"]',
           HOLDERS),
    Mutant("runlock-takes-over-a-live-holder", "arlif/runner/runlock.py",
           "reason = holder_gone(holder, age)", 'reason = holder_gone(holder, age) or "taken"',
           ("tests/test_run_safety.py::test_a_second_run_on_a_held_folder_exits_2_and_changes_nothing",)),
    Mutant("killed-run-reads-running", "arlif/runner/runlock.py",
           'if status == "running" and live_holder(run_dir) is None:', "if False:",
           ("tests/test_run_safety.py::test_sigkill_leaves_a_stale_lock_reported_killed_and_resume_proceeds",)),
    # Search: every state a trial can be told, every claim a rerun makes, the orphan rules, the report.
    Mutant("prune-at-last-epoch", "arlif/search/trial.py",
           "if epoch < self.epochs and self._trial.should_prune():", "if self._trial.should_prune():",
           ("tests/test_search.py::test_the_last_epoch_completes_a_trial_whatever_the_pruner",)),
    Mutant("pruned-trial-told-failed", "arlif/search/sweep.py",
           'state, reason = TrialState.PRUNED, summary.get("stop_reason")',
           'state, reason = TrialState.FAIL, summary.get("stop_reason")',
           (TRIAL_ENDS,)),
    Mutant("diverged-trial-told-pruned", "arlif/search/sweep.py",
           'elif status == "diverged":\n            state, reason = TrialState.FAIL,',
           'elif status == "diverged":\n            state, reason = TrialState.PRUNED,',
           (TRIAL_ENDS,)),
    Mutant("interrupted-trial-told-failed", "arlif/search/sweep.py",
           "        else:\n            return False\n        trial = live_trial",
           "        else:\n            state = TrialState.FAIL\n        trial = live_trial",
           (TRIAL_ENDS,)),
    Mutant("crashed-trial-left-running", "arlif/search/sweep.py",
           "        elif crash:\n", "        elif False:\n",
           (TRIAL_ENDS,)),
    Mutant("launcher-error-fails-a-live-run", "arlif/search/sweep.py",
           "if error is not None and crash is None and live_holder(run_dir) is None:",
           "if error is not None and crash is None:",
           (TRIAL_ENDS,)),
    Mutant("trial-without-objective-complete", "arlif/search/sweep.py",
           "state = TrialState.COMPLETE if value is not None else TrialState.FAIL", "state = TrialState.COMPLETE",
           (TRIAL_ENDS,)),
    Mutant("final-objective-reads-best", "arlif/search/study.py",
           'return None if last_epoch is None else last_epoch.get("val_acc")', 'return summary.get("val_acc_best")',
           (TRIAL_ENDS,)),
    Mutant("unlaunched-trial-resumed", "arlif/search/sweep.py",
           'if "overrides" not in frozen.user_attrs:', "if False:",
           (CLAIMS,)),
    Mutant("claim-adopts-a-trial-whose-run-runs", "arlif/search/sweep.py",
           "if live_holder(self.folder / SUBDIR.format(frozen.number)) is not None:", "if False:",
           (CLAIMS,)),
    Mutant("claim-reruns-an-ended-trial", "arlif/search/sweep.py",
           "if self._finish(study, storage, frozen.number):", "if False:",
           (CLAIMS,)),
    Mutant("claim-takes-a-live-sweeps-trial", "arlif/search/sweep.py",
           "if not is_orphan(frozen, STALE_BEATS * self.s.heartbeat_s):", "if False:",
           (CLAIMS,)),
    Mutant("orphan-pid-alone", "arlif/search/study.py",
           "if not process_runs(pid) or (start and start != process_start(pid)):", "if not process_runs(pid):",
           (ORPHANS,)),
    Mutant("orphan-dead-pid-alive", "arlif/search/study.py",
           "if not process_runs(pid) or (start and start != process_start(pid)):",
           "if start and start != process_start(pid):",
           (ORPHANS,)),
    Mutant("orphan-never-stale", "arlif/search/study.py",
           'return time.time() - stamp["time"] > stale_after_s', "return False",
           (ORPHANS,)),
    Mutant("report-without-hydra-keys", "arlif/search/report.py",
           'out = {"name": "optuna", "best_params": dict(best.params) if best else None, '
           '"best_value": best.value if best else None,', "out = {",
           ("tests/test_search.py::test_report_leads_with_hydras_optuna_sweeper_keys",)),
    # Kernel build cache: one build per torch installation.
    Mutant("kernel-cache-shared-across-torch-installs", "arlif/kernels/cpu.py",
           'sysconfig.get_config_var("EXT_SUFFIX"), *toolchain_paths()):', 'sysconfig.get_config_var("EXT_SUFFIX")):',
           ("tests/test_kernel_safety.py::test_environments_share_a_torch_installs_build_and_another_install_gets_its_own",)),
    # Checkpoint checksums.
    Mutant("load-skips-checksum", "arlif/runner/checkpoint.py",
           "sealed = checksum.verify(path)", "sealed = True",
           (CHECKSUMS,)),
    Mutant("checksum-skips-record-crcs", "arlif/runner/checksum.py",
           "            if value != crc:", "            if False:",
           (CHECKSUMS,)),
    Mutant("checksum-skips-header-digest", "arlif/runner/checksum.py",
           "        if found != expected:", "        if False:",
           (CHECKSUMS,)),
    Mutant("checksum-trailer-damage-accepted", "arlif/runner/checkpoint.py",
           "if not checksum.ends_as_archive(path):", "if False:",
           (CHECKSUMS,)),
    Mutant("save-without-checksum", "arlif/runner/checkpoint.py",
           "    checksum.seal(tmp)\n", "    pass\n",
           (CHECKSUMS,)),
    Mutant("save-trusts-torchs-crc-option", "arlif/runner/checkpoint.py",
           "torch.serialization.set_crc32_options(True)", "torch.serialization.set_crc32_options(computes)",
           (CHECKSUMS,)),
    # Learning curves.
    Mutant("curves-mean-is-max", "arlif/reports/curves.py",
           "[statistics.fmean(v) for v in per_epoch]", "[max(v) for v in per_epoch]",
           (CURVES,)),
    Mutant("curves-unfinished-run-unmarked", "arlif/reports/curves.py",
           "if run.status in STATUS_MARKERS and run.values.get(key):", "if False:",
           (CURVES,)),
    Mutant("curves-band-for-one-run", "arlif/reports/curves.py",
           "if len(group.runs) > 1:", "if len(group.runs) > 0:",
           ("tests/test_plots.py::test_killed_run_is_marked_at_its_last_epoch",)),
    Mutant("curves-per-layer-firing-rates-plotted", "arlif/reports/curves.py",
           "wanted = metric in PER_LAYER if sep else", "wanted = True if sep else",
           ("tests/test_plots.py::test_wandb_history_rows_give_the_same_curves_as_metrics_jsonl",)),
    # Profiling.
    Mutant("profile-backward-not-attributed", "arlif/runner/profiling.py",
           "here = created_by.get((event.fwd_thread, event.sequence_nr)) or (_by_name(name), None)",
           "here = (_by_name(name), None)",
           (PROFILE,)),
    Mutant("profile-times-not-per-step", "arlif/runner/profiling.py",
           "per_step = lambda us: round(us / n / 1000, 3)", "per_step = lambda us: round(us / 1000, 3)",
           (PROFILE,)),
    Mutant("profile-data-loading-uncounted", "arlif/runner/profiling.py",
           'elif name.startswith("enumerate(DataLoader)"):', "elif False:",
           (PROFILE,)),
    # Issue 25: the layering and the install.
    Mutant("kernel-imports-the-neurons-face", "arlif/kernels/cpu.py",
           "from arlif.spikes.dynamics import RESET_CODES\n",
           "from arlif.spikes.dynamics import RESET_CODES\nfrom arlif.neurons import RESETS as _RESETS  # noqa: F401\n",
           ("tests/test_architecture.py",)),
    Mutant("search-reads-records-undocumented", "arlif/search/sweep.py",
           "from arlif.runner.runlock import live_holder\n",
           "from arlif.runner.runlock import live_holder\nfrom arlif.runner.records import SUMMARY  # noqa: F401\n",
           ("tests/test_architecture.py",)),
    Mutant("requirements-skip-the-checkout", "requirements.txt", "\n-e .\n", "\n",
           ("tests/test_package.py::test_a_script_runs_from_outside_the_checkout_after_the_readme_install",)),
    Mutant("dispatch-not-constant-to-dynamo", "arlif/kernels/availability.py",
           "    fn._dynamo_marked_constant = True\n", "",
           ("tests/test_compile.py::test_constant_to_dynamo_marks_a_function_as_torchs_decorator_does",)),
    Mutant("meta-shape-check-draws-weights", "arlif/models/layers.py",
           "    if any(p.is_meta for p in model.parameters()):\n        return\n", "",
           ("tests/test_architecture.py::test_imports_load_only_what_they_need_and_timm_finds_the_models_either_way",)),
    # Issue 26: competitor recipes from their sources (TET's λ and epochs, TEBN's main.py, GLIF's leak, the
    # released code's T4 batch, DVS antialiasing in the frame cache key, CLIF's torchtoolbox Cutout, GLIF's own
    # weight decay in the same-recipe grid, 3 seeds), published numbers compared like with like, and the verdict.
    Mutant("tet-cifar-lambda-from-dvs-script", "conf/recipe/compare/tet_cifar.yaml",
           "tet_weight: 0.95            # 1 − λ", "tet_weight: 0.999           # 1 − λ",
           (PUBLISHED_PRESET,)),
    Mutant("tebn-main-lr-as-copy", "conf/recipe/compare/tebn_cifar10_dvs_main.yaml",
           "  lr: 0.02", "  lr: 0.1",
           (PUBLISHED_PRESET,)),
    Mutant("glif-leak-scaled-by-T", "conf/recipe/compare/glif_cifar.yaml",
           "  init_linear_decay: 0.0625   #", "  init_linear_decay: null   #",
           (PUBLISHED_PRESET,)),
    Mutant("released-code-t4-batch-16", "conf/experiment/table1_code/cifar10_dvs_vggsnn_t4.yaml",
           "batch_size: 32", "batch_size: 16",
           (RELEASED_CODE_PRESET,)),
    Mutant("published-table-one-seed", "conf/table/compare_published.yaml",
           "      seed: 2022, 2023, 2024\n", "",
           ("tests/test_compare_presets.py::test_comparison_tables_are_one_multirun",)),
    Mutant("dvs-resize-always-antialiased", "arlif/data/events.py",
           "antialias=self.antialias).numpy()", "antialias=True).numpy()",
           (ANTIALIAS,)),
    Mutant("antialias-not-in-cache-key", "arlif/data/events.py",
           '("bilinear antialias" if frames.antialias else "bilinear")', '"bilinear antialias"',
           (ANTIALIAS,)),
    Mutant("clif-cutout-every-image", "arlif/data/cutout.py",
           "if float(torch.rand(())) >= self.p:", "if False:",
           (CUTOUT_DRAWS,)),
    Mutant("clif-cutout-smaller-areas", "arlif/data/cutout.py",
           "scale: tuple = (0.02, 0.4)", "scale: tuple = (0.02, 0.2)",
           (CUTOUT_DRAWS,)),
    Mutant("clif-cutout-zero-fill", "arlif/data/cutout.py",
           "out[..., 0, top:top + h, left:left + w] = value", "out[..., 0, top:top + h, left:left + w] = 0",
           (CUTOUT_DRAWS,)),
    Mutant("clif-cutout-after-the-flip", "arlif/data/static.py",
           "ToolboxCutout(),\n                 v2.RandomHorizontalFlip(),",
           "v2.RandomHorizontalFlip(),\n                 ToolboxCutout(),",
           (CUTOUT_PIPELINE,)),
    Mutant("glif-own-weight-decay-ignored", "arlif/runner/optim.py",
           'elif cfg.neuron.get("own_weight_decay") is not None:', "elif False:",
           ("tests/test_compare_presets.py::test_same_recipe_grid_decays_a_neurons_parameters_as_its_own_code_does",)),
    Mutant("seed-mean-beside-one-run", "arlif/reports/results.py",
           'if cell.statistic == "seed_mean" and runs >= 2:', 'if cell.statistic == "seed_mean":',
           ("tests/test_tables.py::test_competitor_rows_published_rerun_and_same_recipe_beside_arlif",)),
    Mutant("checkpoint-compared-as-best-epoch", "arlif/reports/results.py",
           'if cell.statistic == "best_epoch":', 'if cell.statistic in ("best_epoch", "checkpoint"):',
           ("tests/test_tables.py::test_published_numbers_are_compared_only_with_their_own_statistic",)),
    Mutant("verdict-normal-quantile", "arlif/reports/verdict.py",
           "float(student_t.ppf(0.5 + LEVEL / 2, df))", "1.959964",
           (VERDICT_BY_HAND,)),
    Mutant("verdict-pooled-df", "arlif/reports/verdict.py",
           "df = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))", "df = n_a + n_b - 2",
           (VERDICT_BY_HAND,)),
    Mutant("verdict-ignores-the-interval", "arlif/reports/verdict.py",
           "verdict = AHEAD if low > 0 else BEHIND if high < 0 else UNRESOLVED",
           "verdict = AHEAD if diff > 0 else BEHIND if diff < 0 else UNRESOLVED",
           (VERDICT_BY_HAND,)),
    Mutant("verdict-seeds-to-resolve-off-by-one", "arlif/reports/verdict.py",
           "    return most\n", "    return most + 1\n",
           (VERDICT_BY_HAND,)),
    Mutant("init-weights-ignored", "arlif/runner/training.py",
           "            load_initial_weights(model, cfg)\n", "            pass\n",
           ("tests/test_wiring.py::test_init_weights_starts_a_run_at_another_T_from_a_trained_run",)),
    Mutant("init-weights-path-splits-seeds", "arlif/reports/runs.py",
           "out[key] = ANY_VALUE.get(key, value)", "out[key] = value",
           ("tests/test_tables.py::test_runs_started_from_checkpoints_are_one_variant_whatever_the_paths",)),
    Mutant("same-recipe-verdict-on-final-epoch", "arlif/reports/results.py",
           'best = compare(arlif.values("test_acc_best"), group.values("test_acc_best"))',
           'best = compare(arlif.values("test_acc_final"), group.values("test_acc_final"))',
           ("tests/test_tables.py::test_competitor_rows_published_rerun_and_same_recipe_beside_arlif",)),
    # Issue 28: checkpoints name no code, refused writes end cleanly, damaged caches and trials, second-audit gaps.
    Mutant("checkpoint-config-names-unchecked", "arlif/runner/checkpoint.py",
           '    _check_names(state["config"], path)\n    return state\n', "    return state\n",
           ("tests/test_untrusted_checkpoints.py::test_every_name_that_chooses_code_is_checked",
            "tests/test_untrusted_checkpoints.py::test_resume_and_the_scripts_refuse_a_checkpoint_that_names_code")),
    Mutant("run-config-builder-unchecked", "arlif/runner/config.py",
           '    builder_name(OmegaConf.select(cfg, "dataset.builder"))\n', "",
           ("tests/test_untrusted_checkpoints.py::test_a_run_config_names_a_registered_builder",)),
    Mutant("frame-cache-digest-unchecked", "arlif/data/events.py",
           "hashlib.sha256(payload).digest() != data[:DIGEST_SIZE]", "False",
           ("tests/test_data_events.py::test_every_damaged_cache_file_is_rebuilt",)),
    Mutant("frame-cache-partial-left", "arlif/data/events.py",
           "            partial.unlink()\n", "            pass\n",
           ("tests/test_storage.py::test_a_frame_cache_on_a_full_or_read_only_disk",)),
    Mutant("refused-write-tmp-left", "arlif/runner/records.py",
           "        with contextlib.suppress(OSError):\n            tmp.unlink()\n        raise\n", "        raise\n",
           ("tests/test_storage.py::test_a_disk_too_full_for_the_first_checkpoint",)),
    Mutant("refused-write-not-named", "arlif/runner/records.py",
           "        err = storage_error(exc, path)\n", "        err = None\n",
           ("tests/test_storage.py::test_a_read_only_run_folder",)),
    Mutant("checkpoint-save-hides-errno", "arlif/runner/checkpoint.py",
           "                raise sink.error from exc", "                raise",
           ("tests/test_storage.py::test_a_disk_too_full_for_the_first_checkpoint",)),
    Mutant("refused-write-no-summary", "arlif/runner/training.py",
           "            _record_refused_write(self, err, before + time.perf_counter() - started)\n", "",
           ("tests/test_storage.py::test_a_disk_too_full_for_the_first_checkpoint",)),
    Mutant("refused-write-summary-counts-unsaved-epoch", "arlif/runner/training.py",
           '"epochs_completed": run.saved_epoch}', '"epochs_completed": run.progress.epoch}',
           ("tests/test_storage.py::test_a_disk_too_full_for_the_first_checkpoint",)),
    Mutant("hydra-refused-folder-traceback", "arlif/runner/cli.py",
           "    except OSError as exc:\n        err = storage_error(exc)\n", "    except OSError as exc:\n        err = None\n",
           ("tests/test_storage.py::test_train_py_in_a_read_only_folder_prints_one_line",)),
    Mutant("trial-user-error-stops-sweep", "arlif/runner/cli.py",
           "        if trial:\n            raise err from None\n", "",
           ("tests/test_checksums.py::test_a_damaged_trial_checkpoint_fails_that_trial_and_the_sweep_goes_on",)),
    Mutant("trial-user-error-reason-lost", "arlif/search/sweep.py",
           'return f"error: {err}" if err is not None else', "return",
           (TRIAL_ENDS,)),
    Mutant("report-lists-no-failed-trials", "arlif/search/report.py",
           "for t in trials if t.state == TrialState.FAIL]", "for t in trials if False]",
           ("tests/test_search.py::test_report_leads_with_hydras_optuna_sweeper_keys",)),
    Mutant("recorded-states-keep-graph", "arlif/neurons/base.py",
           "self.states = {k: v.detach() for k, v in states.items()}", "self.states = {k: v for k, v in states.items()}",
           (SECOND_AUDIT + "::test_recorded_states_are_detached_from_the_graph",)),
    Mutant("compiled-check-cut-along-time", "arlif/kernels/compiled.py",
           "return x.detach()[:, :max(2,", "return x.detach()[1:, :max(2,",
           (SECOND_AUDIT + "::test_the_compiled_loops_self_check_runs_every_step_of_the_call",)),
    Mutant("auto-threshold-per-call", "arlif/kernels/compiled.py",
           "return x[0].numel() >= AUTO_MIN_ELEMENTS", "return x.numel() >= AUTO_MIN_ELEMENTS",
           (SECOND_AUDIT + "::test_auto_compiles_by_elements_per_step",)),
    Mutant("glif-resnet18-standard-strides", "arlif/models/resnet_postact.py",
           "((64, 2, 1), (128, 2, 1), (256, 2, 2), (512, 2, 2))", "((64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2))",
           (SECOND_AUDIT + "::test_glifs_resnet18_keeps_an_8x8_final_map_on_cifar",)),
    Mutant("compile-warm-up-advances-rng", "arlif/runner/compiling.py",
           "        set_rng_state(generators)\n", "",
           (SECOND_AUDIT + "::test_the_compile_warm_up_leaves_every_random_generator_as_it_was",)),
    Mutant("cpu-build-name-ignores-source", "arlif/kernels/cpu.py",
           "key = hashlib.sha256(SOURCE.read_bytes())", "key = hashlib.sha256()",
           (SECOND_AUDIT + "::test_the_cpu_kernels_build_name_follows_its_source_text",)),
    Mutant("masked-psn-lambda-ignores-init", "arlif/neurons/masked_psn.py",
           "min(1.0, self.lambda_init + self.lambda_rate", "min(1.0, self.lambda_rate",
           (SECOND_AUDIT + "::test_masked_psns_lambda_schedule_starts_at_lambda_init",)),
    Mutant("neuron-weight-decay-alone-ignored", "arlif/runner/optim.py",
           "    if own_wd is not None or scales:\n", "    if scales:\n",
           (SECOND_AUDIT + "::test_a_neuron_weight_decay_of_zero_given_alone_keeps_the_neurons_undecayed",)),
    Mutant("mean-ce-label-smoothing-dropped", "arlif/runner/build.py",
           'return MeanOutputCELoss(check_number(cfg, "loss.label_smoothing", 0.0, 1.0, high_open=True))',
           'check_number(cfg, "loss.label_smoothing", 0.0, 1.0, high_open=True); return MeanOutputCELoss()',
           (SECOND_AUDIT + "::test_mean_ce_trains_with_its_label_smoothing",)),
    # Issue 27: the training step's fast paths give today's numbers (batched per-step BN, fused optimizer on
    # resume, layout-keeping neuron ops and their fakes, the engine cached per case, firing-rate buffers,
    # channels_last, the step profile).
    Mutant("bn-batched-one-momentum-update", "arlif/models/layers.py",
           "beta=(1 - m) ** T)", "beta=(1 - m))",
           ("tests/test_training_step.py::test_batched_per_step_batch_norm_equals_the_loop",)),
    Mutant("bn-batched-steps-tracked-once", "arlif/models/layers.py",
           "self.num_batches_tracked.add_(T)", "self.num_batches_tracked.add_(1)",
           ("tests/test_training_step.py::test_batched_per_step_batch_norm_equals_the_loop",)),
    Mutant("bn-batched-weights-not-per-step", "arlif/models/layers.py",
           "steps = x.transpose(0, 1).reshape(B, T * C, *x.shape[3:])", "steps = x.reshape(B, T * C, *x.shape[3:])",
           ("tests/test_training_step.py::test_batched_per_step_batch_norm_equals_the_loop",)),
    Mutant("bn-channels-last-output-not-relaid", "arlif/models/layers.py",
           "            y = _Relayout.apply(y, layout)\n", "            pass\n",
           ("tests/test_training_step.py::test_batched_per_step_batch_norm_of_channels_last_steps_equals_the_loop",)),
    Mutant("bn-channels-last-gradient-not-relaid", "arlif/models/layers.py",
           "        if grad.stride() == ctx.strides:", "        if True:",
           ("tests/test_training_step.py::test_batched_per_step_batch_norm_of_channels_last_steps_equals_the_loop",)),
    Mutant("resume-drops-fused-optimizer", "arlif/runner/optim.py",
           'group["fused"] = setting', 'group["fused"] = group.get("fused")',
           ("tests/test_training_step.py::test_resume_of_an_old_checkpoint_keeps_the_fused_optimizer",)),
    Mutant("neuron-output-layout-dropped", "arlif/kernels/function.py",
           "return rows.view(shape) if strides is None else rows.as_strided(shape, strides)",
           "return rows.view(shape)",
           ("tests/test_kernels.py::test_layouts_kept_and_values_equal",)),
    Mutant("neuron-rows-ignore-layout", "arlif/kernels/function.py",
           "return x.stride() if x.shape[0] == 1 or x.stride(0) == expected else None",
           "return x.stride() if x.shape[0] == 1 or x.stride(0) >= expected else None",
           ("tests/test_kernels.py::test_layouts_kept_and_values_equal",)),
    Mutant("fake-backward-keeps-gradient-strides", "arlif/kernels/function.py",
           "return grad_spikes.new_empty(grad_spikes.shape), scalar, torch.empty_like(scalar)",
           "return torch.empty_like(grad_spikes), scalar, torch.empty_like(scalar)",
           ("tests/test_kernels.py::test_fake_strides_agree_with_the_real_operators",)),
    Mutant("eager-tanh-derivative-dropped", "arlif/kernels/triton_neuron.py",  # moved into the kernel (below)
           "part_beta = part_beta * (1.0 - beta * beta)", "part_beta = part_beta",
           ("tests/test_kernels.py::test_layouts_kept_and_values_equal",
            KERNELS + "::test_triton_squashes_beta_inside_its_kernels")),
    Mutant("cpu-eager-tanh-derivative-dropped", "arlif/kernels/cpu_neuron.cpp",
           "static_cast<float>(gb) * (1.f - beta * beta)", "static_cast<float>(gb)",
           ("tests/test_kernel_safety.py::test_the_cpu_engines_eager_call_passes_the_self_check",)),
    Mutant("cpu-eager-node-keeps-saved-after-backward", "arlif/kernels/cpu_neuron.cpp",
           "    x.reset_data();\n    flags.reset_data();\n", "",
           ("tests/test_kernels.py::test_the_eager_call_keeps_autograds_rules",)),
    Mutant("cpu-eager-strided-input-read-as-rows", "arlif/kernels/cpu_neuron.cpp",
           "  if (steps_outermost(x)) return x.to(at::kFloat);\n", "  return x.to(at::kFloat);\n",
           ("tests/test_kernels.py::test_layouts_kept_and_values_equal",)),
    Mutant("self-check-in-the-callers-context", "arlif/kernels/selfcheck.py",
           "        _verdicts[case] = isolated(check)\n", "        _verdicts[case] = check()\n",
           ("tests/test_kernel_safety.py::test_a_first_call_inside_activation_checkpointing_passes_the_check",
            "tests/test_kernel_safety.py::test_a_first_call_without_grad_mode_passes_the_check")),
    Mutant("selfcheck-skips-the-eager-call", "arlif/kernels/selfcheck.py",
           'return ("", operators), ("in its eager call, ", eager)', 'return (("", operators),)',
           ("tests/test_kernel_safety.py::test_a_broken_eager_call_fails_the_self_check",
            "tests/test_kernel_safety.py::test_the_check_covers_the_eager_call_with_beta_squashed_inside")),
    Mutant("self-check-one-interpreter-block", "arlif/kernels/selfcheck.py",
           "GPU_MAP, INTERPRETER_MAP = (11, 10, 10), (6, 5, 5)", "GPU_MAP, INTERPRETER_MAP = (11, 10, 10), (8, 4, 4)",
           ("tests/test_kernel_safety.py::test_the_check_input_spans_two_blocks_the_second_ragged",)),
    Mutant("engine-chosen-every-call", "arlif/neurons/family.py",
           "        if case not in self._engines:\n", "        if True:\n",
           ("tests/test_kernels.py::test_engine_chosen_once_per_case",)),
    Mutant("firing-sums-not-buffers", "arlif/instruments/firing_rates.py",
           "module.register_buffer(name, torch.zeros(1, dtype=dtype, device=device), persistent=False)",
           "setattr(module, name, torch.zeros(1, dtype=dtype, device=device))",
           ("tests/test_monitor.py::test_sums_are_buffers_outside_the_state_dict",)),
    Mutant("channels-last-option-ignored", "arlif/runner/build.py",
           'return torch.channels_last if cfg.trainer.get("channels_last", False) else torch.preserve_format',
           "return torch.preserve_format",
           ("tests/test_training_step.py::test_channels_last_trains_as_contiguous",)),
    Mutant("profile-busy-double-counts-overlaps", "arlif/runner/profiling.py",
           "total += hi - max(lo, end)", "total += hi - lo",
           ("tests/test_training_step.py::test_union_of_intervals",)),
    Mutant("profile-syncs-uncounted", "arlif/runner/profiling.py",
           '"host_syncs": round(sum(e.name in SYNCS and not _in_neuron(e) for e in events) / steps, 2)',
           '"host_syncs": 0',
           ("tests/test_training_step.py::test_step_breakdown_of_real_steps",)),
    Mutant("profile-optimizer-ops-unattributed", "arlif/runner/profiling.py",
           'inner = "optimizer" if event.name.startswith("Optimizer.") else family', "inner = family",
           ("tests/test_training_step.py::test_step_breakdown_of_real_steps",)),
    # Issue 27, the Triton kernels: β = tanh(b) and its derivative inside them; the opt-in register-replay
    # backward for T <= 8 (no scratch, its fallback past 8 steps) and the self-check covering what a process runs.
    Mutant("triton-squash-ignored", "arlif/kernels/triton_neuron.py",
           "beta = _tanh(beta, EXACT)", "beta = beta",
           (KERNELS + "::test_triton_squashes_beta_inside_its_kernels",)),
    Mutant("register-replay-previous-step-off-by-one", "arlif/kernels/triton_neuron.py",
           "r_prev = kepts[t - 1]", "r_prev = kepts[t]",
           (KERNELS + "::test_register_replay_backward_matches_reference",)),
    Mutant("register-replay-never-taken", "arlif/kernels/triton_neuron.py",
           "return REGISTER_REPLAY and 1 <= T <= REGISTER_MAX_T", "return False",
           (KERNELS + "::test_register_replay_backward_matches_reference",)),
    Mutant("register-replay-past-eight-steps", "arlif/kernels/triton_neuron.py",
           "return REGISTER_REPLAY and 1 <= T <= REGISTER_MAX_T", "return REGISTER_REPLAY and 1 <= T",
           (KERNELS + "::test_register_replay_falls_back_past_eight_steps_and_allocates_no_scratch",)),
    Mutant("register-replay-allocates-scratch", "arlif/kernels/triton_neuron.py",
           "    if register:\n        scratch = None\n",
           "    if register:\n        scratch = torch.empty(grad_x.shape, dtype=torch.float32, device=grad_x.device)\n",
           (KERNELS + "::test_register_replay_falls_back_past_eight_steps_and_allocates_no_scratch",)),
    Mutant("self-check-case-ignores-backward-variant", "arlif/kernels/selfcheck.py",
           "variant() if variant else None)", "None)",
           (KERNELS + "::test_self_check_covers_the_backward_in_use",)),
    Mutant("self-check-skips-scratch-backward-when-registers-on", "arlif/kernels/triton_neuron.py",
           "return (4, REGISTER_MAX_T + 1) if REGISTER_REPLAY else (4,)", "return (4,)",
           (KERNELS + "::test_self_check_covers_the_backward_in_use",)),
    # Found by running the GPU check's tests with the GPU machines' torch 2.11 on CPU (issue 27).
    Mutant("engine-choice-handed-the-spec-dataclass", "arlif/kernels/__init__.py",
           "choose_engine(backend, x.device, x.dtype, spec.constants,", "choose_engine(backend, x.device, x.dtype, spec,",
           ("tests/test_compile.py::test_the_engine_choice_is_handed_plain_constants_while_tracing",)),
    Mutant("firing-sums-zero-dimensional", "arlif/instruments/firing_rates.py",
           "torch.zeros(1, dtype=dtype, device=device), persistent=False)",
           "torch.zeros((), dtype=dtype, device=device), persistent=False)",
           ("tests/test_monitor.py::test_sums_have_one_element_in_one_dim",)),
    Mutant("self-check-thread-installs-the-cuda-guard", "arlif/kernels/selfcheck.py",
           "    if not torch.cuda.is_available():\n        torch._C._ensureCUDADeviceGuardSet()\n", "",
           ("tests/test_kernel_safety.py::test_the_callers_thread_installs_the_no_op_cuda_guard_before_the_checks_thread",)),
    Mutant("bench-step-progress-on-stdout", "scripts/bench_step.py",
           'warm-up steps in {warm:.1f} s", file=sys.stderr,', 'warm-up steps in {warm:.1f} s", file=sys.stdout,',
           ("tests/test_training_step.py::test_bench_step_runs_today_and_the_new_step",)),
    Mutant("signal-met-by-divergence-forgotten", "arlif/runner/training.py",
           'if signals.received is not None and summary["status"] != "interrupted":', "if False:",
           ("tests/test_faults.py::test_a_stop_signal_met_by_divergence_still_ends_the_sweep",)),
    Mutant("sweep-goes-on-after-a-signalled-run", "arlif/runner/cli.py",
           'if sweep_dir is not None and summary.get("stop_signal") and summary["status"] != "interrupted":',
           "if False:",
           ("tests/test_faults.py::test_a_stop_signal_met_by_divergence_still_ends_the_sweep",)),
    Mutant("spec-constants-out-of-order", "arlif/spikes/dynamics.py",
           "tuple(getattr(self, f.name) for f in fields(self) if f.init)",
           "tuple(getattr(self, f.name) for f in fields(self) if f.init and f.name != 'decay')",
           ("tests/test_compile.py::test_a_spec_is_rebuilt_from_its_constants",)),
)


def snippet_problems(root: Path = REPO, mutants=MUTANTS) -> list[str]:
    """One line per mutant whose snippet does not occur exactly once, or whose test file is missing."""
    problems = []
    for m in mutants:
        path = root / m.file
        count = path.read_text().count(m.original) if path.is_file() else 0
        if count != 1:
            problems.append(f"{m.name}: the snippet occurs {count} times in {m.file} (must be once): "
                            f"{m.original.strip()!r}")
        for test in m.tests:
            file, _, function = test.partition("::")
            if not (root / file).is_file() or (function and f"def {function}(" not in (root / file).read_text()):
                problems.append(f"{m.name}: no test {test}")
    return problems


def copy_repository(dest: Path) -> None:
    """The repository's files (tracked, and new ones that git does not ignore) under `dest`."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        src = REPO / name
        if src.is_file():  # listed but deleted in the working tree: skip
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def pytest(copy: Path, tests) -> subprocess.CompletedProcess:
    """Run `tests` in `copy` (stopping at the first failure); returncode -1 when they ran out of time."""
    # A test named by its id runs even when marked slow (whole files alone run their default selection).
    marks = ["-m", "slow or not slow"] if any("::" in test for test in tests) else []
    try:
        return subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *marks, *tests],
                              cwd=copy, capture_output=True, text=True, timeout=TIMEOUT_S,
                              env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(tests, -1, "", "timed out")


def run_mutant(copy: Path, m: Mutant) -> tuple[str, float]:
    """Apply `m` in `copy`, run its tests, restore the file; returns (caught | survived | error, seconds)."""
    path = copy / m.file
    source = path.read_text()
    path.write_text(source.replace(m.original, m.replacement))
    start = time.perf_counter()
    try:
        code = pytest(copy, m.tests).returncode
    finally:
        path.write_text(source)
    seconds = time.perf_counter() - start
    if code in (1, -1):  # tests failed (or hung)
        return "caught", seconds
    return ("survived" if code == 0 else f"error (pytest exit {code})"), seconds


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutants")
    parser.add_argument("--list", action="store_true", help="list the mutants and their tests, run nothing")
    parser.add_argument("--check", action="store_true", help="only check that every snippet occurs exactly once")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    mutants = MUTANTS
    if args.only:
        unknown = sorted(set(args.only) - {m.name for m in MUTANTS})
        if unknown:
            print(f"error: unknown mutants {unknown}; see --list", file=sys.stderr)
            return 2
        mutants = tuple(m for m in MUTANTS if m.name in args.only)
    if args.list:
        for m in mutants:
            print(f"{m.name:34} {m.file:28} {' '.join(m.tests)}")
        return 0
    problems = snippet_problems(REPO, mutants)
    if problems:
        print("error: the mutant list no longer matches the code:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    if args.check:
        print(f"all {len(mutants)} snippets occur exactly once")
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="arlif-mutants-") as tmp:
        copy = Path(tmp) / "repo"
        copy_repository(copy)
        tests = list(dict.fromkeys(t for m in mutants for t in m.tests))
        clean = pytest(copy, tests)  # a mutant is caught only by tests that pass without it
        if clean.returncode != 0:
            print(f"error: the mapped tests fail without any mutant; fix them first:\n{clean.stdout[-3000:]}",
                  file=sys.stderr)
            return 2
        for m in mutants:
            result, seconds = run_mutant(copy, m)
            results.append((m, result, seconds))
            print(f"{m.name:34} {result:9} {seconds:6.0f}s", flush=True)
    caught = sum(result == "caught" for _, result, _ in results)
    print("\n| mutant | file | result | seconds |\n|---|---|---|---|")
    for m, result, seconds in results:
        print(f"| {m.name} | {m.file} | {result} | {seconds:.0f} |")
    print(f"\nscore: {caught}/{len(results)} caught ({100 * caught / len(results):.0f} %)")
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
