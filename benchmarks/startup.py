"""Start-up: wall time from process start to the end of the first training step of
``python train.py`` (fresh processes, median of several), next to what ``import torch``
plus building an optimizer takes on its own in a fresh process.

    python benchmarks/startup.py --runs 7
    python benchmarks/startup.py data=digits model=cnn   # any train.py overrides

The first step is marked by ``first_step_marker.FirstStepMarker``, added to the run as
one more callback on the command line (production configs are untouched). Every
measurement starts just before the child process is spawned, so interpreter start-up
counts for both sides alike.
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

ROOT = Path(__file__).resolve().parents[1]

BASELINE = ("import time, torch\n"
            "model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))\n"
            "torch.optim.Adam(model.parameters(), lr=1e-3)\n"
            "print(repr(time.time()))\n")


def env() -> dict[str, str]:
    paths = [str(ROOT / "src"), str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def time_baseline(code: str) -> float:
    start = time.time()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), check=True).stdout
    return float(out.strip().splitlines()[-1]) - start if out.strip() else time.time() - start


def time_train(overrides: list[str]) -> float:
    with tempfile.TemporaryDirectory() as out:
        mark = Path(out) / "first_step"
        args = [sys.executable, str(ROOT / "train.py"), *overrides, f"hydra.run.dir={out}/run",
                "+callbacks.first_step._target_=first_step_marker.FirstStepMarker",
                f"+callbacks.first_step.path={mark}"]
        start = time.time()
        proc = subprocess.run(args, capture_output=True, text=True, env=env(), cwd=ROOT)
        if not mark.is_file():
            raise SystemExit(f"train.py never finished a step (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        return float(mark.read_text()) - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("overrides", nargs="*", help="train.py overrides (default: the default config)")
    args = parser.parse_args()
    cases = {
        "python -c pass": lambda: time_baseline("import time\nprint(repr(time.time()))"),
        "import torch + Adam": lambda: time_baseline(BASELINE),
        f"train.py {' '.join(args.overrides)}".strip() + " (first step)": lambda: time_train(args.overrides),
        f"train.py {' '.join(args.overrides + ['logger=none'])} (first step)": lambda: time_train(
            args.overrides + ["logger=none"]),
    }
    for case in cases.values():  # warm the file cache
        case()
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):  # interleaved
        for name, case in cases.items():
            results[name].append(case())
    load = os.getloadavg()[0]
    print(f"# {args.runs} fresh processes each, interleaved; load average {load:.2f}")
    base = statistics.median(results["import torch + Adam"])
    print("| what | median s | min-max s | minus import torch + Adam |")
    print("|---|---|---|---|")
    for name, values in results.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.3f} | {min(values):.3f}-{max(values):.3f} | {med - base:+.3f} |")


if __name__ == "__main__":
    main()
