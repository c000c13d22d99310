"""Sweeps: the per-sweep summary (``summary.csv``) and the Hydra callback that writes it."""
from expkit.sweep.callback import SweepSummary

__all__ = ["SweepSummary"]
