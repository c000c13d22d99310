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

from expkit.engine.metrics import STEP_ONLY_METRICS

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


def read_scalars(tb_dir: Path, timing: bool = False) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in a TensorBoard run directory, through TensorBoard's own reader
    (``timing``: also the wall-time ``STEP_ONLY_METRICS``, so runs compare bit for bit without them)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]
            if timing or tag not in STEP_ONLY_METRICS}


def job_dirs(sweep_dir: Path) -> list[Path]:
    """A sweep's job folders (``3_model=cnn,optimizer.lr=0.01``), in job-number order."""
    jobs = [d for d in Path(sweep_dir).iterdir() if d.is_dir() and d.name.split("_", 1)[0].isdigit()]
    return sorted(jobs, key=lambda d: int(d.name.split("_", 1)[0]))


def job_dir(sweep_dir: Path, num: int) -> Path | None:
    """Job ``num``'s folder, or None while it does not exist."""
    return next((d for d in job_dirs(sweep_dir) if d.name.split("_", 1)[0] == str(num)), None)


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
