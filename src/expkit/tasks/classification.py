"""Classification: cross-entropy loss and accuracy."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from expkit.tasks.base import StepResult, Task


class ClassificationTask(Task):
    """``batch = (inputs, integer labels)``; the model returns logits."""

    pictures = ("confusion_matrix", "predictions")

    def _step(self, batch: list[torch.Tensor]) -> StepResult:
        x, y = batch
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        preds = logits.argmax(dim=1)
        # Counted in float64 so that acc * batch_size is exactly the number correct.
        exact = torch.float32 if y.device.type == "mps" else torch.float64
        acc = (preds == y).sum(dtype=exact) / len(y)
        return StepResult(loss=loss, metrics={"loss": loss.detach(), "acc": acc}, batch_size=len(y),
                          outputs={"preds": preds, "logits": logits})

    def training_step(self, batch: list[torch.Tensor]) -> StepResult:
        return self._step(batch)

    def validation_step(self, batch: list[torch.Tensor]) -> StepResult:
        return self._step(batch)
