"""Hyperparameter search with Optuna, driven by Hydra: `python train.py -m hparams_search=<preset>`.

The sweep process (hydra_plugins/arlif_optuna_sweeper) runs `arlif.search.sweep`; each trial is an
ordinary training run that `arlif.search.trial` connects to its Optuna trial (per-epoch reports and
pruning).  `space` turns Hydra sweep expressions into Optuna distributions, `study` opens storages,
samplers and pruners, `report` writes the study folder's report (docs/sweeps.md).  Nothing here is
imported by a training run that is not a trial, so training never needs Optuna.
"""
