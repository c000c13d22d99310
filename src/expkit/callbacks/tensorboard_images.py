"""Pictures in TensorBoard at each validation, the ones the task asks for (``Task.pictures``):
for classification a confusion matrix (class labels, counts, a log colour scale) and a grid of
sample predictions captioned true -> predicted; for regression predicted against true values;
none for a language model; and the model graph once.

Each is switched by this callback's own options (``conf/callbacks/default.yaml``,
``callbacks.tensorboard_images.*``): ``log_confusion_matrix``, ``log_predictions`` (up to
``max_predictions`` images), ``log_scatter`` and ``log_graph``; they draw on the trainer's logger. The
pictures are drawn by matplotlib in a worker process (``expkit.loggers.plots``), off the
training process, and only as often as keeps that worker under ``PICTURE_BUDGET`` of fit's
time: a short run gets the last validation's pictures, a long one pictures along the way.
Whether a validation is drawn is decided when it starts (rank 0 decides for all ranks), so
the validations that are not drawn collect nothing either: the last planned one (last
epoch, or ``max_steps`` reached) always is; a run that early stopping ends shows the latest
validation that was drawn.
``confusion_image`` and ``predictions_grid`` draw plain-torch versions.
"""
from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import torch

from expkit.engine import distributed as dist
from expkit.callbacks.options import TensorBoardImagesOptions
from expkit.engine.callback import Callback
from expkit.options import Configurable

log = logging.getLogger(__name__)

RIGHT = (0.1, 0.75, 0.2)  # green border
WRONG = (0.9, 0.1, 0.1)  # red border
MAX_CELL_PIXELS = 16  # a confusion-matrix cell is a square of at most this many pixels a side ...
MATRIX_PIXELS = 400  # ... and fewer when there are many classes, so the image stays this size or less
MIN_IMAGE_PIXELS = 32  # small inputs (8x8 digits) are enlarged to at least this
PICTURE_BUDGET = 0.02  # the picture worker's share of fit's time, at most (it competes for the CPUs)
WORKER_START_SECONDS = 1.5  # its start-up (Python, numpy, matplotlib), counted before it first runs
NOW, AT_FIT_END = "now", "at fit end"  # when a validation's pictures are sent to the worker


