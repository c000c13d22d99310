"""Options of the torch optimizers and schedulers the configs offer (``conf/optimizer``,
``conf/scheduler``), defined once like expkit's own components. Torch-free: torch's classes
take these as keyword arguments, and the rules catch what torch would only notice late
(``lr=inf`` trains NaNs, ``T_max=0`` divides by zero after the first epoch)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from expkit.options import Options, Rule, integer, number, option, optional

BETAS = Rule(lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(number(0, maximum=1).test(b) and b < 1
                                                                          for b in v),
             "must be two numbers in [0, 1)")


@dataclass
class OptimizerOptions(Options):
    lr: float = option(1e-3, number(0, exclusive=True))
    weight_decay: float = option(0.0, number(0))


@dataclass
class AdamOptions(OptimizerOptions):
    """Adam and AdamW."""

    betas: List[float] = option([0.9, 0.999], BETAS)
    eps: float = option(1e-8, number(0, exclusive=True))
    amsgrad: bool = option(False)


@dataclass
class SGDOptions(OptimizerOptions):
    momentum: float = option(0.0, number(0))
    dampening: float = option(0.0, number(0))
    nesterov: bool = option(False)


@dataclass
class CosineOptions(Options):
    T_max: int = option(10, integer(1), "epochs (or steps) of the half cosine")
    eta_min: float = option(0.0, number(0))


@dataclass
class StepLROptions(Options):
    step_size: int = option(3, integer(1))
    gamma: float = option(0.1, number(0, exclusive=True))


@dataclass
class WarmupCosineOptions(Options):
    """``expkit.tasks.schedulers.WarmupCosineLR``: stepped every optimizer step."""

    warmup_steps: int = option(500, integer(0), "optimizer steps of linear warmup")
    total_steps: Optional[int] = option(None, optional(integer(1)), "null: the run's planned optimizer steps")
    warmup_start_factor: float = option(0.01, number(0, maximum=1), "the first step's LR, as a fraction of lr")
    eta_min: float = option(0.0, number(0), "the LR at the end of the cosine")
