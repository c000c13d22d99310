"""The same seeded 24-trial TPE search on the digits, with median pruning and without:
does pruning keep the best ``val/acc`` (within 0.5 percentage points) while training at most
half the epochs?

    python benchmarks/search.py                      # both searches, one line each
    python benchmarks/search.py --trials 12 --warmup 2

Each search is one ``python train.py -m hparams_search=digits_optuna`` run (basic launcher,
in-process, so the trials follow from the seed) in a fresh temporary sweep directory.
Search space: learning rate log-uniform over 1e-4..1, batch size, hidden sizes; 20 epochs
at most, early stopping off (so the unpruned search trains every trial to the end).
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

SPACE = ("optimizer.lr=tag(log, interval(0.0001, 1))", "data.batch_size=choice(32, 64, 128)",
         "model=mlp", "model.hidden_sizes=choice([64], [128, 64], [256, 128], [512, 256])")
QUIET = ("print_config=false", "test=false", "~callbacks.early_stopping", "logger.log_confusion_matrix=false",
         "logger.log_predictions=false", "logger.log_graph=false")


def search(sweep_dir: Path, trials: int, epochs: int, seed: int, pruner: list[str]) -> dict[str, float]:
    command = [sys.executable, str(ROOT / "train.py"), "-m", "hparams_search=digits_optuna", *SPACE, *QUIET,
               f"trainer.max_epochs={epochs}", f"hydra.sweeper.n_trials={trials}",
               f"hydra.sweeper.sampler.seed={seed}", "hydra.sweeper.sampler.n_startup_trials=8", *pruner,
               f"hydra.sweep.dir={sweep_dir}"]
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    with open(sweep_dir / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    return {"epochs": sum(int(float(r["trial/epochs"])) for r in rows if r.get("trial/epochs")),
            "wall": wall, "best": float(results["best_value"]),
            "pruned": sum(r["status"] == "pruned" for r in rows), "failed": sum(r["status"] == "failed" for r in rows)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--startup", type=int, default=2, help="median pruner: trials never pruned")
    parser.add_argument("--warmup", type=int, default=2, help="median pruner: validations (epochs) before pruning may start")
    args = parser.parse_args()
    runs = {"without pruning": ["hydra/sweeper/pruner=none"],
            "median pruning": ["hydra/sweeper/pruner=median", f"hydra.sweeper.pruner.n_startup_trials={args.startup}",
                               f"hydra.sweeper.pruner.n_warmup_steps={args.warmup}"]}
    found = {}
    with tempfile.TemporaryDirectory(prefix="expkit-search-") as tmp:
        for name, pruner in runs.items():
            found[name] = r = search(Path(tmp) / name.replace(" ", "_"), args.trials, args.epochs, args.seed, pruner)
            print(f"{name:16s}: {args.trials} trials, total epochs trained {r['epochs']}, wall time {r['wall']:.1f} s, "
                  f"best val/acc {r['best']:.4f}, trials pruned {r['pruned']}, failed {r['failed']}", flush=True)
    full, pruned = found["without pruning"], found["median pruning"]
    gap = (full["best"] - pruned["best"]) * 100
    share = pruned["epochs"] / full["epochs"]
    ok = gap <= 0.5 and share <= 0.5
    print(f"pruning: {share:.0%} of the epochs, best val/acc {gap:+.2f} points below the full search: "
          f"{'target met' if ok else 'target NOT met'} (<= 50% of the epochs, <= 0.5 points)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
