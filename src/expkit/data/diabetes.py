"""scikit-learn's bundled diabetes regression data: 442 patients, 10 features, one target
(disease progression after a year). Offline; standardized from the train split only."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from expkit.data.base import DataModule, Split, check_fractions, split_indices
from expkit.data.bundled import sklearn_data_file
from expkit.data.options import DiabetesOptions


def standardize(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Every tensor as z-scores by the TRAIN split's per-column mean and std (nothing leaks
    from validation or test into the scaling)."""
    mean, std = train.mean(dim=0), train.std(dim=0).clamp(min=1e-12)
    return [(t - mean) / std for t in (train, *others)]


class DiabetesDataModule(DataModule):
    """``(features (N, 10), target (N, 1))`` as float32 tensors, split by ``seed``."""

    Options = DiabetesOptions
    input_shape = (10,)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        check_fractions(self.opts.val_fraction, self.opts.test_fraction)

    def sizes(self) -> dict[str, Any]:
        return {"input_shape": list(self.input_shape), "num_targets": 1, "num_outputs": 1}

    def _load(self) -> dict[str, Split]:
        x = np.loadtxt(sklearn_data_file("diabetes_data_raw.csv.gz", "data=diabetes"), dtype=np.float32)
        y = np.loadtxt(sklearn_data_file("diabetes_target.csv.gz", "data=diabetes"), dtype=np.float32)
        x, y = torch.from_numpy(x), torch.from_numpy(y).unsqueeze(1)
        test, val, train = split_indices(len(y), [self.opts.test_fraction, self.opts.val_fraction], self.seed)
        xs = standardize(x[train], x[val], x[test])
        ys = standardize(y[train], y[val], y[test]) if self.opts.standardize_target else [y[train], y[val], y[test]]
        return {name: (features, target) for name, features, target in zip(("train", "val", "test"), xs, ys)}
