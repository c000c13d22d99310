"""The task group: regression and language models train and are judged by their own metrics;
perplexity is exp of the exact epoch mean loss; a monitored metric the first validation lacks
fails before training; pictures follow the task; models take their sizes from the data."""
from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import torch

from conftest import FAST, read_json, train

from expkit.callbacks import ModelCheckpoint
from expkit.config.sizes import size_arguments
from expkit.config.stored import SIZES_KEY, check_resume_config
from expkit.data import SyntheticDataModule, TextDataModule
from expkit.data.base import DataModule
from expkit.engine import Callback, Trainer, seed_everything
from expkit.errors import ConfigError
from expkit.models import GRULM, MLP, TransformerLM
from expkit.tasks import LanguageModelTask, RegressionTask
from omegaconf import OmegaConf


class LinearTargets(DataModule):
    """y = x @ w + small noise: a signal an MLP can learn (written by the test, in memory)."""

    input_shape = (6,)

    def sizes(self):
        return {"input_shape": [6], "num_targets": 2, "num_outputs": 2}

    def _load(self):
        g = torch.Generator().manual_seed(0)
        w = torch.randn(6, 2, generator=g)
        out = {}
        for name, n in (("train", 512), ("val", 128), ("test", 128)):
            x = torch.randn(n, 6, generator=g)
            out[name] = (x, x @ w + 0.1 * torch.randn(n, 2, generator=g))
        return out


def trainer(**kwargs) -> Trainer:
    return Trainer(accelerator="cpu", num_sanity_val_steps=0, **kwargs)


def test_regression_beats_the_mean_predictor_clearly():
    seed_everything(0)
    data = LinearTargets(batch_size=32)
    model = MLP(**size_arguments(OmegaConf.create({"_target_": "expkit.models.MLP"}), data.sizes()), hidden_sizes=[32])
    task = RegressionTask(model, optimizer=functools.partial(torch.optim.Adam, lr=0.01))
    fit = trainer(max_epochs=15)
    fit.fit(task, data)
    metrics = fit.test(task, data)
    y = data.splits["test"][1]
    mean_predictor = float(((y - data.splits["train"][1].mean(0)) ** 2).mean())
    assert set(metrics) == {"test/loss", "test/mae"}
    assert metrics["test/loss"] < 0.1 * mean_predictor, (metrics, mean_predictor)


def text_file(tmp_path: Path) -> str:
    """A text with structure to learn: words of a small grammar in a seeded order."""
    g = torch.Generator().manual_seed(0)
    words = ["the cat sat. ", "a dog ran! ", "my fish swam? ", "one bird flew. "]
    text = "".join(words[i] for i in torch.randint(len(words), (500,), generator=g).tolist())
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("model_cls", [TransformerLM, GRULM])
def test_language_model_beats_uniform_and_ppl_is_exp_of_the_exact_mean_loss(tmp_path: Path, model_cls):
    seed_everything(0)
    data = TextDataModule(path=text_file(tmp_path), block_size=32, batch_size=16, val_fraction=0.1, test_fraction=0.1)
    node = OmegaConf.create({"_target_": f"expkit.models.{model_cls.__name__}"})
    kwargs = {"d_model": 32, "num_heads": 2} if model_cls is TransformerLM else {"hidden_size": 64, "num_layers": 1}
    model = model_cls(**size_arguments(node, data.sizes()), **kwargs)
    task = LanguageModelTask(model, optimizer=functools.partial(torch.optim.AdamW, lr=0.01))
    fit = trainer(max_epochs=3)
    fit.fit(task, data)
    logged = fit.callback_metrics
    for split in ("train", "val"):
        assert logged[f"{split}/ppl"] == math.exp(logged[f"{split}/loss"])  # exact: from the epoch mean
    metrics = fit.test(task, data)
    assert set(metrics) == {"test/loss", "test/acc", "test/ppl"}
    assert metrics["test/ppl"] == math.exp(metrics["test/loss"])
    vocabulary = data.sizes()["vocab_size"]
    assert metrics["test/ppl"] < vocabulary / 4 and metrics["test/acc"] > 2 / vocabulary, (metrics, vocabulary)


def test_test_returns_what_callbacks_log_at_test_time():
    class Extra(Callback):
        def on_test_end(self, trainer, task):
            trainer.log_metrics({"test/extra": 1.5})

    data = LinearTargets(batch_size=64)
    task = RegressionTask(MLP((6,), 2), optimizer=functools.partial(torch.optim.SGD, lr=0.01))
    metrics = trainer(max_epochs=1, callbacks=[Extra()]).test(task, data)
    assert metrics["test/extra"] == 1.5 and "test/mae" in metrics


