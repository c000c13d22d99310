"""Data files that installed packages ship: found on disk without importing the package."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from expkit.errors import DataError


def sklearn_data_file(name: str, option: str) -> Path:
    """``sklearn/datasets/data/<name>``, found without importing scikit-learn (its import alone
    costs over a second); ``option`` (``data=digits``) names who needs it in the error."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"{option} needs scikit-learn installed (pip install scikit-learn)")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name
    if not path.is_file():
        raise DataError(f"{option}: {path} is missing from this scikit-learn installation")
    return path
