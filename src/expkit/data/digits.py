"""scikit-learn's bundled 8x8 handwritten digits: 1,797 images, no download, the default."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from expkit.data.base import DataModule, Split, split_indices
from expkit.data.options import DigitsOptions
from expkit.errors import ConfigError
from expkit.errors import DataError


def _digits_file() -> Path:
    """The CSV that ``sklearn.datasets.load_digits`` reads, found without importing
    scikit-learn (its import alone costs over a second)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("data=digits needs scikit-learn installed (pip install scikit-learn)")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        raise DataError(f"data=digits: {path} is missing from this scikit-learn installation")
    return path


class DigitsDataModule(DataModule):
    Options = DigitsOptions
    input_shape = (1, 8, 8)
    num_classes = 10

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.val_fraction, self.test_fraction = self.opts.val_fraction, self.opts.test_fraction
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError(f"data.val_fraction={self.val_fraction}, data.test_fraction={self.test_fraction}: "
                              "their sum must be below 1")

    def _load(self) -> dict[str, Split]:
        table = np.loadtxt(_digits_file(), delimiter=",", dtype=np.float32)
        x = torch.from_numpy(table[:, :-1]).reshape(-1, 1, 8, 8) / 16.0
        x = (x - 0.3) / 0.4  # roughly zero mean, unit variance
        y = torch.from_numpy(table[:, -1]).long()
        test, val, train = split_indices(len(y), [self.test_fraction, self.val_fraction], self.seed)
        return {"train": (x[train], y[train]), "val": (x[val], y[val]), "test": (x[test], y[test])}
