"""Logging for a run: Hydra's job logging sends records to the console (stderr) and to the
run's ``train.log``; here every rank but 0 is reduced to warnings on the console, so a
multi-process run writes each line once."""
from __future__ import annotations

import logging


def quiet_other_ranks(rank: int) -> None:
    """On rank > 0: drop file handlers and keep only warnings and errors on the console."""
    if rank == 0:
        return
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(logging.WARNING)
    for name in list(logging.root.manager.loggerDict):
        logger = logging.getLogger(name)
        if logger.level and logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)
