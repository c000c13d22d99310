"""Whose error is it: a bug in the researcher's own code keeps its traceback (exit 1, where
it was raised in status.json); expkit's input errors and Hydra's composition errors are
one line and exit 2. Real ``python train.py`` processes."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import FAST, ROOT, read_json, train

TESTS = Path(__file__).resolve().parent
USER_CODE = {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}


def _line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_a_bug_in_a_models_init_keeps_its_traceback(tmp_path):
    run_dir = tmp_path / "run"
    proc = train(*FAST, "logger=none", "model._target_=user_components.BrokenModel", f"hydra.run.dir={run_dir}",
                 env=USER_CODE, check=False)

    source = TESTS / "user_components.py"
    line = _line_of(source, 'raise ValueError("boom")')
    frame = f'File "{source}", line {line}, in __init__'
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert frame in proc.stderr and "ValueError: boom" in proc.stderr
    log = (run_dir / "train.log").read_text()
    assert frame in log and "ValueError: boom" in log
    status = read_json(run_dir / "status.json")
    assert status["status"] == "failed"
    assert status["exception"] == {"type": "ValueError", "message": "boom", "where": f"{source}:{line}"}


@pytest.mark.parametrize("override, key", [("trainer.max_epoch=3", "trainer.max_epoch"),
                                           ("model=nope", "model/nope"),
                                           ("trainer.max_epochs=[", "[")])
def test_hydra_composition_errors_are_one_line_and_exit_2(tmp_path, override, key):
    proc = train(override, f"hydra.run.dir={tmp_path / 'run'}", check=False)

    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and len(lines) <= 2 and key in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()  # nothing was started


def test_expkit_input_errors_stay_one_line(tmp_path):
    proc = train(*FAST, "logger=none", "ckpt_path=no/such.ckpt", f"hydra.run.dir={tmp_path}", check=False)

    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "error: ckpt_path=no/such.ckpt: no such file" in proc.stderr
    assert read_json(tmp_path / "status.json")["status"] == "failed"
    assert ROOT.is_dir()
