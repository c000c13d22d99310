"""Language modelling: next-token cross-entropy, next-token accuracy and perplexity."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from expkit.tasks.base import StepResult, Task
from expkit.tasks.options import LanguageModelOptions


class LanguageModelTask(Task):
    """``batch = (tokens, next tokens)``, both (N, L) integers; the model returns (N, L, vocab) logits.

    ``loss`` and ``acc`` are means over the batch's N * L tokens; every window has the same
    length L, so weighting them by N gives exact epoch means. ``ppl`` is exp of that exact
    epoch mean loss (``derived_metrics``), never a mean of per-batch perplexities.
    """

    Options = LanguageModelOptions

    def _step(self, batch: list[torch.Tensor]) -> StepResult:
        x, y = batch
        logits = self.model(x)
        loss = F.cross_entropy(logits.flatten(0, -2), y.flatten())
        exact = torch.float32 if y.device.type == "mps" else torch.float64
        acc = (logits.detach().argmax(dim=-1) == y).sum(dtype=exact) / y.numel()
        return StepResult(loss=loss, metrics={"loss": loss.detach(), "acc": acc}, batch_size=len(y))

    def training_step(self, batch: list[torch.Tensor]) -> StepResult:
        return self._step(batch)

    def validation_step(self, batch: list[torch.Tensor]) -> StepResult:
        return self._step(batch)

    def derived_metrics(self, means: dict[str, float]) -> dict[str, float]:
        return {"ppl": math.exp(min(means["loss"], 700.0))} if "loss" in means else {}  # exp(>709) overflows
