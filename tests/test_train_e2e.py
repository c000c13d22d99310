"""`python train.py` end to end, as a user runs it: files, metrics, TensorBoard, bad input."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import read_json, read_scalars, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def five_epochs(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("e2e") / "run"
    proc = train("model=mlp", "trainer.max_epochs=5", f"hydra.run.dir={run}")
    (run.parent / "console.txt").write_text(proc.stdout + proc.stderr)
    return run


def test_the_run_ends_with_one_results_table_on_the_console_and_in_train_log(five_epochs: Path):
    metrics = read_json(five_epochs / "metrics.json")
    for text in ((five_epochs.parent / "console.txt").read_text(), (five_epochs / "train.log").read_text()):
        assert text.count("results:") == 1
        table = text.split("results:", 1)[1]
        assert f"test/acc       {metrics['test/acc']:.4f}" in table
        assert f"best epoch     {metrics['best_epoch']} (val/acc " in table
        assert "trained        5 epochs, " in table and "training samples/s" in table
        assert f"run directory  {five_epochs}" in table


def test_the_model_summary_is_in_the_log_and_in_tensorboard(five_epochs: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log_text = (five_epochs / "train.log").read_text()
    assert "model MLP:" in log_text and "total parameters: 17.2 K" in log_text and "net.1" in log_text
    acc = EventAccumulator(str(five_epochs), size_guidance={"tensors": 0})
    acc.Reload()
    texts = acc.Tensors("model/summary/text_summary")
    assert len(texts) == 1
    summary = texts[0].tensor_proto.string_val[0].decode()
    assert "| net.1 | Linear |" in summary and "**trainable parameters**: 17.2 K" in summary


def test_run_directory_holds_every_promised_file(five_epochs: Path):
    run = five_epochs
    for name in (".hydra/config.yaml", ".hydra/overrides.yaml", "config.yaml", "train.log", "metrics.json",
                 "checkpoints/last.ckpt", "checkpoints/best.ckpt"):
        assert (run / name).is_file(), name
    assert list((run).glob("events.out.tfevents.*"))
    assert "${" not in (run / "config.yaml").read_text()  # fully resolved


def test_mlp_reaches_95_percent_on_digits_in_five_epochs(five_epochs: Path):
    metrics = read_json(five_epochs / "metrics.json")
    assert metrics["test/acc"] >= 0.95
    for key in ("val/acc", "val/loss", "test/loss", "train/acc", "train/loss", "best_epoch"):
        assert key in metrics
    assert 0 <= metrics["best_epoch"] <= 4


def test_tensorboard_has_one_val_point_per_epoch_and_the_promised_scalars(five_epochs: Path):
    scalars = read_scalars(five_epochs)
    for tag in ("train/loss", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc", "lr"):
        assert tag in scalars, tag
    val_steps = [step for step, _ in scalars["val/acc"]]
    assert len(val_steps) == 5 and val_steps == sorted(set(val_steps))
    assert scalars["val/acc"][-1][1] == pytest.approx(read_json(five_epochs / "metrics.json")["val/acc"], abs=1e-6)


def test_hparams_tab_lists_the_run(five_epochs: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(five_epochs))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    # No experiment summary on purpose: TensorBoard then builds the columns from every run
    # under the logdir, so a sweep's jobs with different keys all show up.
    assert {"_hparams_/session_start_info", "_hparams_/session_end_info"} <= set(content)
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = start.session_start_info.hparams
    assert hp["optimizer.lr"].number_value == pytest.approx(0.003)
    assert hp["model._target_"].string_value == "expkit.models.MLP"


def test_checkpoints_are_plain_and_load_with_weights_only(five_epochs: Path):
    state = torch.load(five_epochs / "checkpoints" / "best.ckpt", weights_only=True)
    assert set(state["model"]) == {"net.1.weight", "net.1.bias", "net.3.weight", "net.3.bias",
                                   "net.5.weight", "net.5.bias"}
    assert state["config"]["model"]["hidden_sizes"] == [128, 64]


def test_train_log_has_no_duplicated_lines(five_epochs: Path):
    lines = (five_epochs / "train.log").read_text().splitlines()
    assert sum("epoch 4 done" in line for line in lines) == 1
    assert len(lines) == len(set(lines))


@pytest.mark.parametrize("override,key", [
    ("trainer.max_epochs=-1", "trainer.max_epochs=-1"),
    ("optimizer.lr=0", "optimizer.lr=0"),
    ("data.batch_size=0", "data.batch_size=0"),
    ("trainer.precision=64-true", "trainer.precision='64-true'"),
])
def test_out_of_range_values_stop_before_training_with_one_line(tmp_path: Path, override: str, key: str):
    run = tmp_path / "run"
    proc = train(override, f"hydra.run.dir={run}", check=False)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and key in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (run / "checkpoints").exists() and not (run / "metrics.json").exists()


def test_unknown_group_option_lists_the_valid_ones(tmp_path: Path):
    proc = train("model=perceiver", f"hydra.run.dir={tmp_path}/run", check=False)
    assert proc.returncode != 0
    assert "model" in proc.stderr and "mlp" in proc.stderr and "cnn" in proc.stderr
