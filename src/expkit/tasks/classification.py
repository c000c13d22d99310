"""Classification: cross-entropy loss and accuracy."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from expkit.tasks.base import StepResult, Task
from expkit.tasks.options import ClassificationOptions


class ClassificationTask(Task):
    """``batch = (inputs, integer labels)``; the model returns logits. ``label_smoothing`` applies
    to the training loss; validation and test report the plain cross-entropy."""

    pictures = ("confusion_matrix", "predictions")
    Options = ClassificationOptions

    def _step(self, batch: list[torch.Tensor], label_smoothing: float = 0.0) -> StepResult:
        x, y = batch
        logits = self.model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        preds = logits.argmax(dim=1)
        # Counted in float64 so that acc * batch_size is exactly the number correct.
        exact = torch.float32 if y.device.type == "mps" else torch.float64
        acc = (preds == y).sum(dtype=exact) / len(y)
        return StepResult(loss=loss, metrics={"loss": loss.detach(), "acc": acc}, batch_size=len(y),
                          outputs={"preds": preds, "logits": logits})

    def training_step(self, batch: list[torch.Tensor]) -> StepResult:
        return self._step(batch, self.opts.label_smoothing)

    def validation_step(self, batch: list[torch.Tensor]) -> StepResult:
        return self._step(batch)
