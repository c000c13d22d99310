"""What the TensorBoard pictures cost a run's training, measured directly: the time fit spends
inside the picture callback's hooks (confusion matrix, prediction grid, model graph), as a
share of fit's time, with the defaults and with the graph off.

    python benchmarks/picture_cost.py                 # digits MLP and CNN, 5 fits each
    python benchmarks/picture_cost.py --fits 9 --workloads digits-mlp

``train_throughput.py`` compares whole fits with and without pictures; on a shared 2-core
VM its repetitions vary by more than the few per cent at stake. Here each hook is timed
with ``perf_counter`` inside the same fit, so the noise of the rest of the fit does not enter.
The drawing itself happens in the picture worker process after fit (``until pictures written``
in ``train_throughput.py``), so it is not part of this share.
"""
from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import train_throughput as tt  # noqa: E402
from expkit.callbacks.tensorboard_images import TensorBoardImages  # noqa: E402

HOOKS = ("on_fit_start", "on_validation_start", "on_validation_batch_end", "on_validation_end", "on_fit_end")
_spent = [0.0]


def _timed_hook(hook: Callable) -> Callable:
    @functools.wraps(hook)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return hook(*args, **kwargs)
        finally:
            _spent[0] += time.perf_counter() - start
    return timed


def without_graph(build: Callable) -> Callable:
    def built(*args: Any, **kwargs: Any) -> tuple[list, Any]:
        callbacks, logger = build(*args, **kwargs)
        for callback in callbacks:
            if isinstance(callback, TensorBoardImages):
                callback.opts.log_graph = False
        return callbacks, logger
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fits", type=int, default=5)
    parser.add_argument("--workloads", default="digits-mlp,digits-cnn")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in HOOKS:
        setattr(TensorBoardImages, name, _timed_hook(getattr(TensorBoardImages, name)))
    defaults = tt.default_callbacks_and_logger
    print(f"# threads={args.threads}, {args.fits} fits per row (after one warm-up), medians")
    print("| workload | pictures | fit s | in the picture hooks, ms | share of fit |")
    print("|---|---|---|---|---|")
    for key in args.workloads.split(","):
        wl = tt.workloads(1.0)[key]
        dm = wl.make_data()
        dm.setup()
        for label, build in (("defaults", defaults), ("graph off", without_graph(defaults))):
            tt.default_callbacks_and_logger = build
            tt.timed(functools.partial(tt.run_engine, dm, wl, args.threads))
            fits, hooks = [], []
            for _ in range(args.fits):
                _spent[0] = 0.0
                fits.append(tt.timed(functools.partial(tt.run_engine, dm, wl, args.threads)).seconds)
                hooks.append(_spent[0])
            share = statistics.median(h / f for h, f in zip(hooks, fits))
            print(f"| {key} | {label} | {statistics.median(fits):.3f} | {statistics.median(hooks) * 1e3:.1f} | "
                  f"{share:.1%} |", flush=True)
        tt.default_callbacks_and_logger = defaults


if __name__ == "__main__":
    main()
