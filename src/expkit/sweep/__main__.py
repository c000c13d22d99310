"""Rebuild and print a sweep's summary from its job directories:

    python -m expkit.sweep <sweep dir>             # jobs without a result count as running
    python -m expkit.sweep <sweep dir> --finished  # ... as crashed (the sweep is over)

For a sweep whose main process died (killed, out of memory, logged out), or SLURM jobs
still running after the submitting process went away.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from expkit.sweep import summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m expkit.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--finished", action="store_true",
                        help="the sweep is over: a job that left no status.json crashed")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"error: sweep_dir={args.sweep_dir}: no such directory", file=sys.stderr)
        return 2
    if not summary.find_job_dirs(args.sweep_dir) and not (args.sweep_dir / summary.PLAN_FILE).is_file():
        print(f"error: sweep_dir={args.sweep_dir}: not a sweep (no job.json or status.json under it)",
              file=sys.stderr)
        return 2
    rows = summary.update(args.sweep_dir, finished=args.finished)
    print(summary.report(rows, args.sweep_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
