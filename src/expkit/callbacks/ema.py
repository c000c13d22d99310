"""An exponential moving average of the weights: validated, checkpointed, resumed exactly, and
what evaluation of a checkpoint uses.

The average lives in this callback's state (``eval_model``), so it travels in every checkpoint
and a resume continues it bit for bit. During validation the averaged weights are swapped
into the model, so ``val/*``, the monitored metric, ``best.ckpt``'s choice and the pictures
are the average's; training steps always see the trained weights. ``trainer.test`` and
``eval.py`` on a checkpoint load ``eval_model`` when it is there (``engine.state.load_weights``).
"""
from __future__ import annotations

from typing import Any

import torch

from expkit.callbacks.options import EMAOptions
from expkit.engine.callback import Callback
from expkit.engine.checkpoint import unwrap_model
from expkit.engine.fsdp import is_sharded
from expkit.errors import ConfigError
from expkit.options import Configurable


class EMA(Callback, Configurable):
    """It moves itself first among the trainer's callbacks: it updates the average before a
    checkpoint callback saves a step, and swaps the trained weights back before anyone saves."""

    Options = EMAOptions

    def __init__(self, **options: Any) -> None:
        self.configure(options)
        self.average: dict[str, torch.Tensor] | None = None
        self.updates = 0
        self._pairs: tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]] | None = None
        self._backup: list[torch.Tensor] | None = None

    def on_fit_start(self, trainer: Any, task: Any) -> None:
        if is_sharded(task.model):  # the average would hold this rank's shards, not the model
            raise ConfigError("callbacks.ema with trainer.strategy=fsdp: the EMA keeps whole weights, FSDP only "
                              "shards; use trainer.strategy=ddp or auto with EMA, or callbacks without ema")
        # Moving itself to the front keeps the hook loop that calls this in step: every callback
        # after it stays at its index.
        trainer.callbacks.remove(self)
        trainer.callbacks.insert(0, self)
        weights = unwrap_model(task.model).state_dict()
        if self.average is None:  # a fresh run (a resume has loaded its average already)
            self.average = {k: v.detach().clone() for k, v in weights.items()}
        floats = [k for k, v in weights.items() if v.is_floating_point()]
        others = [k for k in weights if k not in floats]
        self._pairs = ([self.average[k] for k in floats], [weights[k] for k in floats],
                       [self.average[k] for k in others], [weights[k] for k in others])

    def decay(self) -> float:
        d = self.opts.decay
        return min(d, (1 + self.updates) / (10 + self.updates)) if self.opts.warmup else d

    def on_train_batch_end(self, trainer: Any, task: Any, result: Any, batch: Any, batch_idx: int) -> None:
        if not (trainer.optimizer_stepped and trainer.global_step % self.opts.every_n_steps == 0):
            return
        averaged, current, averaged_other, current_other = self._pairs
        with torch.no_grad():
            if averaged:
                torch._foreach_lerp_(averaged, current, 1.0 - self.decay())
            for a, c in zip(averaged_other, current_other):  # integer buffers (BatchNorm's counter)
                a.copy_(c)
        self.updates += 1

    def _swap_in(self) -> None:
        weights = self._pairs[1] + self._pairs[3]
        self._backup = [w.detach().clone() for w in weights]
        with torch.no_grad():
            for w, a in zip(weights, self._pairs[0] + self._pairs[2]):
                w.copy_(a)

    def _swap_back(self) -> None:
        if self._backup is not None:
            with torch.no_grad():
                for w, b in zip(self._pairs[1] + self._pairs[3], self._backup):
                    w.copy_(b)
            self._backup = None

    def on_validation_start(self, trainer: Any, task: Any) -> None:
        if self._pairs is not None:
            self._swap_in()

    def on_validation_end(self, trainer: Any, task: Any) -> None:
        self._swap_back()

    def on_exception(self, trainer: Any, task: Any, exception: BaseException) -> None:
        self._swap_back()

    def state_dict(self) -> dict[str, Any]:
        return {"eval_model": dict(self.average or {}), "updates": self.updates, "decay": self.opts.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.average = {k: v.clone() for k, v in state["eval_model"].items()} if state.get("eval_model") else None
        self.updates = int(state.get("updates", 0))
