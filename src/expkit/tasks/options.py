"""The tasks' options, defined once (see ``expkit.options``). Torch-free."""
from __future__ import annotations

from dataclasses import dataclass

from expkit.options import Options, one_of, option


@dataclass
class TaskOptions(Options):
    scheduler_interval: str = option("epoch", one_of("epoch", "step"),
                                     "step the LR scheduler every epoch or every optimizer step")
