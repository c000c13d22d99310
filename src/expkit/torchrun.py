"""``python -m expkit.torchrun [torchrun options] train.py trainer=ddp ...``: torchrun with expkit's exit statuses.

Takes exactly torchrun's arguments and runs torch's own launcher. torchrun itself ends a
job stopped by SIGTERM with a traceback and exit status 1, and a failed rank with exit
status 1 whatever the rank's own status was; here a stopped job exits 75 (the ranks saved
``last.ckpt`` at their next step boundary: requeue and resume with ``ckpt_path=last``)
and a failed one with its first failed rank's status (2 for bad input), in one line.
SIGUSR1 and SIGUSR2 are passed on to the ranks as well as SIGTERM and SIGINT.
"""
from __future__ import annotations

import os
import sys

from expkit.exit_codes import EXIT_FAILED, EXIT_PREEMPTED


def main(argv: list[str] | None = None) -> int:
    from expkit.launch.ddp import FORWARDED_SIGNALS

    os.environ.setdefault("TORCHELASTIC_SIGNALS_TO_HANDLE", FORWARDED_SIGNALS)
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(argv)
    try:
        run(args)
    except SignalException as e:
        print(f"error: stopped by {e.sigval.name}; the ranks stopped at their next step boundary (status.json in "
              "the run directory says what to resume from)", file=sys.stderr, flush=True)
        return EXIT_PREEMPTED
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        code = failure.exitcode if failure.exitcode > 0 else EXIT_FAILED
        print(f"error: rank {rank} ended with exit status {failure.exitcode} (its error is above)",
              file=sys.stderr, flush=True)
        return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
