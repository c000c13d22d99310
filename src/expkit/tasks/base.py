"""What a task is: the research code of one step, with no engineering in it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from expkit.errors import ConfigError
from expkit.options import Configurable
from expkit.tasks.options import TaskOptions
from expkit.tasks.param_groups import parameter_groups


@dataclass
class StepResult:
    """What a step hands back to the engine.

    ``loss`` is what is differentiated (a mean over the batch). ``metrics`` are
    batch means the engine turns into exact epoch means by weighting them with
    ``batch_size``. ``outputs`` carries anything callbacks may want (predictions).
    """

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]
    batch_size: int
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)


class Task(nn.Module, Configurable):
    """Holds ``model`` and says what train, validation and test steps compute.

    The engine wraps ``self.model`` for DDP or torch.compile while it trains and
    restores the plain module afterwards, so checkpoints always hold plain keys.
    """

    Options = TaskOptions
    #: The pictures ``TensorBoardImages`` draws for this task at each validation (none by default):
    #: ``confusion_matrix`` and ``predictions`` (classification), ``scatter`` (regression).
    pictures: tuple[str, ...] = ()
    planned_steps: int | None = None  # set by the trainer before configure_optimizers (None: unknown)

    def __init__(self, model: nn.Module, optimizer: Callable[..., torch.optim.Optimizer] | None = None,
                 scheduler: Callable[..., Any] | None = None, **options: Any) -> None:
        super().__init__()
        opts = self.configure(options)
        self.scheduler_interval, self.monitor, self.mode = opts.scheduler_interval, opts.monitor, opts.mode
        self.model = model
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler

    def configure_optimizers(self) -> tuple[torch.optim.Optimizer, Any | None, str]:
        """Build (optimizer, scheduler or None, 'epoch' | 'step') from the partials given."""
        if self.optimizer_factory is None:
            raise ConfigError("the task has no optimizer: pass optimizer=partial(torch.optim.Adam, lr=...)")
        optimizer = self.optimizer_factory(parameter_groups(self.model, self.opts.norm_bias_weight_decay))
        scheduler = self.scheduler_factory(optimizer) if self.scheduler_factory is not None else None
        if scheduler is not None and getattr(scheduler, "total_steps", 0) is None:
            scheduler.total_steps = self.planned_steps  # warmup_cosine: as long as the run
        return optimizer, scheduler, getattr(scheduler, "interval", self.scheduler_interval)

    def training_step(self, batch: Any) -> StepResult:
        raise NotImplementedError

    def validation_step(self, batch: Any) -> StepResult:
        raise NotImplementedError

    def test_step(self, batch: Any) -> StepResult:
        return self.validation_step(batch)

    def derived_metrics(self, means: dict[str, float]) -> dict[str, float]:
        """Metrics computed from a split's exact epoch means (perplexity = exp(mean loss)); the
        engine adds them wherever it turns sums into means, so they are exact too."""
        return {}

    def example_input(self, batch: Any) -> Any:
        """The model input inside a batch (used to trace the model graph)."""
        return batch[0]
