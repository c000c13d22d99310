"""expkit's training engine. Imports torch only: no Hydra, no OmegaConf."""
from expkit.engine.callback import Callback
from expkit.engine.checkpoint import CheckpointError
from expkit.engine.preemption import EXIT_PREEMPTED, Preempted
from expkit.engine.seed import seed_everything
from expkit.engine.trainer import NonFiniteLossError, Trainer

__all__ = ["Callback", "CheckpointError", "EXIT_PREEMPTED", "NonFiniteLossError", "Preempted", "Trainer",
           "seed_everything"]
