"""expkit's training engine. Imports torch only: no Hydra, no OmegaConf. Names load on first use."""
from expkit.lazy import exports

__all__ = ["Callback", "CheckpointCallback", "CheckpointError", "EXIT_PREEMPTED", "NonFiniteLossError", "Preempted",
           "Trainer", "TrainerOptions", "seed_everything"]
__getattr__, __dir__ = exports(__name__, {
    "Callback": "callback", "CheckpointCallback": "callback", "CheckpointError": "checkpoint",
    "EXIT_PREEMPTED": "preemption", "NonFiniteLossError": "guard", "Preempted": "preemption", "Trainer": "trainer",
    "TrainerOptions": "options", "seed_everything": "seed"})
