"""Logging for a run: Hydra's job logging sends records to the console (stderr) and to the
run's ``train.log``; every rank but 0 is reduced to warnings on the console, tagged with its
rank, so a multi-process run writes each line once."""
from __future__ import annotations

import logging.config
from typing import Any


def rank_logging_config(rank: int) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for rank > 0: warnings and errors to stderr, no file.
    Used as Hydra's job logging under torchrun, and directly in spawned DDP workers."""
    return {
        "version": 1,
        "formatters": {"rank": {"format": f"[%(asctime)s][rank {rank}][%(name)s][%(levelname)s] - %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "rank", "stream": "ext://sys.stderr"}},
        "root": {"level": "WARNING", "handlers": ["stderr"]},
        "disable_existing_loggers": False,
    }


def quiet_other_ranks(rank: int) -> None:
    """On rank > 0: replace every handler (train.log included) with warnings on stderr."""
    if rank != 0:
        logging.config.dictConfig(rank_logging_config(rank))
