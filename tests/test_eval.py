"""eval.py rebuilds model and data from the checkpoint's stored config and reproduces the
training run's test numbers; overrides still apply; bad input is one line."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from conftest import read_json, read_scalars, run_script, train


def evaluate(*overrides: str, **kwargs):
    return run_script("eval.py", *overrides, **kwargs)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A non-default model and data set, so eval.py's own defaults (mlp, digits) cannot pass by luck."""
    run_dir = tmp_path_factory.mktemp("trained")
    train("data=synthetic", "data.num_train=512", "data.input_shape=[1,6,6]", "data.num_classes=5",
          "model.hidden_sizes=[24]", "trainer.max_epochs=2", "trainer.num_sanity_val_steps=0",
          f"hydra.run.dir={run_dir}")
    return run_dir


@pytest.mark.slow
def test_eval_reproduces_the_training_runs_test_metrics(trained: Path, tmp_path: Path) -> None:
    best = trained / "checkpoints" / "best.ckpt"
    evaluate(f"ckpt_path={best}", env={"EXPKIT_ROOT": str(tmp_path)})
    (run_dir,) = (tmp_path / "outputs" / "eval").iterdir()  # its own run directory
    expected = read_json(trained / "metrics.json")
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["test/acc"] == expected["test/acc"]
    assert metrics["test/loss"] == expected["test/loss"]
    scalars = read_scalars(run_dir)
    step = torch.load(best, weights_only=True)["loop"]["global_step"]
    assert [s for s, _ in scalars["test/acc"]] == [step] and [s for s, _ in scalars["test/loss"]] == [step]
    assert scalars["test/acc"][0][1] == pytest.approx(expected["test/acc"], rel=1e-6)  # float32 in the file
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["data"]["_target_"].endswith("SyntheticDataModule") and config["model"]["hidden_sizes"] == [24]
    assert read_json(run_dir / "status.json")["status"] == "ok"


@pytest.mark.slow
def test_eval_overrides_apply_on_top_of_the_stored_config(trained: Path, tmp_path: Path) -> None:
    evaluate(f"ckpt_path={trained}/checkpoints/best.ckpt", "data.eval_batch_size=100", f"hydra.run.dir={tmp_path}")
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert config["data"]["eval_batch_size"] == 100 and config["data"]["num_classes"] == 5
    # Accuracy is an exact count, so other batch sizes give the same number.
    assert read_json(tmp_path / "metrics.json")["test/acc"] == read_json(trained / "metrics.json")["test/acc"]


@pytest.mark.slow
@pytest.mark.parametrize("case", ["no ckpt_path", "missing file", "corrupt file"])
def test_eval_bad_ckpt_path_is_one_line(tmp_path: Path, case: str) -> None:
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"not a checkpoint at all")
    argument = {"no ckpt_path": [], "missing file": [f"ckpt_path={tmp_path}/nope.ckpt"],
                "corrupt file": [f"ckpt_path={corrupt}"]}[case]
    expected = {"no ckpt_path": "ckpt_path: required", "missing file": f"ckpt_path={tmp_path}/nope.ckpt: no such file",
                "corrupt file": f"checkpoint {corrupt}: corrupt"}[case]
    proc = evaluate(*argument, f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and expected in errors[0], proc.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()
