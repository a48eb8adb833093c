"""arlif's Optuna sweeper for Hydra (`hydra/sweeper=arlif_optuna`; presets in conf/hparams_search/)."""
