"""Samples/s of the 784-wide MLP and the small CNN on 1 and 2 CPU ranks (gloo), with the
default intra-op threads (``trainer.num_threads: null``: cores / ranks on the machine)
against the same run with the threads set by hand, each count from 1 to the machine's
cores; the default should be within 10% of the best. Every setting runs ``--reps`` times,
interleaved; the table has medians.

    python benchmarks/ddp_scaling.py --scale 0.25
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def train_once(key: str, scale: float, threads: int | None) -> float:
    """One fit of workload ``key`` (on every rank of a DDP launch, or alone); samples/s of fit."""
    logging.disable(logging.WARNING)
    from expkit.engine import Trainer
    from train_throughput import engine_task, workloads

    wl = workloads(scale)[key]
    dm = wl.make_data()
    dm.setup()
    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    trainer = Trainer(max_epochs=wl.epochs, accelerator="cpu", strategy="ddp" if ddp else "auto",
                      num_threads=threads, num_sanity_val_steps=0, limit_val_batches=1, logger=None, callbacks=[])
    task = engine_task(dm, wl)
    start = time.perf_counter()
    trainer.fit(task, dm)
    seconds = time.perf_counter() - start
    if ddp:
        import torch.distributed as tdist

        tdist.destroy_process_group()
    return wl.epochs * dm.num_samples("train") / seconds


def measure(key: str, scale: float, ranks: int, threads: int | None) -> float:
    if ranks == 1:
        import torch

        before = torch.get_num_threads()
        try:
            return train_once(key, scale, threads)
        finally:
            torch.set_num_threads(before)
    from expkit.launch.ddp import run_workers

    return run_workers(train_once, ranks, (key, scale, threads))[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.25, help="fraction of train_throughput.py's epochs")
    parser.add_argument("--workloads", default="synthetic784-mlp,digits-cnn")
    parser.add_argument("--ranks", default="1,2")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions of every setting (median)")
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])  # for the workers
    sys.path.insert(0, str(HERE))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    print(f"# {cores} cores, load average {os.getloadavg()[0]:.2f} at start")
    print("| workload | ranks | default samples/s | best by hand (threads) | default / best |")
    print("|---|---|---|---|---|")
    for key in args.workloads.split(","):
        for ranks in (int(r) for r in args.ranks.split(",")):
            measure(key, args.scale, ranks, 1)  # warm-up: first-call costs in this process
            settings: list[int | None] = [None, *range(1, cores + 1)]  # None: the default
            runs: dict[int | None, list[float]] = {s: [] for s in settings}
            for rep in range(args.reps):  # interleaved and rotated: drifting load hits every setting alike
                for s in settings[rep % len(settings):] + settings[:rep % len(settings)]:
                    runs[s].append(measure(key, args.scale, ranks, s))
            default = statistics.median(runs[None])
            by_hand = {n: statistics.median(runs[n]) for n in range(1, cores + 1)}
            best = max(by_hand, key=by_hand.get)
            print(f"| {key} | {ranks} | {default:,.0f} | {by_hand[best]:,.0f} ({best}) | "
                  f"{default / by_hand[best]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
