"""The diabetes and text datamodules: standardized from the train split only; a character
vocabulary built at set-up from a UTF-8 file the test writes; sizes the models take."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from expkit.data import DiabetesDataModule, TextDataModule
from expkit.data.diabetes import standardize
from expkit.errors import ConfigError, DataError


def test_standardize_uses_the_train_statistics_only():
    train = torch.tensor([[0.0, 10.0], [2.0, 30.0]])
    val = torch.tensor([[4.0, 50.0]])
    scaled_train, scaled_val = standardize(train, val)
    assert torch.allclose(scaled_train.mean(dim=0), torch.zeros(2))
    std = train.std(dim=0)
    assert torch.allclose(scaled_val, (val - train.mean(dim=0)) / std)  # not val's own mean: 0 would be


def test_diabetes_is_scaled_by_train_and_says_it_has_one_target():
    dm = DiabetesDataModule(seed=3)
    dm.setup()
    (x, y), (xt, yt) = dm.splits["train"], dm.splits["test"]
    assert [len(dm.splits[s][0]) for s in ("train", "val", "test")] == [310, 44, 88]
    assert x.shape[1:] == (10,) and y.shape[1:] == (1,) and x.dtype == y.dtype == torch.float32
    assert torch.allclose(x.mean(0), torch.zeros(10), atol=1e-5) and torch.allclose(x.std(0), torch.ones(10))
    assert abs(float(y.mean())) < 1e-5 and not torch.allclose(xt.mean(0), torch.zeros(10), atol=1e-3)
    assert dm.sizes() == {"input_shape": [10], "num_targets": 1, "num_outputs": 1}
    raw = DiabetesDataModule(seed=3, standardize_target=False)
    raw.setup()
    assert float(raw.splits["train"][1].mean()) > 100  # disease progression in its own units
    with pytest.raises(ConfigError, match="their sum must be below 1"):
        DiabetesDataModule(val_fraction=0.5, test_fraction=0.5)


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_text_builds_its_vocabulary_and_shifted_windows(tmp_path: Path):
    text = "ab cd é€\n" * 40  # 360 characters, two of them outside ASCII
    dm = TextDataModule(path=write(tmp_path / "t.txt", text), block_size=8, val_fraction=0.1, test_fraction=0.1)
    sizes = dm.sizes()  # reads the file: the vocabulary is known only then
    assert dm.vocab == "".join(sorted(set(text))) and sizes == {"vocab_size": 8, "num_outputs": 8, "block_size": 8}
    x, y = dm.splits["train"]
    assert x.shape[1] == y.shape[1] == 8 and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])  # the targets are the inputs shifted by one character
    assert dm.decode(torch.cat([x[0], y[0, -1:]])) == text[:9]
    assert len(x) == (288 - 1) // 8  # 80% of 360 characters, windows side by side
    # the splits are consecutive parts of the text: validation starts where training ends
    assert dm.decode(dm.splits["val"][0][0]) == text[288:296]
    overlapping = TextDataModule(path=str(tmp_path / "t.txt"), block_size=8, stride=2)
    overlapping.setup()
    assert len(overlapping.splits["train"][0]) > 3 * len(x)


def test_text_defaults_to_a_file_that_ships_with_python_and_can_be_cut():
    dm = TextDataModule(max_chars=20_000, block_size=32)
    sizes = dm.sizes()
    assert 60 < sizes["vocab_size"] < 200 and len(dm.splits["train"][0]) == int(20_000 * 0.9) // 32


def test_text_errors_are_one_line_naming_the_file(tmp_path: Path):
    with pytest.raises(DataError, match=r"^data\.path=.*nope\.txt: no such file"):
        TextDataModule(path=str(tmp_path / "nope.txt")).setup()
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 50)
    with pytest.raises(DataError, match=r"latin1\.txt: not UTF-8 text"):
        TextDataModule(path=str(tmp_path / "latin1.txt")).setup()
    with pytest.raises(DataError, match=r"no 129-character window for the train, val, test split"):
        TextDataModule(path=write(tmp_path / "short.txt", "too short")).setup()
