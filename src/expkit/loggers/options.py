"""The logger's options, defined once (see ``expkit.options``). Torch-free."""
from __future__ import annotations

from dataclasses import dataclass

from expkit.options import Options, option


@dataclass
class TensorBoardLoggerOptions(Options):
    save_dir: str = option("tensorboard", doc="the event files' folder (a TensorBoard run)")
