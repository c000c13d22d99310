"""CIFAR-10/100 from the original pickled batch files and image folders of PNG/JPEG files,
all written by the tests themselves in the real on-disk formats."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import read_json, train
from expkit.data import CIFAR10DataModule, CIFAR100DataModule, ImageFolderDataModule
from expkit.errors import ConfigError, DataError

#: One colour per class: a learnable signal that cropping and flipping keep.
PALETTE = np.array([[250, 20, 20], [20, 250, 20], [20, 20, 250], [250, 250, 20], [250, 20, 250],
                    [20, 250, 250], [250, 250, 250], [130, 20, 20], [20, 130, 20], [20, 20, 130]], dtype=np.uint8)


def cifar_images(n: int, num_classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Noise images with a coloured 12x12 square (its colour is the class) at a random place."""
    y = rng.integers(0, num_classes, n)
    x = rng.integers(0, 90, (n, 3, 32, 32)).astype(np.uint8)
    for i, c in enumerate(y):
        top, left = rng.integers(0, 20, 2)
        x[i, :, top:top + 12, left:left + 12] = PALETTE[c % 10][:, None, None]
    return x, y


def write_cifar10(root: Path, per_batch: int, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py/``: data_batch_1..5, test_batch, batches.meta, pickled as the original."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x, y = cifar_images(per_batch, 10, rng)
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": y.tolist(), "data": x.reshape(per_batch, -1),
                         "filenames": [f"{i}.png" for i in range(per_batch)]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}, f)
    return root


def write_cifar100(root: Path, n: int) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("train", "test"):
        x, y = cifar_images(n, 100, rng)
        with open(folder / name, "wb") as f:
            pickle.dump({"fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist(), "data": x.reshape(n, -1)}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": []}, f)
    return root


