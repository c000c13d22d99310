"""Event-file naming rules shared by the processes that write into one TensorBoard run. Torch-free."""
from __future__ import annotations

import time
from pathlib import Path


def start_after_existing_files(directory: Path) -> None:
    """TensorBoard reads a run's event files in name order, and a name starts with the second
    it was created in: a resumed run's file must not share that second with the file it continues
    (its purge marker would be read before the events it is meant to hide)."""
    stamps = [int(part) for part in (p.name.split(".")[3] for p in directory.glob("events.out.tfevents.*"))
              if part.isdigit()]
    if stamps:
        wait = max(stamps) + 1 - time.time()
        if wait > 0:
            time.sleep(wait)
