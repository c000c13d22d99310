"""``data.batch_size`` is the global batch: the same config gives the same run on 1, 2 and 4
ranks (real gloo process groups on CPU), also with an uneven last batch, Adam and
gradient accumulation; a batch the ranks cannot share is refused with one line."""
from __future__ import annotations

import pytest
import torch

import ddp_helpers
from expkit.errors import ConfigError

RUNS = [(32, 1), (16, 2)]  # (global batch, accumulate_grad_batches): 90 samples, uneven last batch


def assert_same_run(a: dict, b: dict) -> None:
    assert len(a["epochs"]) == len(b["epochs"]) == 2
    for mine, theirs in zip(a["epochs"], b["epochs"]):
        assert mine.keys() == theirs.keys() and "train/loss" in mine and "val/acc" in mine
        for key in mine:
            assert mine[key] == pytest.approx(theirs[key], abs=1e-5), key
    for key in a["weights"]:
        torch.testing.assert_close(a["weights"][key], b["weights"][key], rtol=0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("world_size", [2, 4])
def test_same_metrics_and_weights_on_any_number_of_ranks(world_size):
    from expkit.launch.ddp import run_workers

    single = [ddp_helpers.adam_run(batch, accumulate) for batch, accumulate in RUNS]
    results = run_workers(ddp_helpers.world_size_worker, world_size, (RUNS,))
    for rank in range(world_size):
        for alone, distributed in zip(single, results[rank]):
            assert_same_run(distributed, alone)
    assert single[0]["epochs"][0]["train/loss"] != single[0]["epochs"][1]["train/loss"]  # it trained


def test_last_global_batch_is_shared_like_one_process_would_take_it():
    from expkit.data.loaders import TensorLoader

    data = [torch.arange(90)]
    whole = [b[0] for b in TensorLoader(data, 32, shuffle=True, seed=1, pad=True)]
    for world in (2, 4):
        ranks = [TensorLoader(data, 32 // world, shuffle=True, seed=1, rank=r, world_size=world, pad=True)
                 for r in range(world)]
        assert {len(loader) for loader in ranks} == {3}  # every rank takes the same number of steps
        assert ranks[0].global_sizes() == [32, 32, 26]
        for step, batches in enumerate(zip(*ranks)):  # each step's samples are exactly one global batch
            assert sorted(torch.cat([b[0] for b in batches]).tolist()) == sorted(whole[step].tolist())


def test_a_global_batch_the_ranks_cannot_share_is_refused_with_one_line():
    from expkit.data import SyntheticDataModule

    datamodule = SyntheticDataModule(input_shape=(1, 4, 4), num_classes=3, num_train=16, num_val=4, num_test=4,
                                     batch_size=30)
    with pytest.raises(ConfigError, match=r"^data.batch_size=30: the global batch must divide evenly over the "
                                          r"4 ranks; use a multiple of 4$"):
        datamodule.train_loader(torch.device("cpu"), rank=0, world_size=4)
    assert len(datamodule.train_loader(torch.device("cpu"), rank=1, world_size=2)) == 1  # 15 per rank: fine


def test_the_effective_batch_is_described():
    from expkit.data.loaders import TensorLoader
    from expkit.engine.loaders import describe_batches

    loader = TensorLoader([torch.arange(90)], 16, rank=0, world_size=2, pad=True)
    assert describe_batches(loader, 3) == "batch: 32 per forward pass (2 ranks x 16) x 3 accumulated = 96 samples " \
                                          "per optimizer step"
