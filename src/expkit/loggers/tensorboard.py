"""TensorBoard logging into the run directory (``save_dir``); writes on rank 0 only.

``torch.utils.tensorboard`` is imported when the first event is written, so a
config with ``logger=none`` never pays for it.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import torch

from expkit.engine import distributed as dist
from expkit.loggers.event_files import start_after_existing_files as _start_after_existing_files
from expkit.loggers.options import TensorBoardLoggerOptions
from expkit.options import Configurable
from expkit.event_checksums import use_fast_event_checksums  # noqa: F401 - the writer asks for it on creation


def _hparam_value(value: Any) -> int | float | str | bool:
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)




def png_image(image: torch.Tensor) -> Any:
    """A CHW image (float in [0, 1] or uint8, 1 or 3 channels) as TensorBoard's ``Summary.Image``."""
    from torch.utils.tensorboard.summary import Summary

    from expkit.loggers.png import encode_png

    if image.dtype != torch.uint8:
        image = image.detach().float().mul(255).round_().clamp_(0, 255).to(torch.uint8)
    channels, height, width = image.shape
    pixels = image.cpu().permute(1, 2, 0).contiguous().numpy()
    return Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=encode_png(pixels))


#: The Custom Scalars tab: train and validation curves of one metric on one chart.
CUSTOM_SCALARS = {"train and val": {"loss": ["Multiline", ["train/loss", "val/loss"]],
                                    "accuracy": ["Multiline", ["train/acc", "val/acc"]]}}

#: The event file that holds a run's test metrics and its HParams session. Each leg of a resumed
#: run replaces it, so TensorBoard shows the latest leg's hyperparameters (it keeps the first
#: session it reads) and one test point (a resumed run's test would be a second point).
FINAL_SUFFIX = ".final"


def final_writer(directory: Path, wait: bool) -> Any:
    """A fresh writer for the run's final event file, after removing the one an earlier leg left.
    ``wait``: a resumed run's new events must sort after its purge marker (see below)."""
    from torch.utils.tensorboard.writer import FileWriter

    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob(f"events.out.tfevents.*{FINAL_SUFFIX}"):
        old.unlink(missing_ok=True)
    if wait:
        _start_after_existing_files(directory)
    return FileWriter(str(directory), filename_suffix=FINAL_SUFFIX)


class TensorBoardLogger(Configurable):
    Options = TensorBoardLoggerOptions

    def __init__(self, **options: Any) -> None:
        self.save_dir = Path(self.configure(options).save_dir)
        self._writer: Any = None
        self._final: Any = None  # the FINAL_SUFFIX file: test metrics and the HParams session
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
            if self._purge_step is None:  # once per run directory: a resumed run has it already
                self._writer.add_custom_scalars(CUSTOM_SCALARS)
        return self._writer

    @property
    def final(self) -> Any:
        """The writer of the run's final event file (rank 0; created when first used)."""
        if self._final is None and dist.is_rank_zero():
            self._final = final_writer(self.save_dir, wait=self._purge_step is not None)
        return self._final

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        if not dist.is_rank_zero():
            return
        from torch.utils.tensorboard.summary import scalar

        for name, value in metrics.items():
            if name.startswith("test/"):  # replaced by a later leg, not a second point
                self.final.add_summary(scalar(name, value), step)
            else:
                self.experiment.add_scalar(name, value, global_step=step)

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

    def log_png(self, tag: str, png: bytes, width: int, height: int, step: int) -> None:
        """An already encoded PNG (``expkit.loggers.plots``) as an image event."""
        writer = self.experiment
        if writer is None:
            return
        from torch.utils.tensorboard.summary import Summary

        image = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=png)
        writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)

    def log_text(self, tag: str, text: str, step: int) -> None:
        """Markdown in TensorBoard's Text tab."""
        if self.experiment is not None:
            self.experiment.add_text(tag, text, global_step=step)

    def log_model_graph(self, model: torch.nn.Module, example: torch.Tensor) -> None:
        """The model's graph, traced once here without ``torch.jit.trace``'s check (a second run
        and comparison: 60% of the trace's time); ``add_graph`` keeps an already traced module
        as it is, so the graph written is the same."""
        if self.experiment is not None:
            traced = torch.jit.trace(model, example, check_trace=False)  # called in validation: eval mode
            self.experiment.add_graph(traced, example)

    def log_hyperparams(self, params: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        """Fill TensorBoard's HParams tab: this run's hyperparameters and its metrics, in order.

        The metric values themselves are the scalars logged under the same tags (the last
        point of each). The experiment summary names the columns: TensorBoard uses the first
        one it finds under a logdir, so a sweep writes one for all its jobs at its root
        (``expkit.sweep.tensorboard``). Written to the final event file: a resumed run shows
        its latest leg, once.
        """
        if not dist.is_rank_zero():
            return
        from torch.utils.tensorboard.summary import hparams

        clean = {k: _hparam_value(v) for k, v in params.items()}
        for summary in hparams(clean, dict(metrics)):
            self.final.add_summary(summary)
        self.final.flush()

    def flush(self) -> None:
        for writer in (self._writer, self._final):
            if writer is not None:
                writer.flush()

    def finalize(self) -> None:
        for writer in (self._writer, self._final):
            if writer is not None:
                writer.close()
        self._writer = self._final = None
