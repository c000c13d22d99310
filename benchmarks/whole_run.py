"""Whole runs, start to exit: ``python train.py`` against the same training written by hand
(``benchmarks/hand_written_train.py``), each in fresh processes, interleaved, median of several.

    python benchmarks/whole_run.py --runs 7
    python benchmarks/whole_run.py --runs 5 trainer.max_epochs=30   # more train.py overrides

The hand-written script has the defaults of ``python train.py`` built in (digits, MLP
[128, 64], Adam 3e-3, batch 64, 10 epochs), so overrides that change the training are
passed to it only where it has a matching flag (``trainer.max_epochs``). What a whole run
costs is mostly start-up (importing torch, and torch._dynamo on the first optimizer), which
both sides pay alike; the ratios show what the template adds around it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]


def timed(command: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("overrides", nargs="*", help="more train.py overrides")
    args = parser.parse_args()
    epochs = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("trainer.max_epochs=")), "10")
    hand = [sys.executable, str(ROOT / "benchmarks" / "hand_written_train.py"), "--epochs", epochs]
    train = [sys.executable, str(ROOT / "train.py"), "data=digits", "model=mlp", *args.overrides]

    def in_temp(command: list[str], flag: str, env: dict[str, str] | None = None) -> Callable[[], float]:
        def run() -> float:
            with tempfile.TemporaryDirectory() as out:
                return timed([*command, flag.format(out=out)], env)
        return run

    quiet = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    cases: dict[str, Callable[[], float]] = {
        "hand-written: train, validate, test": lambda: timed(hand),
        "hand-written, with TensorBoard scalars and checkpoints": in_temp(hand, "--outputs={out}"),
        "python train.py (defaults: TensorBoard with pictures, checkpoints, progress)": in_temp(
            train, "hydra.run.dir={out}/run", quiet),
        "python train.py logger=none callbacks=none": in_temp(
            [*train, "logger=none", "callbacks=none"], "hydra.run.dir={out}/run", quiet),
    }
    for case in cases.values():  # warm the file cache
        case()
    results: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for run in range(args.runs):
        for name in names[run % len(names):] + names[:run % len(names)]:  # rotated: none always first
            results[name].append(cases[name]())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# whole runs, {args.runs} fresh processes each, interleaved; {os.cpu_count()} CPUs, "
          f"load average {load:.2f}; train.py {' '.join(['data=digits', 'model=mlp', *args.overrides])}")
    base = results[names[0]]
    print("| what | median s | min-max s | / hand-written (median of per-round ratios) |")
    print("|---|---|---|---|")
    for name, values in results.items():
        ratios = [v / b for v, b in zip(values, base)]
        print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f}-{max(values):.2f} | "
              f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}) |")


if __name__ == "__main__":
    main()
