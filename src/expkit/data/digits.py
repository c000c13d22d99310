"""scikit-learn's bundled 8x8 handwritten digits: 1,797 images, no download, the default."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from expkit.data.base import DataModule, Split, split_indices
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
    input_shape = (1, 8, 8)
    num_classes = 10

    def __init__(self, val_fraction: float = 0.1, test_fraction: float = 0.2, **kwargs) -> None:
        if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ValueError(f"val_fraction={val_fraction}, test_fraction={test_fraction}: "
                             "each must be in (0, 1) and their sum below 1")
        super().__init__(**kwargs)
        self.val_fraction, self.test_fraction = val_fraction, test_fraction

    def _load(self) -> dict[str, Split]:
        table = np.loadtxt(_digits_file(), delimiter=",", dtype=np.float32)
        x = torch.from_numpy(table[:, :-1]).reshape(-1, 1, 8, 8) / 16.0
        x = (x - 0.3) / 0.4  # roughly zero mean, unit variance
        y = torch.from_numpy(table[:, -1]).long()
        test, val, train = split_indices(len(y), [self.test_fraction, self.val_fraction], self.seed)
        return {"train": (x[train], y[train]), "val": (x[val], y[val]), "test": (x[test], y[test])}
