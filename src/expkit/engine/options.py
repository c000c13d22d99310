"""The trainer's options, defined once (see ``expkit.options``). Torch-free."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from expkit.options import LIMIT, Options, Rule, integer, number, one_of, option, optional

PRECISIONS = ("32", "bf16-mixed", "16-mixed")
#: The strategies that run one process per device, started by a launcher (spawn, torchrun, SLURM).
DISTRIBUTED = ("ddp", "fsdp")


@dataclass
class TrainerOptions(Options):
    max_epochs: int = option(10, integer(1))
    max_steps: int = option(-1, Rule(lambda v: v == -1 or integer(1).test(v), "must be -1 (no limit) or an integer >= 1"))
    accelerator: str = option("auto", one_of("auto", "cpu", "cuda", "mps"), "auto: cuda, then mps, then cpu")
    devices: int = option(1, integer(1), "processes to train on (with strategy=ddp or fsdp)")
    strategy: str = option("auto", one_of("auto", *DISTRIBUTED), "ddp: replicas; fsdp: sharded (FSDP2)")
    precision: str = option("32", Rule(lambda v: str(v) in PRECISIONS, f"must be one of {', '.join(PRECISIONS)}"),
                            "16-mixed uses a GradScaler")
    accumulate_grad_batches: int = option(1, integer(1))
    gradient_clip_val: Optional[float] = option(None, optional(number(0, exclusive=True)))
    gradient_clip_algorithm: str = option("norm", one_of("norm", "value"))
    log_grad_norm: Optional[bool] = option(None, doc="train/grad_norm (before clipping) at each step log; "
                                           "null: when gradient_clip_val is set")
    check_val_every_n_epoch: int = option(1, integer(1))
    val_check_interval: Any = option(None, LIMIT, "also validate inside each epoch: null (no) | fraction in (0, 1] "
                                     "of the epoch | every N optimizer steps")
    num_sanity_val_steps: int = option(2, integer(0), "validation batches run before training")
    log_every_n_steps: int = option(50, integer(1))
    limit_train_batches: Any = option(None, LIMIT, "null | fraction in (0, 1] | number of batches")
    limit_val_batches: Any = option(None, LIMIT)
    limit_test_batches: Any = option(None, LIMIT)
    fast_dev_run: bool = option(False, doc="one batch of each split, one epoch, no checkpoints")
    deterministic: bool = option(False)
    num_threads: Optional[int] = option(None, optional(integer(1)), "intra-op threads; null: torch's default")
    compile: bool = option(False, doc="torch.compile the model (checkpoints keep plain keys)")
    channels_last: bool = option(False)
    matmul_precision: Optional[str] = option(None, optional(one_of("highest", "high", "medium")))
    cudnn_benchmark: bool = option(False)
    default_root_dir: str = option(".", doc="where checkpoints go when no ModelCheckpoint says")
