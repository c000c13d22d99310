"""FSDP2 (``trainer.strategy=fsdp``) on torch.distributed, on CPU with gloo and two processes.

All of it runs on CPU: fully_shard, the bf16 mixed-precision policy, global-norm clipping on
DTensor gradients, gradient accumulation without reduce-scatter, and the gathered checkpoints.
Engine level (one elastic launch): 2 sharded ranks x batch 16 equal 1 process x batch 32;
checkpoints hold the plain module's full state with a 1-process run's keys; resume is exact
and checkpoints move between FSDP and one process. End to end (real subprocesses):
``python train.py trainer=fsdp`` gives the 1-process metrics, eval.py reads its checkpoint,
and what FSDP cannot do is refused with one line.
"""
from __future__ import annotations

import math

import pytest
import torch

import fsdp_helpers
from expkit.engine.metrics import STEP_ONLY_METRICS
from conftest import FAST, read_json, run_script, train
from test_ddp import WORKER_ENV, assert_same_metrics, assert_same_weights, only_run_dir


# ------------------------------------------------------------------ engine level
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One 2-process launch running fsdp_helpers.fsdp_worker, and the single-process counterparts."""
    from expkit.launch.ddp import run_workers

    tmp = tmp_path_factory.mktemp("fsdp")
    stopped = fsdp_helpers.fit(stop_at_step=fsdp_helpers.MID_STEP, checkpoint_dir=str(tmp / "single"))
    assert not stopped["sharded"]
    sharded = run_workers(fsdp_helpers.fsdp_worker, 2, (str(tmp / "single" / "last.ckpt"), str(tmp / "fsdp")))
    return {"fsdp": sharded[0], "rank1": sharded[1], "single": fsdp_helpers.fit(),
            "single_accumulated": fsdp_helpers.fit(accumulate_grad_batches=3),
            "single_ckpt": tmp / "single" / "last.ckpt", "fsdp_ckpt": tmp / "fsdp" / "last.ckpt"}


def assert_same_epochs(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) and all(x.keys() == y.keys() for x, y in zip(a, b))
    for x, y in zip(a, b):
        for key in set(y) - STEP_ONLY_METRICS:  # wall-time scalars differ between any two runs
            assert x[key] == pytest.approx(y[key], abs=1e-5), key


@pytest.mark.slow
def test_two_sharded_ranks_equal_one_process(runs):
    fsdp, single = runs["fsdp"]["plain"], runs["single"]
    assert fsdp["sharded"] and runs["rank1"]["plain"]["weights"] == {}  # gathered on rank 0 only
    assert_same_weights(fsdp["weights"], single["weights"])
    assert_same_epochs(fsdp["epochs"], single["epochs"])  # train means, val over uneven shards (26 + 25)
    # Clipping used the global norm over both ranks' shards, not one rank's part.
    assert fsdp["grad_norm"] == pytest.approx(single["grad_norm"], abs=1e-5) and single["grad_norm"] > 0
    initial = fsdp_helpers._task().model.state_dict()
    assert any((single["weights"][k] - initial[k]).abs().max() > 1e-3 for k in initial)  # training moved them


@pytest.mark.slow
def test_accumulation_reduces_once_per_step_and_equals_one_process(runs):
    assert_same_weights(runs["fsdp"]["accumulated"]["weights"], runs["single_accumulated"]["weights"])
    assert_same_epochs(runs["fsdp"]["accumulated"]["epochs"], runs["single_accumulated"]["epochs"])


@pytest.mark.slow
def test_checkpoint_holds_the_full_state_with_one_process_keys(runs):
    sharded = torch.load(runs["fsdp_ckpt"], weights_only=True)
    single = torch.load(runs["single_ckpt"], weights_only=True)
    assert sharded["world_size"] == 2 and sharded["loop"] == single["loop"]
    assert sharded["model"].keys() == single["model"].keys()
    for key, value in single["model"].items():
        assert type(sharded["model"][key]) is torch.Tensor and sharded["model"][key].shape == value.shape, key
    # Optimizer: torch's own indexed format, every state tensor whole (not one rank's shard).
    assert sharded["optimizer"]["param_groups"] == single["optimizer"]["param_groups"]
    assert sharded["optimizer"]["state"].keys() == single["optimizer"]["state"].keys()
    for index, entry in single["optimizer"]["state"].items():
        for name, value in entry.items():
            assert sharded["optimizer"]["state"][index][name].shape == value.shape, (index, name)
            torch.testing.assert_close(sharded["optimizer"]["state"][index][name], value, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_resume_is_exact(runs):
    assert_same_weights(runs["fsdp"]["resumed"]["weights"], runs["fsdp"]["plain"]["weights"], atol=0)


@pytest.mark.slow
def test_checkpoints_move_between_fsdp_and_one_process(runs):
    assert_same_weights(runs["fsdp"]["resumed_from_single"]["weights"], runs["single"]["weights"])  # 1 -> fsdp
    alone = fsdp_helpers.fit(resume=str(runs["fsdp_ckpt"]))  # fsdp -> 1
    assert_same_weights(alone["weights"], runs["single"]["weights"])


@pytest.mark.slow
def test_bf16_mixed_trains_sharded_and_keeps_fp32_weights(runs):
    bf16 = runs["fsdp"]["bf16"]
    assert all(math.isfinite(v) for v in bf16["epochs"][0].values())
    assert {v.dtype for v in bf16["weights"].values()} == {torch.float32}  # bf16 is the compute dtype only


def test_what_fsdp_cannot_shard_is_one_line():
    from expkit.engine import fsdp
    from expkit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^trainer.strategy=fsdp: the model \(ReLU\) has no parameters to "
                                          r"shard; use trainer.strategy=auto or ddp$"):
        fsdp.check(torch.nn.ReLU(), torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"^trainer.accelerator='mps' with trainer.strategy=fsdp: MPS has no "
                                          r"distributed backend; use trainer.accelerator=cpu or cuda$"):
        fsdp.check(torch.nn.Linear(2, 2), torch.device("mps"))
    with pytest.raises(ConfigError, match=r"^trainer.precision=16-mixed with trainer.strategy=fsdp: "):
        fsdp.mixed_precision("16-mixed")


# -------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_python_launch_trains_like_one_process_and_eval_reads_its_checkpoint(tmp_path):
    common = (*FAST, "data.batch_size=64", "trainer.num_threads=1")
    train(*common, env={"EXPKIT_ROOT": str(tmp_path / "single")})
    single = read_json(only_run_dir(tmp_path / "single") / "metrics.json")
    proc = train(*common, "trainer=fsdp", "trainer.devices=2", env={"EXPKIT_ROOT": str(tmp_path / "fsdp"),
                                                                      **WORKER_ENV})
    run = only_run_dir(tmp_path / "fsdp")
    assert read_json(run / "status.json")["status"] == "ok" and "rank 1" not in proc.stderr
    assert_same_metrics(read_json(run / "metrics.json"), single)
    log = (run / "train.log").read_text()
    assert "batch: 64 per forward pass (2 ranks x 32)" in log and "model graph not logged: the model is sharded" in log
    best = run / "checkpoints" / "best.ckpt"
    assert torch.load(best, weights_only=True)["config"]["trainer"]["strategy"] == "fsdp"
    run_script("eval.py", f"ckpt_path={best}", "trainer.num_threads=1", f"hydra.run.dir={tmp_path / 'eval'}")
    evaluated = read_json(tmp_path / "eval" / "metrics.json")  # one process, from the gathered weights
    assert evaluated["test/acc"] == single["test/acc"]
    assert evaluated["test/loss"] == pytest.approx(single["test/loss"], abs=1e-5)


@pytest.mark.slow
def test_ema_with_fsdp_is_refused_with_one_line(tmp_path):
    proc = train(*FAST, "callbacks=ema", "trainer=fsdp", "trainer.devices=2", "trainer.num_threads=1", "logger=none",
                 "test=false", f"hydra.run.dir={tmp_path}", env=WORKER_ENV, check=False, timeout=180)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].endswith(
        "ConfigError: callbacks.ema with trainer.strategy=fsdp: the EMA keeps whole weights, FSDP only shards; "
        "use trainer.strategy=ddp or auto with EMA, or callbacks without ema")
