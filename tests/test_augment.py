"""data.augment: expkit's batched crop and flip on the in-memory path (per-sample draws, seeded
by where the batch is, resumable exactly), torchvision's in the DataLoader workers, and the
refusals that keep random transforms from being frozen or shared by a whole batch."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset
from torchvision.transforms import v2

from expkit.data import SyntheticDataModule
from expkit.data.augment import RandomCrop, RandomHorizontalFlip
from expkit.data.loaders import TensorLoader
from expkit.errors import ConfigError

CROP_FLIP = [RandomCrop(8, padding=2), RandomHorizontalFlip()]


def test_crop_draws_per_sample_and_keeps_a_window_of_the_padded_image():
    x = torch.arange(64, dtype=torch.float32).view(1, 1, 8, 8).repeat(16, 3, 1, 1)
    out = RandomCrop(8, padding=2).batch(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert len({tuple(o.flatten().tolist()) for o in out}) > 4  # the same image, cropped differently
    padded = torch.nn.functional.pad(x[0], (2, 2, 2, 2))
    windows = [padded[:, i:i + 8, j:j + 8] for i in range(5) for j in range(5)]
    assert all(any(torch.equal(o, w) for w in windows) for o in out)


def test_flip_mirrors_about_p_of_the_samples():
    x = torch.randn(400, 3, 4, 4)
    out = RandomHorizontalFlip(0.5).batch(x, torch.Generator().manual_seed(1))
    flipped = torch.tensor([torch.equal(o, s.flip(-1)) for o, s in zip(out, x)])
    kept = torch.tensor([torch.equal(o, s) for o, s in zip(out, x)])
    assert bool((flipped | kept).all()) and 140 < int(flipped.sum()) < 260
    assert torch.equal(RandomHorizontalFlip(0.0).batch(x, torch.Generator()), x)


def memory_loader(**kw):
    x, y = torch.randn(40, 3, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(40)
    return TensorLoader([x, y], batch_size=8, shuffle=True, seed=4, augment=CROP_FLIP, **kw), x


def test_memory_path_augments_the_same_sample_differently_each_epoch_and_reproducibly():
    loader, x = memory_loader()
    seen = []
    for epoch in range(3):
        loader.set_epoch(epoch)
        batches = list(loader)
        images, labels = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
        seen.append(images[labels.argsort()])  # back in sample order
    assert not torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])
    changed = [not torch.equal(seen[0][i], seen[1][i]) for i in range(40)]
    assert sum(changed) > 25  # most samples differ between two epochs
    again, _ = memory_loader()
    again.set_epoch(1)
    batches = list(again)
    images, labels = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    assert torch.equal(images[labels.argsort()], seen[1])  # seeded: the same epoch gives the same pixels


def test_memory_path_resumes_mid_epoch_with_the_same_pixels():
    loader, _ = memory_loader()
    loader.set_epoch(2)
    full = [b[0] for b in loader]
    loader.set_epoch(3)
    loader.set_epoch(2)
    it = iter(loader)
    head = [next(it)[0] for _ in range(2)]
    torch.rand(5)  # other code drawing from the global RNG changes nothing
    fresh, _ = memory_loader()
    fresh.load_state_dict(loader.state_dict())
    fresh.set_epoch(2)
    tail = [b[0] for b in fresh]
    assert len(head + tail) == len(full) and all(torch.equal(a, b) for a, b in zip(head + tail, full))


def test_augmentation_is_for_training_batches_only():
    dm = SyntheticDataModule(input_shape=[3, 8, 8], num_classes=3, num_train=32, num_val=16, num_test=16,
                             augment=CROP_FLIP, loader="memory")
    val = dm.val_loader(torch.device("cpu"))
    assert torch.equal(torch.cat([b[0] for b in val]), dm.splits["val"][0])
    assert dm.train_loader(torch.device("cpu")).augment == CROP_FLIP


def test_dataloader_path_runs_torchvision_transforms_per_sample_and_reseeds_each_epoch():
    dm = SyntheticDataModule(input_shape=[3, 8, 8], num_classes=3, num_train=32, num_val=8, num_test=8,
                             augment=[v2.RandomCrop(8, padding=2), v2.RandomHorizontalFlip()], loader="dataloader",
                             shuffle=False, batch_size=32, num_workers=1)
    loader = dm.train_loader(torch.device("cpu"))
    epochs = []
    for epoch in (0, 1, 0):
        loader.set_epoch(epoch)
        epochs.append(next(iter(loader))[0])
    assert not torch.equal(epochs[0], epochs[1]) and torch.equal(epochs[0], epochs[2])
    originals = dm.splits["train"][0]
    assert sum(not torch.equal(a, b) for a, b in zip(epochs[0], originals)) > 16


def test_memory_path_refuses_random_torchvision_transforms_but_takes_deterministic_ones():
    with pytest.raises(ConfigError, match=r"data.augment\[0\]=RandomCrop: a random torchvision transform"):
        TensorLoader([torch.randn(4, 3, 8, 8)], 2, augment=[v2.RandomCrop(8, padding=2)])
    loader = TensorLoader([torch.ones(4, 3, 2, 2)], 4, augment=[v2.Normalize([0.5] * 3, [0.5] * 3)])
    assert torch.equal(next(iter(loader))[0], torch.ones(4, 3, 2, 2))


class RandomlyTransformed(Dataset):
    """A Dataset that transforms at random without saying so (no ``transform`` attribute)."""

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return torch.rand(3), i


class WithTransform(TensorDataset):
    transform = v2.RandomHorizontalFlip()


def test_loader_memory_refuses_a_dataset_with_random_transforms_instead_of_freezing_them():
    class Module(SyntheticDataModule):
        def __init__(self, dataset, **kw):
            super().__init__(**kw)
            self.dataset = dataset

        def _load(self):
            return {"train": self.dataset, "val": self.dataset, "test": self.dataset}

    for dataset, reason in ((WithTransform(torch.randn(10, 3), torch.arange(10)), "RandomHorizontalFlip"),
                            (RandomlyTransformed(), "samples read twice differ")):
        with pytest.raises(ConfigError, match=f"data.loader=memory: .*at random \\({reason}\\)"):
            Module(dataset, input_shape=[3], loader="memory").train_loader(torch.device("cpu"))
    plain = TensorDataset(torch.randn(10, 3), torch.arange(10))
    assert len(list(Module(plain, input_shape=[3], loader="memory").train_loader(torch.device("cpu")))) == 1
