"""expkit's Hydra sweeper for Optuna (``hydra/sweeper=expkit_optuna``), found by Hydra in the
``hydra_plugins`` namespace package. The search itself lives in :mod:`expkit.sweep`."""
