"""Shared test helpers: run the real entry points in subprocesses, read real event files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(1)


def run_script(script: str, *overrides: str, cwd: Path = ROOT, timeout: float = 240,
               env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python <script> <overrides>`` from the repository root, as a user would."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", **(env or {})}
    proc = subprocess.run([sys.executable, str(cwd / script), *overrides], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(overrides)} exited {proc.returncode}\n"
                             f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}")
    return proc


def train(*overrides: str, **kwargs: Any) -> subprocess.CompletedProcess:
    return run_script("train.py", *overrides, **kwargs)


def read_scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in a TensorBoard run directory, through TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def assert_same_metrics(metrics: dict, expected: dict) -> None:
    """The same keys, and the same values to 1e-5."""
    assert metrics.keys() == expected.keys()
    for key, value in expected.items():
        assert metrics[key] == (pytest.approx(value, abs=1e-5) if isinstance(value, float) else value), key


def free_port() -> int:
    """A TCP port free on this machine now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


#: Small, fast settings for subprocess runs.
FAST = ("trainer.max_epochs=1", "trainer.num_sanity_val_steps=0")


@pytest.fixture
def root() -> Path:
    return ROOT
