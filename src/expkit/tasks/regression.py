"""Regression: mean squared error loss and mean absolute error."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from expkit.tasks.base import StepResult, Task
from expkit.tasks.options import RegressionOptions


class RegressionTask(Task):
    """``batch = (inputs, float targets of shape (N,) or (N, T))``; the model returns (N, T) predictions.

    Both metrics are means over every target value of the batch, so weighting them by the
    batch size gives the exact epoch mean (every sample has the same T targets).
    """

    Options = RegressionOptions
    pictures = ("scatter",)

    def _step(self, batch: list[torch.Tensor]) -> StepResult:
        x, y = batch
        preds = self.model(x)
        y = y.reshape(preds.shape).to(preds.dtype)  # (N,) targets against (N, 1) predictions
        loss = F.mse_loss(preds, y)
        mae = (preds.detach() - y).abs().mean()
        return StepResult(loss=loss, metrics={"loss": loss.detach(), "mae": mae}, batch_size=len(y),
                          outputs={"preds": preds.detach(), "targets": y})

    def training_step(self, batch: list[torch.Tensor]) -> StepResult:
        return self._step(batch)

    def validation_step(self, batch: list[torch.Tensor]) -> StepResult:
        return self._step(batch)
