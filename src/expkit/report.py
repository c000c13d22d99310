"""What a researcher reads first and last: the model summary when training starts, and one
results table when the run ends (console and ``train.log``; the summary also in TensorBoard)."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Mapping

from expkit.engine.callback import Callback

log = logging.getLogger(__name__)


def _count(n: int) -> str:
    """1234567 -> '1.2 M' (and K below a million), the way parameter counts are read."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return str(n)


def model_rows(model: Any) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    """(name, type, parameters) of each top-level module, and the totals (all, trainable, MB)."""
    params = list(model.parameters())
    size = sum(t.numel() * t.element_size() for t in [*params, *model.buffers()])
    children = list(model.named_children())
    if len(children) == 1:  # one container (MLP's ``net``): its parts say more
        prefix, only = children[0]
        children = [(f"{prefix}.{name}", child) for name, child in only.named_children()] or children
    rows = [(name, type(child).__name__, _count(sum(p.numel() for p in child.parameters())))
            for name, child in children]
    totals = {"total parameters": _count(sum(p.numel() for p in params)),
              "trainable parameters": _count(sum(p.numel() for p in params if p.requires_grad)),
              "size": f"{size / 1e6:.2f} MB (parameters and buffers)"}
    return rows, totals


def model_summary(model: Any) -> tuple[str, str]:
    """The summary as aligned text (the log) and as a Markdown table (TensorBoard's Text tab)."""
    rows, totals = model_rows(model)
    table = [("module", "type", "params"), *rows]
    widths = [max(len(r[i]) for r in table) for i in range(3)]
    text = [f"model {type(model).__name__}:"]
    text += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in table]
    text += [f"  {key}: {value}" for key, value in totals.items()]
    md = ["| module | type | params |", "|---|---|---|", *(f"| {n} | {t} | {p} |" for n, t, p in rows)]
    md += ["", *(f"**{key}**: {value}  " for key, value in totals.items())]
    return "\n".join(text), "\n".join(md)


def log_lines(text: str) -> None:
    """One log record per line: every line of the console and train.log keeps its prefix."""
    for line in text.splitlines():
        log.info("%s", line)


class RunReport(Callback):
    """Logs the model summary when fit starts, and times and counts the training for the final table."""

    def __init__(self) -> None:
        self.samples = 0
        self.fit_seconds = 0.0
        self._started = 0.0
        self._first_step = 0

    def on_fit_start(self, trainer: Any, task: Any) -> None:
        from expkit.engine.checkpoint import unwrap_model

        self._started, self._first_step = time.perf_counter(), trainer.global_step
        text, markdown = model_summary(unwrap_model(task.model))
        log_lines(text)
        if trainer.logger is not None and trainer.is_global_zero and trainer.global_step == 0:
            trainer.logger.log_text("model/summary", markdown, 0)  # once per run directory, not per resume

    def on_train_batch_end(self, trainer: Any, task: Any, result: Any, batch: Any, batch_idx: int) -> None:
        self.samples += result.batch_size

    def on_fit_end(self, trainer: Any, task: Any) -> None:
        self.fit_seconds = time.perf_counter() - self._started

    def table(self, trainer: Any, metrics: Mapping[str, Any], run_dir: str | Path) -> str:
        """The end-of-run table: test metrics, best epoch, how much was trained, how fast, where."""
        from expkit.engine import distributed as dist

        rows = [(k, f"{v:.4f}") for k, v in sorted(metrics.items()) if k.startswith("test/") and isinstance(v, float)]
        ckpt = trainer.checkpoint_callback
        if ckpt is not None and getattr(ckpt, "best_score", None) is not None:
            rows.append(("best epoch", f"{ckpt.best_epoch} ({ckpt.monitor} {ckpt.best_score:.4f}, "
                                       f"step {getattr(ckpt, 'best_step', None)})"))
        epochs = trainer.epoch + (1 if trainer.epoch_finished else 0)
        rows.append(("trained", f"{epochs} epochs, {trainer.global_step} steps "
                                f"({trainer.global_step - self._first_step} in this process)"))
        samples = self.samples * dist.world_size()
        rate = samples / self.fit_seconds if self.fit_seconds > 0 else float("nan")
        rows.append(("wall time", f"{self.fit_seconds:.1f} s in fit, {rate:,.0f} training samples/s"))
        rows.append(("run directory", str(run_dir)))
        width = max(len(k) for k, _ in rows)
        return "\n".join(["results:", *(f"  {k.ljust(width)}  {v}" for k, v in rows)])
