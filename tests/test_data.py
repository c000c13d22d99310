"""Datamodules and loaders: deterministic splits, both loader paths, real MNIST IDX files."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from expkit.data import DigitsDataModule, FashionMNISTDataModule, MNISTDataModule, SyntheticDataModule
from expkit.data.loaders import TensorLoader, TorchDataLoader, shard


def test_digits_splits_are_deterministic_from_the_seed_and_disjoint():
    a, b, c = DigitsDataModule(seed=1), DigitsDataModule(seed=1), DigitsDataModule(seed=2)
    for dm in (a, b, c):
        dm.setup()
    assert torch.equal(a.splits["train"][0], b.splits["train"][0])
    assert not torch.equal(a.splits["train"][0], c.splits["train"][0])
    sizes = [len(a.splits[s][1]) for s in ("train", "val", "test")]
    assert sizes == [1258, 180, 359] and sum(sizes) == 1797
    rows = {tuple(r.tolist()) for s in ("train", "val", "test") for r in a.splits[s][0].flatten(1)}
    assert len(rows) > 1700  # no sample is copied between splits (digits has a handful of duplicate images)


def test_memory_and_dataloader_paths_serve_the_same_batches():
    x, y = torch.randn(103, 3), torch.arange(103)
    memory = TensorLoader([x, y], batch_size=10, shuffle=True, seed=5)
    dataloader = TorchDataLoader(torch.utils.data.TensorDataset(x, y), batch_size=10, shuffle=True, seed=5)
    for epoch in range(2):
        memory.set_epoch(epoch)
        dataloader.set_epoch(epoch)
        a, b = list(memory), list(dataloader)
        assert len(a) == len(b) == 11
        for (xa, ya), (xb, yb) in zip(a, b):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    memory.set_epoch(2)
    first = [batch[1] for batch in memory]
    memory.set_epoch(3)
    assert not torch.equal(torch.cat(first), torch.cat([batch[1] for batch in memory]))  # reshuffled


@pytest.mark.parametrize("cls", [TensorLoader, TorchDataLoader])
def test_loaders_resume_mid_epoch(cls):
    x = torch.arange(50).float().unsqueeze(1)
    data = [x, x.long().squeeze(1)] if cls is TensorLoader else torch.utils.data.TensorDataset(x, x.long().squeeze(1))
    loader = cls(data, batch_size=8, shuffle=True, seed=9)
    loader.set_epoch(4)
    full = [b[1] for b in loader]
    loader.set_epoch(4)
    loader = cls(data, batch_size=8, shuffle=True, seed=9)
    loader.set_epoch(4)
    it = iter(loader)
    head = [next(it)[1] for _ in range(3)]
    state = loader.state_dict()
    fresh = cls(data, batch_size=8, shuffle=True, seed=9)
    fresh.load_state_dict(state)
    fresh.set_epoch(4)  # same epoch: keeps the restored position
    tail = [b[1] for b in fresh]
    assert all(torch.equal(p, q) for p, q in zip(head + tail, full)) and len(head + tail) == len(full)


def test_ddp_shards_are_disjoint_and_cover_the_data():
    order = torch.randperm(11)
    train = [shard(order, r, 2, pad=True) for r in range(2)]
    assert len(train[0]) == len(train[1]) == 6  # padded so both ranks take the same steps
    evaluation = [shard(order, r, 2, pad=False) for r in range(2)]
    assert sorted(torch.cat(evaluation).tolist()) == list(range(11))  # each sample exactly once


def test_synthetic_has_the_configured_shape_and_learnable_labels():
    dm = SyntheticDataModule(input_shape=(3, 4, 4), num_classes=5, num_train=64, num_val=8, num_test=8, seed=0)
    dm.setup()
    x, y = dm.splits["train"]
    assert x.shape == (64, 3, 4, 4) and y.min() >= 0 and y.max() < 5
    with pytest.raises(ValueError, match="num_train=0"):
        SyntheticDataModule(num_train=0)


def write_idx(root: Path, folder: str, n_train: int = 300, n_test: int = 100, seed: int = 0) -> None:
    """Real IDX files (the MNIST format): magic, sizes, then unsigned bytes."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):  # a bright bar whose position encodes the label
            images[i, 2 + 2 * label: 4 + 2 * label, 4:24] = 255
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())


@pytest.mark.parametrize("cls,folder", [(MNISTDataModule, "MNIST"), (FashionMNISTDataModule, "FashionMNIST")])
def test_mnist_reads_real_idx_files_through_torchvision(tmp_path: Path, cls, folder):
    write_idx(tmp_path, folder)
    dm = cls(root=str(tmp_path), val_fraction=0.1, seed=0)
    dm.setup()
    x, y = dm.splits["train"]
    assert x.shape == (270, 1, 28, 28) and len(dm.splits["val"][1]) == 30 and len(dm.splits["test"][1]) == 100
    # The bar sits where the label says: torchvision decoded our bytes.
    raw = (x[0, 0] * cls.std + cls.mean)
    assert int(raw[:, 10].argmax()) // 2 - 1 == int(y[0])


def test_mnist_without_files_says_where_they_go(tmp_path: Path):
    dm = MNISTDataModule(root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "MNIST" / "raw")):
        dm.setup()
