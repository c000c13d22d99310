"""debug= and experiment= configs: each composes and runs; overfit drives the loss to
near zero; each experiment reaches the accuracy its file documents."""
from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, read_json, train

from expkit.config import validate
from expkit.config.schema import register

DEBUG = sorted(p.stem for p in (ROOT / "conf" / "debug").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


def compose(*overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        return hydra_compose(config_name="train", overrides=list(overrides))


def test_every_option_exists():
    assert {"fast", "overfit", "limit", "profile"} <= set(DEBUG)
    assert {"digits_mlp", "mnist_cnn"} <= set(EXPERIMENTS)
    for name in DEBUG + EXPERIMENTS:
        folder = "debug" if name in DEBUG else "experiment"
        assert (ROOT / "conf" / folder / f"{name}.yaml").read_text().startswith("# @package _global_"), name


@pytest.mark.parametrize("overlay", [f"debug={d}" for d in DEBUG] + [f"experiment={e}" for e in EXPERIMENTS])
def test_composes_and_passes_the_checks(overlay):
    cfg = compose(overlay)
    validate(cfg)
    if overlay == "debug=fast":
        assert cfg.trainer.fast_dev_run and not cfg.logger
    if overlay == "experiment=mnist_cnn":
        assert cfg.data._target_.endswith("MNISTDataModule") and cfg.model._target_.endswith("CNN")


def test_experiment_then_debug_combine():
    cfg = compose("experiment=digits_mlp", "debug=fast")
    assert cfg.trainer.fast_dev_run and cfg.trainer.max_epochs == 30 and cfg.model.dropout == 0.1


@pytest.mark.slow
def test_debug_fast_runs_one_batch_and_saves_nothing(tmp_path):
    proc = train("debug=fast", f"hydra.run.dir={tmp_path}")
    metrics = read_json(tmp_path / "metrics.json")
    assert "test/acc" in metrics and "val/acc" in metrics
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.glob("events.out.tfevents.*"))
    assert len(re.findall(r"epoch \d+ done", proc.stderr)) == 1


@pytest.mark.slow
def test_debug_overfit_drives_train_loss_near_zero(tmp_path):
    train("debug=overfit", f"hydra.run.dir={tmp_path}")
    metrics = read_json(tmp_path / "metrics.json")
    assert metrics["train/loss"] < 0.05 and metrics["train/acc"] == 1.0
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.slow
def test_debug_limit_uses_a_fraction_of_each_split(tmp_path):
    from conftest import read_scalars

    train("debug=limit", "trainer.num_sanity_val_steps=0", "trainer.log_every_n_steps=1",
          "callbacks.tensorboard_images.log_graph=false", "callbacks.tensorboard_images.log_predictions=false",
          "callbacks.tensorboard_images.log_confusion_matrix=false",
          f"hydra.run.dir={tmp_path}")
    scalars = read_scalars(tmp_path)
    # digits: 1,258 training images in batches of 64 = 20 batches; 10% of them = 2 steps an epoch, 3 epochs
    assert [step for step, _ in scalars["train/loss_step"]] == list(range(1, 7))
    # the logger's switches turn the TensorBoard pictures off
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    assert events.Tags()["images"] == [] and not events.Tags()["graph"]


@pytest.mark.slow
def test_debug_profile_writes_a_tensorboard_trace(tmp_path):
    import json

    train("debug=profile", f"hydra.run.dir={tmp_path}")
    traces = list((tmp_path / "profiler").glob("*.pt.trace.json"))
    assert len(traces) == 1
    events = json.loads(traces[0].read_text())["traceEvents"]
    steps = {e["name"] for e in events if e.get("name", "").startswith("ProfilerStep#")}
    assert len(steps) == 3  # the active steps of the schedule


def documented_accuracy(name: str) -> float:
    text = (ROOT / "conf" / "experiment" / f"{name}.yaml").read_text()
    return float(re.search(r"^# Expected: test/acc >= ([\d.]+)", text, flags=re.M).group(1))


@pytest.mark.slow
def test_digits_mlp_reaches_its_documented_accuracy(tmp_path):
    train("experiment=digits_mlp", "logger=none", f"hydra.run.dir={tmp_path}")
    assert read_json(tmp_path / "metrics.json")["test/acc"] >= documented_accuracy("digits_mlp")


def write_mnist_idx(root: Path, n_train: int = 1200, n_test: int = 300) -> None:
    """Real MNIST-format (IDX) files in ``root/MNIST/raw``: scikit-learn's 8x8 digits enlarged
    to 20x20 and centred in 28x28, like MNIST's own digits."""
    from expkit.data.digits import _digits_file

    table = np.loadtxt(_digits_file(), delimiter=",", dtype=np.float32)
    x = torch.from_numpy(table[:, :-1]).reshape(-1, 1, 8, 8) / 16.0
    x = torch.nn.functional.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False)
    images = (torch.nn.functional.pad(x, (4, 4, 4, 4))[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    labels = table[:, -1].astype(np.uint8)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)

    def write(name: str, array: np.ndarray) -> None:
        header = struct.pack(">IIII", 2051, len(array), 28, 28) if array.ndim == 3 else struct.pack(">II", 2049,
                                                                                                        len(array))
        with gzip.open(raw / f"{name}.gz", "wb") as f:  # torchvision reads the .gz as well
            f.write(header + array.tobytes())
        (raw / name).write_bytes(header + array.tobytes())

    write("train-images-idx3-ubyte", images[:n_train])
    write("train-labels-idx1-ubyte", labels[:n_train])
    write("t10k-images-idx3-ubyte", images[n_train:n_train + n_test])
    write("t10k-labels-idx1-ubyte", labels[n_train:n_train + n_test])


@pytest.mark.slow
def test_mnist_cnn_trains_on_mnist_format_files(tmp_path):
    write_mnist_idx(tmp_path / "data")
    train("experiment=mnist_cnn", f"paths.data_dir={tmp_path / 'data'}", "trainer.max_epochs=3",
          "data.batch_size=32", "trainer.num_sanity_val_steps=0", "logger=none", f"hydra.run.dir={tmp_path / 'run'}")
    metrics = read_json(tmp_path / "run" / "metrics.json")
    text = (ROOT / "conf" / "experiment" / "mnist_cnn.yaml").read_text()
    offline = float(re.search(r"test/acc >= ([\d.]+) after\n# 3 epochs", text).group(1))
    assert metrics["test/acc"] >= offline
