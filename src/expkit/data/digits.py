"""scikit-learn's bundled 8x8 handwritten digits: 1,797 images, no download, the default."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from expkit.data.base import DataModule, Split, check_fractions, split_indices
from expkit.data.bundled import sklearn_data_file
from expkit.data.options import DigitsOptions


def _digits_file() -> Path:
    """The CSV that ``sklearn.datasets.load_digits`` reads."""
    return sklearn_data_file("digits.csv.gz", "data=digits")


class DigitsDataModule(DataModule):
    Options = DigitsOptions
    input_shape = (1, 8, 8)
    num_classes = 10

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.val_fraction, self.test_fraction = self.opts.val_fraction, self.opts.test_fraction
        check_fractions(self.val_fraction, self.test_fraction)

    def _load(self) -> dict[str, Split]:
        table = np.loadtxt(_digits_file(), delimiter=",", dtype=np.float32)
        x = torch.from_numpy(table[:, :-1]).reshape(-1, 1, 8, 8) / 16.0
        x = (x - 0.3) / 0.4  # roughly zero mean, unit variance
        y = torch.from_numpy(table[:, -1]).long()
        test, val, train = split_indices(len(y), [self.test_fraction, self.val_fraction], self.seed)
        return {"train": (x[train], y[train]), "val": (x[val], y[val]), "test": (x[test], y[test])}