class TensorBoardImages(Callback, Configurable):
    Options = TensorBoardImagesOptions

    def __init__(self, **options: Any) -> None:
        self.num_classes = self.configure(options).num_classes
        self._labels: list[torch.Tensor] = []
        self._preds: list[torch.Tensor] = []
        # (inputs, labels, preds) batches of right / wrong predictions, up to max_predictions each
        self._right: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._wrong: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._scatter: list[tuple[torch.Tensor, torch.Tensor]] = []  # (targets, predictions), rank 0's shard
        self._graph_logged = False
        self._classes = self.num_classes  # null: the model's output width, seen in the first batch
        self._worker: Any = None  # expkit.loggers.plots.PictureWorker, started with the first picture
        self._deferred: list[tuple] = []  # the latest validation's picture requests, not sent yet
        self._drawing: str | None = NOW  # this validation's pictures: NOW, AT_FIT_END or None (decided at its start)
        self._fit_started = time.perf_counter()

    # ------------------------------------------------------------------ hooks
    def _flag(self, trainer: Any, name: str, task: Any = None) -> bool:
        """A picture is drawn when it is switched on, there is a logger to draw it on and (given
        ``task``) the task draws it."""
        wanted = task is None or name.removeprefix("log_") in getattr(task, "pictures", ())
        return trainer.logger is not None and getattr(self.opts, name) and wanted

    def on_validation_start(self, trainer: Any, task: Any) -> None:
        self._labels, self._preds, self._right, self._wrong, self._scatter = [], [], [], [], []
        self._drawing = self._plan(trainer)

    def _plan(self, trainer: Any) -> str | None:
        """Outside fit: NOW. In fit: NOW when the budget allows, else AT_FIT_END for the last
        planned validation (last epoch, or max_steps reached), else None (nothing collected)."""
        if not trainer.fitting or trainer.logger is None:
            return NOW
        last = trainer.epoch >= trainer.max_epochs - 1 or (trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps)
        plan = NOW if self._within_budget() else AT_FIT_END if last else None
        return dist.broadcast_object(plan) if dist.is_distributed() else plan  # the same on every rank

    def on_validation_batch_end(self, trainer: Any, task: Any, result: Any, batch: Any, batch_idx: int) -> None:
        if not self._drawing:
            return
        preds = result.outputs.get("preds")
        if self._flag(trainer, "log_scatter", task) and dist.is_rank_zero() and "targets" in result.outputs:
            self._scatter.append((result.outputs["targets"].detach().cpu(), preds.detach().cpu()))
        if preds is None or not isinstance(batch, (list, tuple)) or len(batch) < 2:
            return
        labels = batch[1]
        if self._classes is None and "logits" in result.outputs:
            self._classes = int(result.outputs["logits"].shape[-1])
        if self._flag(trainer, "log_confusion_matrix", task):
            self._labels.append(labels.detach())
            self._preds.append(preds.detach())
        if not dist.is_rank_zero():
            return
        if self._flag(trainer, "log_graph") and not self._graph_logged:
            self._graph_logged = True
            self._log_graph(trainer, task, batch)
        if self._flag(trainer, "log_predictions", task):
            self._collect_samples(trainer, task.example_input(batch), labels, preds)

    def on_fit_start(self, trainer: Any, task: Any) -> None:
        self._fit_started = time.perf_counter()

    def on_validation_end(self, trainer: Any, task: Any) -> None:
        """This validation's pictures, if it collected them (``_plan``): sent to the worker now,
        or kept until fit ends (a later drawn validation replaces them)."""
        if not self._drawing:
            return
        step, requests = trainer.global_step, []
        # Under DDP every rank joins the reduction, also one whose shard was empty.
        if self._flag(trainer, "log_confusion_matrix", task) and (self._labels or dist.is_distributed()):
            matrix = self._confusion_matrix()
            if dist.is_rank_zero() and matrix.numel():
                requests.append(("confusion", "val/confusion_matrix", step, matrix.tolist(), class_names(len(matrix))))
                trainer.logger.experiment.add_text("val/confusion_matrix_counts", confusion_markdown(matrix), step)
        if self._scatter:  # regression: drawn here (matplotlib), one small figure per validation
            from expkit.callbacks.scatter import scatter_image

            targets, predicted = (torch.cat(parts) for parts in zip(*self._scatter))
            trainer.logger.log_image("val/predicted_vs_true", scatter_image(targets, predicted), step)
        if self._flag(trainer, "log_predictions", task) and dist.is_rank_zero() and (self._right or self._wrong):
            inputs, labels, preds = self._pick_samples(self.opts.max_predictions)
            pictures = as_pictures(inputs)
            if pictures is not None:
                names = class_names(max(self._classes or 0, int(max(labels.max(), preds.max())) + 1))
                requests.append(("predictions", "val/predictions", step, pictures, labels.tolist(), preds.tolist(),
                                 names))
        self._labels, self._preds, self._right, self._wrong, self._scatter = [], [], [], [], []
        if requests:
            self._deferred = requests
            if self._drawing == NOW:
                self._send(trainer)

    def on_fit_end(self, trainer: Any, task: Any) -> None:
        self._send(trainer)  # the last validation's pictures, if still held back
        self._close()

    def on_exception(self, trainer: Any, task: Any, exception: BaseException) -> None:
        self._close()

    def _within_budget(self) -> bool:
        """The picture worker's time (its start-up included, estimated until it runs) stays under
        ``PICTURE_BUDGET`` of the time fit has run, and it is not still drawing."""
        if self._worker is None:
            busy = WORKER_START_SECONDS
        elif not self._worker.idle:
            return False
        else:
            busy = self._worker.busy_seconds
        return busy <= PICTURE_BUDGET * (time.perf_counter() - self._fit_started)

    def _send(self, trainer: Any) -> None:
        if not self._deferred:
            return
        if self._worker is None:
            from expkit.loggers.plots import PictureWorker  # matplotlib's worker starts with the first picture

            trainer.logger.flush()
            self._worker = PictureWorker(str(trainer.logger.save_dir), after_existing=trainer.global_step > 0)
        for drawing, *args in self._deferred:
            self._worker.submit(drawing, *args)
        self._deferred = []
        for error in self._worker.errors:
            log.warning("picture not drawn: %s", error)
        self._worker.errors.clear()

    def _close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def state_dict(self) -> dict[str, Any]:
        return {"graph_logged": self._graph_logged}  # a resumed run does not draw it a second time

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._graph_logged = bool(state.get("graph_logged", False))

    # ---------------------------------------------------------------- helpers
    def _log_graph(self, trainer: Any, task: Any, batch: Any) -> None:
        """Trace the plain model on two samples; a model that cannot be traced only costs a warning."""
        from expkit.engine.checkpoint import unwrap_model
        from expkit.engine.fsdp import is_sharded

        if is_sharded(task.model):  # tracing on rank 0 alone would wait for the others' shards forever
            log.info("model graph not logged: the model is sharded (trainer.strategy=fsdp)")
            return
        example = task.example_input(batch)
        try:
            with warnings.catch_warnings():  # torch.jit.trace's deprecation notice is not the user's concern
                warnings.simplefilter("ignore")
                trainer.logger.log_model_graph(unwrap_model(task.model), example[:2])
        except Exception as e:  # noqa: BLE001 - tracing is best effort; training goes on
            log.warning("model graph not logged: %s", " ".join(str(e).split())[:200])

    def _collect_samples(self, trainer: Any, inputs: Any, labels: torch.Tensor, preds: torch.Tensor) -> None:
        """Keep up to ``max_predictions`` right and as many wrong samples (whole-batch tensor ops)."""
        limit = self.opts.max_predictions
        if not isinstance(inputs, torch.Tensor) or inputs.dim() not in (3, 4):
            return
        correct = preds == labels
        for bucket, mask in ((self._right, correct), (self._wrong, ~correct)):
            want = limit - sum(len(y) for _, y, _ in bucket)
            if want > 0:
                idx = mask.nonzero().flatten()[:want]
                if len(idx):
                    bucket.append((inputs[idx].detach().float().cpu(), labels[idx].cpu(), preds[idx].cpu()))

    def _pick_samples(self, limit: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Up to half wrong predictions, the rest right ones (or more wrong if few are right)."""
        def joined(bucket: list) -> tuple[torch.Tensor, ...]:
            return tuple(torch.cat(parts) for parts in zip(*bucket)) if bucket else ()

        right, wrong = joined(self._right), joined(self._wrong)
        n_right, n_wrong = (len(right[1]) if right else 0), (len(wrong[1]) if wrong else 0)
        take_wrong = min(n_wrong, max(limit // 2, limit - n_right))
        take_right = min(n_right, limit - take_wrong)
        parts = [t for t in (wrong and tuple(x[:take_wrong] for x in wrong),
                             right and tuple(x[:take_right] for x in right)) if t]
        return tuple(torch.cat(items) for items in zip(*parts))

    def _confusion_matrix(self) -> torch.Tensor:
        empty = torch.zeros(0, dtype=torch.long)
        labels = torch.cat(self._labels).long() if self._labels else empty
        preds = torch.cat(self._preds).long() if self._preds else empty
        classes = self._classes or (int(max(labels.max().item(), preds.max().item())) + 1 if len(labels) else 0)
        if dist.is_distributed() and not self.num_classes:
            classes = int(dist.all_reduce_max(float(classes)))
        matrix = torch.bincount(labels * classes + preds, minlength=classes * classes).reshape(classes, classes)
        return dist.all_reduce_sum(matrix).cpu()  # under DDP each rank saw its own shard


def class_names(n: int) -> list[str]:
    return [str(i) for i in range(n)]


def as_pictures(inputs: torch.Tensor) -> Any:
    """Sample inputs as numpy pictures for ``expkit.loggers.plots``: (N, H, W) or (N, H, W, 3),
    each stretched to [0, 1]; ``None`` for inputs that are not 1- or 3-channel images."""
    x = inputs.unsqueeze(1) if inputs.dim() == 3 else inputs
    if x.shape[1] not in (1, 3):
        return None
    lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
    x = ((x - lo) / (hi - lo).clamp(min=1e-8)).float()
    return (x[:, 0] if x.shape[1] == 1 else x.permute(0, 2, 3, 1)).numpy()


def confusion_image(matrix: torch.Tensor) -> torch.Tensor:
    """Rows are true classes, columns predictions; each row is shaded by its share
    (white 0 to dark blue 1), so the diagonal shows per-class recall. CHW in [0, 1]."""
    counts = matrix.double()
    share = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    blue = torch.tensor([0.03, 0.19, 0.42], dtype=torch.float64).view(3, 1, 1)
    image = 1.0 - share.unsqueeze(0) * (1.0 - blue)
    cell = cell_pixels(len(matrix))
    image = image.repeat_interleave(cell, dim=1).repeat_interleave(cell, dim=2)
    if cell >= 4:
        image[:, ::cell, :] = 0.8  # thin grid lines between cells
        image[:, :, ::cell] = 0.8
    return image.float()


def cell_pixels(num_classes: int) -> int:
    """Side of one confusion-matrix cell: 16 px for up to 25 classes, then smaller (at least 1)."""
    return max(1, min(MAX_CELL_PIXELS, MATRIX_PIXELS // max(num_classes, 1)))


def confusion_markdown(matrix: torch.Tensor) -> str:
    """The counts as a Markdown table (TensorBoard's Text tab): rows true, columns predicted."""
    rows = matrix.tolist()  # plain ints: reading tensor elements one by one costs milliseconds
    n = len(rows)
    lines = ["| true \\ pred | " + " | ".join(str(j) for j in range(n)) + " |", "|" + "---|" * (n + 1)]
    lines += [f"| **{i}** | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(rows)]
    return "\n".join(lines)


def predictions_grid(inputs: torch.Tensor, labels: torch.Tensor, preds: torch.Tensor) -> torch.Tensor | None:
    """Sample inputs in a grid, each framed green (right) or red (wrong). ``None`` for inputs
    that are not 1- or 3-channel images."""
    x = inputs.unsqueeze(1) if inputs.dim() == 3 else inputs
    if x.shape[1] not in (1, 3):
        return None
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    x = (x - lo) / (hi - lo).clamp(min=1e-8)  # each image stretched to [0, 1]
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    scale = max(1, -(-MIN_IMAGE_PIXELS // min(x.shape[2], x.shape[3])))
    if scale > 1:
        x = torch.nn.functional.interpolate(x, scale_factor=scale, mode="nearest")
    border = max(2, x.shape[2] // 16)
    colours = torch.tensor([RIGHT, WRONG])[(preds != labels).long()].view(-1, 3, 1, 1)
    framed = colours.expand(-1, -1, x.shape[2] + 2 * border, x.shape[3] + 2 * border).clone()
    framed[:, :, border:-border, border:-border] = x
    return tile(framed, columns=8, padding=2)


def tile(images: torch.Tensor, columns: int, padding: int) -> torch.Tensor:
    """NCHW images laid out row by row on a white canvas, ``padding`` pixels apart."""
    n, c, h, w = images.shape
    cols = min(n, columns)
    rows = -(-n // cols)
    # Each image with white padding below and to its right, blank cells filling the last row,
    # then (rows, cols) cells laid side by side in one reshape; the top and left margins last.
    cells = images.new_ones(rows * cols, c, h + padding, w + padding)
    cells[:n, :, :h, :w] = images
    grid = cells.view(rows, cols, c, h + padding, w + padding).permute(2, 0, 3, 1, 4)
    grid = grid.reshape(c, rows * (h + padding), cols * (w + padding))
    return torch.nn.functional.pad(grid, (padding, 0, padding, 0), value=1.0)
