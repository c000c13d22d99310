"""The GPU speed switches, exercised on CPU wherever torch can run them there:
bf16-mixed and 16-mixed autocast, channels_last, torch.compile (checkpoints keep the
plain module's keys), and the TF32 / cudnn.benchmark flags reaching torch's backends."""
from __future__ import annotations

from functools import partial

import pytest
import torch

from expkit.callbacks import ModelCheckpoint
from expkit.data import DigitsDataModule
from expkit.engine import Callback, Trainer
from expkit.engine import checkpoint as ckpt
from expkit.models import CNN, MLP, Linear
from expkit.tasks import ClassificationTask


class Observed(ClassificationTask):
    """Records what the engine set up around each training step."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.autocast: list[tuple[bool, torch.dtype]] = []
        self.channels_last: list[bool] = []
        self.logits_dtypes: list[torch.dtype] = []

    def training_step(self, batch):
        self.autocast.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        self.channels_last.append(batch[0].dim() == 4 and batch[0].is_contiguous(memory_format=torch.channels_last)
                                  and batch[0].stride(1) == 1)
        result = super().training_step(batch)
        self.logits_dtypes.append(self.model(batch[0]).dtype)
        return result


def make_task(model: torch.nn.Module) -> Observed:
    return Observed(model, optimizer=partial(torch.optim.Adam, lr=1e-3))


def fit(tmp_path, model_cls=MLP, **trainer_kwargs) -> tuple[Trainer, Observed]:
    torch.manual_seed(0)
    task = make_task(model_cls((1, 8, 8), 10))
    trainer = Trainer(max_epochs=1, num_sanity_val_steps=0, default_root_dir=tmp_path,
                      callbacks=[ModelCheckpoint(dirpath=str(tmp_path / "ckpts"))], **trainer_kwargs)
    trainer.fit(task, DigitsDataModule(batch_size=64))
    return trainer, task


def test_bf16_mixed_trains_on_cpu_under_autocast(tmp_path):
    trainer, task = fit(tmp_path, precision="bf16-mixed")
    assert set(task.autocast) == {(True, torch.bfloat16)}
    assert set(task.logits_dtypes) == {torch.bfloat16}  # the linear layers really ran in bf16
    assert all(p.dtype == torch.float32 for p in task.model.parameters())  # master weights stay fp32
    assert trainer.scaler is None
    assert 0 < trainer.callback_metrics["train/loss"] < 10
    assert trainer.callback_metrics["val/acc"] > 0.1


def test_16_mixed_runs_on_cpu_with_a_grad_scaler(tmp_path):
    """Decision: allowed on CPU (torch has float16 autocast and a GradScaler for CPU); its
    scaler state goes into the checkpoint so a resume continues with the same scale."""
    trainer, task = fit(tmp_path, precision="16-mixed")
    assert set(task.autocast) == {(True, torch.float16)}
    assert isinstance(trainer.scaler, torch.amp.GradScaler)
    state = ckpt.load(tmp_path / "ckpts" / "last.ckpt")
    assert state["grad_scaler"] is not None and state["grad_scaler"]["scale"] > 0
    assert torch.isfinite(torch.tensor(trainer.callback_metrics["train/loss"]))


def test_full_precision_runs_without_autocast(tmp_path):
    _, task = fit(tmp_path)
    assert not any(enabled for enabled, _ in task.autocast)
    assert set(task.logits_dtypes) == {torch.float32}


def test_channels_last_reaches_the_cnn_weights_and_every_batch(tmp_path):
    """Three input channels, so that channels_last is a different layout from the default."""
    from expkit.data import SyntheticDataModule

    torch.manual_seed(0)
    task = make_task(CNN((3, 8, 8), 10))
    inner: list[bool] = []
    task.model.features[3].register_forward_hook(
        lambda module, args, out: inner.append(args[0].is_contiguous(memory_format=torch.channels_last)
                                               and not args[0].is_contiguous()))
    trainer = Trainer(max_epochs=1, num_sanity_val_steps=0, channels_last=True, default_root_dir=tmp_path,
                      callbacks=[ModelCheckpoint(dirpath=str(tmp_path / "ckpts"))])
    trainer.fit(task, SyntheticDataModule(input_shape=(3, 8, 8), num_train=256, num_val=64, batch_size=64))
    assert task.channels_last == [True] * 4  # every batch arrived in channels_last layout
    assert inner and all(inner)  # and the layout carried through the conv stack
    assert task.model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    plain = ckpt.load(tmp_path / "ckpts" / "last.ckpt")["model"]
    assert set(plain) == set(task.model.state_dict())


@pytest.mark.slow
def test_compile_trains_and_checkpoints_hold_the_plain_module_keys(tmp_path):
    """torch.compile with inductor on CPU (needs a C++ compiler); a one-layer model and two
    batches keep the compile to a few graphs."""
    torch.manual_seed(0)
    task = make_task(Linear((1, 8, 8), 10))
    trainer = Trainer(max_epochs=1, num_sanity_val_steps=0, compile=True, limit_train_batches=2,
                      limit_val_batches=1, default_root_dir=tmp_path,
                      callbacks=[ModelCheckpoint(dirpath=str(tmp_path / "ckpts"))])
    seen = []

    class SeeModel(Callback):
        def on_train_batch_end(self, trainer, task, result, batch, batch_idx):
            seen.append(hasattr(task.model, "_orig_mod"))

    trainer.callbacks.append(SeeModel())
    trainer.fit(task, DigitsDataModule(batch_size=64))
    assert seen == [True, True]  # it trained through the compiled module
    assert not hasattr(task.model, "_orig_mod")  # and fit handed back the plain one
    state = ckpt.load(tmp_path / "ckpts" / "last.ckpt")
    assert sorted(state["model"]) == ["layer.bias", "layer.weight"]
    assert not any("_orig_mod" in key for key in state["model"])


@pytest.fixture
def restore_backends():
    before = (torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark,
              torch.backends.cudnn.deterministic, torch.are_deterministic_algorithms_enabled())
    yield
    torch.set_float32_matmul_precision(before[0])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[1], before[2]
    torch.use_deterministic_algorithms(before[3])


@pytest.mark.parametrize("precision", ["high", "medium", "highest"])
def test_matmul_precision_sets_torch_tf32_mode(tmp_path, restore_backends, precision):
    fit(tmp_path, max_steps=1, matmul_precision=precision)
    assert torch.get_float32_matmul_precision() == precision


def test_cudnn_benchmark_flag_reaches_the_backend_unless_deterministic(tmp_path, restore_backends):
    fit(tmp_path / "a", max_steps=1, cudnn_benchmark=True)
    assert torch.backends.cudnn.benchmark is True
    fit(tmp_path / "b", max_steps=1, cudnn_benchmark=True, deterministic=True)
    assert torch.backends.cudnn.benchmark is False  # deterministic wins: benchmark picks kernels by timing
    fit(tmp_path / "c", max_steps=1)
    assert torch.backends.cudnn.benchmark is False


@pytest.mark.parametrize("bad", ["bf16", "fp16", "64"])
def test_unknown_precision_is_one_clear_error(bad):
    with pytest.raises(ValueError, match=f"precision='{bad}': must be one of 32, bf16-mixed, 16-mixed"):
        Trainer(precision=bad)
