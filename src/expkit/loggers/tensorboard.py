"""TensorBoard logging into ``<run dir>/tensorboard``; writes on rank 0 only.

``torch.utils.tensorboard`` is imported when the first event is written, so a
config with ``logger=none`` never pays for it.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import torch

from expkit.engine import distributed as dist
from expkit.loggers.options import TensorBoardLoggerOptions
from expkit.options import Configurable
from expkit.event_checksums import use_fast_event_checksums  # noqa: F401 - the writer asks for it on creation


def _hparam_value(value: Any) -> int | float | str | bool:
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _start_after_existing_files(directory: Path) -> None:
    """TensorBoard reads a run's event files in name order, and a name starts with the second
    it was created in: a resumed run's file must not share that second with the file it continues
    (its purge marker would be read before the events it is meant to hide)."""
    stamps = [int(part) for part in (p.name.split(".")[3] for p in directory.glob("events.out.tfevents.*"))
              if part.isdigit()]
    if stamps:
        wait = max(stamps) + 1 - time.time()
        if wait > 0:
            time.sleep(wait)


def png_image(image: torch.Tensor) -> Any:
    """A CHW image (float in [0, 1] or uint8, 1 or 3 channels) as TensorBoard's ``Summary.Image``."""
    from torch.utils.tensorboard.summary import Summary

    from expkit.loggers.png import encode_png

    if image.dtype != torch.uint8:
        image = image.detach().float().mul(255).round_().clamp_(0, 255).to(torch.uint8)
    channels, height, width = image.shape
    pixels = image.cpu().permute(1, 2, 0).contiguous().numpy()
    return Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=encode_png(pixels))


class TensorBoardLogger(Configurable):
    Options = TensorBoardLoggerOptions

    def __init__(self, **options: Any) -> None:
        self.save_dir = Path(self.configure(options).save_dir)
        self._writer: Any = None
        self._purge_step: int | None = None

    def start(self, step: int, resumed: bool = False) -> None:
        """Open the writer; a resumed run hides events a killed run logged after ``step``."""
        self._purge_step = step + 1 if resumed else None

    @property
    def experiment(self) -> Any:
        """The ``SummaryWriter`` (created on first use, rank 0 only; ``None`` elsewhere)."""
        if self._writer is None and dist.is_rank_zero():
            from torch.utils.tensorboard import SummaryWriter

            use_fast_event_checksums()
            self.save_dir.mkdir(parents=True, exist_ok=True)
            if self._purge_step is not None:
                _start_after_existing_files(self.save_dir)
            self._writer = SummaryWriter(log_dir=str(self.save_dir), purge_step=self._purge_step)
        return self._writer

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        writer = self.experiment
        if writer is None:
            return
        for name, value in metrics.items():
            writer.add_scalar(name, value, global_step=step)

    def log_image(self, tag: str, image: torch.Tensor, step: int) -> None:
        """``image``: CHW float in [0, 1] or uint8, 1 or 3 channels.

        The same event ``SummaryWriter.add_image`` writes, for a fraction of its time:
        ``add_image`` resamples every image (even at scale 1) and compresses it hard,
        milliseconds per picture at each validation. Here the pixels are converted by
        torch and encoded by ``expkit.loggers.png`` (a few KB for our flat pictures).
        """
        writer = self.experiment
        if writer is None:
            return
        from torch.utils.tensorboard.summary import Summary

        writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=png_image(image))]), step)

    def log_model_graph(self, model: torch.nn.Module, example: torch.Tensor) -> None:
        if self.experiment is not None:
            self.experiment.add_graph(model, example)

    def log_hyperparams(self, params: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        """Fill TensorBoard's HParams tab: this run's hyperparameters and final metrics.

        The metric values themselves are the scalars already logged under the same tags.
        Only the session summaries are written, no experiment summary: TensorBoard uses the
        first experiment summary it finds under a logdir for every run, so with one per job
        a sweep's tab would list a single job's keys; without any, it takes the union of
        all runs' hyperparameters and scalar tags (``tensorboard --logdir <sweep dir>``).
        """
        writer = self.experiment
        if writer is None:
            return
        from torch.utils.tensorboard.summary import hparams

        clean = {k: _hparam_value(v) for k, v in params.items()}
        _, ssi, sei = hparams(clean, dict(metrics))
        for summary in (ssi, sei):
            writer.file_writer.add_summary(summary)
        writer.flush()

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def finalize(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