def test_cifar10_reads_the_original_batch_files(tmp_path):
    write_cifar10(tmp_path, per_batch=20)
    dm = CIFAR10DataModule(root=str(tmp_path), val_fraction=0.2, seed=0)
    dm.setup()
    assert [len(dm.splits[s][1]) for s in ("train", "val", "test")] == [80, 20, 20]
    x, y = dm.splits["train"]
    assert x.shape[1:] == (3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long
    assert dm.class_names == [f"class{i}" for i in range(10)]
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    pixels = torch.tensor(raw["data"][0], dtype=torch.float32).view(3, 32, 32) / 255  # the file's first image
    mean, std = torch.tensor(dm.mean).view(3, 1, 1), torch.tensor(dm.std).view(3, 1, 1)
    assert torch.allclose(dm.splits["test"][0][0], (pixels - mean) / std)
    assert dm.splits["test"][1][0] == raw["labels"][0]


def test_cifar100_reads_train_test_meta(tmp_path):
    write_cifar100(tmp_path, 30)
    dm = CIFAR100DataModule(root=str(tmp_path), val_fraction=0.1)
    dm.setup()
    assert dm.num_classes == 100 and len(dm.class_names) == 100
    assert [len(dm.splits[s][1]) for s in ("train", "val", "test")] == [27, 3, 30]


def test_missing_cifar_files_say_where_to_put_them(tmp_path):
    with pytest.raises(DataError, match=r"cifar-10-batches-py.*data\.download=true"):
        CIFAR10DataModule(root=str(tmp_path)).setup()
    folder = write_cifar10(tmp_path / "broken", per_batch=4) / "cifar-10-batches-py"
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3: not a readable CIFAR batch"):
        CIFAR10DataModule(root=str(tmp_path / "broken")).setup()


def test_missing_cifar_files_are_one_line_from_train_py(tmp_path):
    proc = train("data=cifar10", "model=linear", f"data.root={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}",
                 check=False)
    assert proc.returncode == 2
    assert "cifar-10-batches-py" in proc.stderr and "Traceback" not in proc.stderr


def write_image_folder(root: Path, per_class: int, own_split: bool = False) -> Path:
    """PNG and JPEG files of two sizes in root/<class>/ (or root/<split>/<class>/), written by PIL."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test") if own_split else ("",):
        for c, name in enumerate(["cat", "dog", "emu"]):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                size = (40, 30) if i % 2 else (24, 24)
                pixels = rng.integers(0, 60, (size[1], size[0], 3)).astype(np.uint8)
                pixels[4:-4, 4:-4] = PALETTE[c]
                suffix = ".png" if i % 3 else ".jpg"
                Image.fromarray(pixels).save(folder / f"{i}{suffix}")
    return root


def test_image_folder_splits_decodes_and_resizes(tmp_path):
    write_image_folder(tmp_path, per_class=10)
    dm = ImageFolderDataModule(root=str(tmp_path), image_size=16, val_fraction=0.2, test_fraction=0.2, seed=1)
    assert dm.classes == ["cat", "dog", "emu"] and dm.num_classes == 3 and dm.input_shape == (3, 16, 16)
    dm.setup()
    sizes = [len(dm.splits[s]) for s in ("train", "val", "test")]
    assert sizes == [18, 6, 6]
    paths = [set(p for p, _ in dm.splits[s].items) for s in ("train", "val", "test")]
    assert not (paths[0] & paths[1]) and not (paths[0] & paths[2]) and not (paths[1] & paths[2])
    again = ImageFolderDataModule(root=str(tmp_path), image_size=16, val_fraction=0.2, test_fraction=0.2, seed=1)
    again.setup()
    assert again.splits["test"].items == dm.splits["test"].items  # seeded
    x, y = dm.splits["train"][0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and 0 <= y < 3
    with pytest.raises(ConfigError, match="data.num_classes=5: ImageFolderDataModule has 3"):
        ImageFolderDataModule(root=str(tmp_path), num_classes=5)


def test_image_folder_with_its_own_split(tmp_path):
    write_image_folder(tmp_path, per_class=6, own_split=True)
    dm = ImageFolderDataModule(root=str(tmp_path), image_size=8, val_fraction=0.5)
    dm.setup()
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [9, 9, 18]
    assert all("/test/" in str(p) for p, _ in dm.splits["test"].items)
    with pytest.raises(DataError, match="no such folder"):
        ImageFolderDataModule(root=str(tmp_path / "nope")).setup()


@pytest.mark.slow
def test_image_folder_trains_through_train_py_with_workers(tmp_path):
    write_image_folder(tmp_path / "images", per_class=12)
    train("data=image_folder", "model=cnn", f"data.root={tmp_path / 'images'}", "data.num_classes=3",
          "data.image_size=16", "data.batch_size=8", "data.num_workers=2", "trainer.max_epochs=2",
          "+data.augment=[{_target_: torchvision.transforms.v2.RandomHorizontalFlip}]", "logger=none",
          f"hydra.run.dir={tmp_path / 'run'}")
    metrics = read_json(tmp_path / "run" / "metrics.json")
    assert {"val/acc", "test/acc"} <= metrics.keys()


@pytest.mark.slow
def test_cifar10_resnet18_experiment_runs_one_epoch(tmp_path):
    write_cifar10(tmp_path / "data", per_batch=8)
    train("experiment=cifar10_resnet18", f"data.root={tmp_path / 'data'}", "trainer.max_epochs=1",
          "data.batch_size=16", "logger=none", f"hydra.run.dir={tmp_path / 'run'}")
    metrics = read_json(tmp_path / "run" / "metrics.json")
    assert read_json(tmp_path / "run" / "status.json")["status"] == "ok"
    assert {"train/loss", "val/acc", "test/acc"} <= metrics.keys()


@pytest.mark.slow
def test_cnn_with_crop_and_flip_beats_chance_on_cifar_shaped_data(tmp_path):
    write_cifar10(tmp_path / "data", per_batch=200)  # 900 train, 100 val, 200 test images
    train("data=cifar10", "model=cnn", f"data.root={tmp_path / 'data'}", "trainer.max_epochs=4",
          "data.batch_size=32", "model.channels=[16,32]", "model.hidden_size=64", "optimizer.lr=0.003",
          "+data.augment=[{_target_: expkit.data.augment.RandomCrop, size: 32, padding: 4},"
          "{_target_: expkit.data.augment.RandomHorizontalFlip}]", "logger=none", f"hydra.run.dir={tmp_path / 'run'}")
    metrics = read_json(tmp_path / "run" / "metrics.json")
    assert metrics["test/acc"] >= 0.6, metrics  # chance is 0.1