def test_a_monitored_metric_the_sanity_check_lacks_fails_before_training(tmp_path: Path):
    class CountEpochs(Callback):
        epochs = 0

        def on_train_epoch_start(self, trainer, task):
            CountEpochs.epochs += 1

    task = RegressionTask(MLP((6,), 2), optimizer=functools.partial(torch.optim.SGD, lr=0.01))
    fit = Trainer(accelerator="cpu", max_epochs=2, num_sanity_val_steps=1,
                  callbacks=[ModelCheckpoint(dirpath=str(tmp_path), monitor="val/acc"), CountEpochs()])
    with pytest.raises(ConfigError, match=r"^callbacks\.model_checkpoint\.monitor='val/acc': not a logged metric "
                                          r"of the validation; available: val/loss, val/mae \("):
        fit.fit(task, LinearTargets())
    assert CountEpochs.epochs == 0


@pytest.mark.slow
def test_a_wrong_monitor_stops_the_run_with_one_line_and_exit_2(tmp_path: Path):
    proc = train("task=regression", "data=diabetes", "task.monitor=val/acc", f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode == 2
    error = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(error) == 1 and "available: val/loss, val/mae" in error[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "epoch 0 done" not in proc.stderr


def test_models_take_their_sizes_from_the_data_by_name():
    sizes = {"input_shape": [1, 8, 8], "num_classes": 10, "num_outputs": 10}
    mlp = OmegaConf.create({"_target_": "expkit.models.MLP", "hidden_sizes": [8]})
    assert size_arguments(mlp, sizes) == {"input_shape": [1, 8, 8], "num_outputs": 10}
    fixed = OmegaConf.create({"_target_": "expkit.models.MLP", "num_outputs": 3})  # the config wins
    assert size_arguments(fixed, sizes) == {"input_shape": [1, 8, 8]}
    lm = OmegaConf.create({"_target_": "expkit.models.TransformerLM"})
    assert size_arguments(lm, {"vocab_size": 50, "num_outputs": 50, "block_size": 16}) == {"vocab_size": 50,
                                                                                         "block_size": 16}
    # torchvision's factories take **kwargs: they get the output width under their own name
    resnet = OmegaConf.create({"_target_": "torchvision.models.resnet18"})
    assert size_arguments(resnet, {"input_shape": [1], "num_targets": 1, "num_outputs": 1}) == {"num_classes": 1}


def test_a_model_for_other_data_is_one_line_naming_what_the_data_offers():
    from expkit.config.sizes import build_model
    from expkit.data import DigitsDataModule

    node = OmegaConf.create({"_target_": "expkit.models.TransformerLM"})
    with pytest.raises(ConfigError, match=r"^model\._target_=expkit\.models\.TransformerLM: needs vocab_size, "
                                          r"block_size, which DigitsDataModule does not provide \(its sizes: "
                                          r"input_shape, num_classes, num_outputs\)"):
        build_model(node, DigitsDataModule())


def test_a_resume_with_other_data_sizes_is_refused():
    stored = {"model": {"_target_": "m"}, SIZES_KEY: {"vocab_size": 65}}
    check_resume_config(stored, {"model": {"_target_": "m"}}, "last.ckpt")  # sizes not known yet: later
    with pytest.raises(ConfigError, match=r"data_sizes\.vocab_size was 65 in the checkpoint's run and is 70 now"):
        check_resume_config(stored, {SIZES_KEY: {"vocab_size": 70}}, "last.ckpt", keys=(SIZES_KEY,))


@pytest.mark.slow
def test_diabetes_experiment_metrics_checkpoint_and_scatter(tmp_path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train("experiment=diabetes_mlp", f"hydra.run.dir={tmp_path}")
    metrics = read_json(tmp_path / "metrics.json")
    assert {"val/loss", "val/mae", "test/loss", "test/mae", "best_epoch"} <= set(metrics)
    assert metrics["test/loss"] < 0.75  # the mean predictor scores about 1.0 (standardized target)
    state = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)
    assert state["callbacks"]["ModelCheckpoint"]["best_epoch"] == metrics["best_epoch"]
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    images = set(events.Tags()["images"])
    assert "val/predicted_vs_true" in images and "val/confusion_matrix" not in images


@pytest.mark.slow
def test_language_model_trains_from_the_cli_and_eval_reproduces_test_ppl(tmp_path: Path):
    from conftest import run_script

    run = tmp_path / "run"
    train("task=language_model", "data=text", f"data.path={text_file(tmp_path)}", "data.block_size=32", "model=gru",
          "model.hidden_size=64", "model.num_layers=1", *FAST, f"hydra.run.dir={run}")
    metrics = read_json(run / "metrics.json")
    assert {"val/ppl", "test/ppl", "test/acc", "train/ppl"} <= set(metrics)
    assert metrics["test/ppl"] == pytest.approx(math.exp(metrics["test/loss"]), rel=1e-12)
    run_script("eval.py", f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert read_json(tmp_path / "eval" / "metrics.json")["test/ppl"] == metrics["test/ppl"]
