"""Intra-op threads for training: the engine with default callbacks at 1 vs 2 (or more)
threads, interleaved in one process, per workload of train_throughput.py.

    python benchmarks/threads.py --reps 5 --threads 1,2
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
from functools import partial

import torch

from train_throughput import run_engine, timed, workloads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--workloads", default="digits-mlp,synthetic784-mlp,digits-cnn")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    counts = [int(t) for t in args.threads.split(",")]
    print(f"# torch {torch.__version__}, {os.cpu_count()} CPUs, reps={args.reps}, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    print("| workload | " + " | ".join(f"{n} thread(s) samples/s" for n in counts)
          + f" | {counts[0]} / {counts[-1]} time ratio, median (min-max) |")
    print("|---|" + "---|" * (len(counts) + 1))
    for key in args.workloads.split(","):
        wl = workloads(1.0)[key]
        dm = wl.make_data()
        dm.setup()
        samples = wl.epochs * dm.num_samples("train")
        for n in counts:
            timed(partial(run_engine, dm, wl, n))  # warm-up
        times: dict[int, list[float]] = {n: [] for n in counts}
        for rep in range(args.reps):
            for n in (counts if rep % 2 == 0 else counts[::-1]):
                times[n].append(timed(partial(run_engine, dm, wl, n)).seconds)
        ratios = [a / b for a, b in zip(times[counts[0]], times[counts[-1]])]
        print(f"| {key} | " + " | ".join(f"{samples / statistics.median(times[n]):,.0f}" for n in counts)
              + f" | {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}) |", flush=True)
    torch.set_num_threads(1)


if __name__ == "__main__":
    main()
