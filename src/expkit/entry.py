"""What the entry points (``train.py``, ``eval.py``) set up for a run, in one visible place.

Importing an expkit module changes nothing in the process; ``prepare()``, called on
the entry point's first lines (module level, so sweep and DDP workers that import the
entry point get the same), does, each part behind its own switch:

``signals``
    Stop signals (SIGTERM, SIGINT, SIGUSR1, SIGUSR2) end the run with exit 75 and
    ``status.json`` ``preempted`` from the very first line, not only while training
    (``expkit.signals``). Called first, before the heavy imports.
``schemas``
    Register the config schemas in Hydra's ConfigStore (``expkit.config.schema``):
    composing checks option types against them. Also the ``expkit.job_dir`` resolver
    that names sweep job folders (``expkit.sweep.run_names``).
``tensorboard_checksums``
    TensorBoard's event writer checksums records with google-crc32c's C code instead
    of pure Python (``expkit.event_checksums``): applied when the logger opens its
    writer, so a run without TensorBoard never imports it. ``False`` keeps TensorBoard's own.
``skip_exit_collections``
    Skip the interpreter's final garbage collections at exit (``gc.freeze`` in an exit
    handler, ~0.8 s of every run on two cores).

``main(hydra_main)`` runs the Hydra entry function and turns expkit's input errors and
Hydra's composition errors that escape it into one line and exit 2.
"""
from __future__ import annotations

import atexit
import gc
import os
import sys
from typing import Callable, NoReturn

from expkit.exit_codes import EXIT_BAD_INPUT


def _skip_final_collections() -> None:
    """At exit, park every live object in the garbage collector's permanent generation.

    The interpreter's shutdown otherwise runs full collections over the hundreds of
    thousands of objects torch and torch._dynamo create. Everything else still happens
    (the other exit handlers, flushing and closing of logs and files); only cyclic
    garbage left at exit is not collected, which the operating system reclaims anyway.
    """
    gc.freeze()


_prepared: set[str] = set()


def prepare(signals: bool = True, schemas: bool = True, tensorboard_checksums: bool = True,
            skip_exit_collections: bool = True) -> None:
    """Set the process up for a run (see the module docstring); each part at most once."""
    if signals and "signals" not in _prepared:
        from expkit import signals as stop_signals

        stop_signals.install()
        _prepared.add("signals")
    if skip_exit_collections and "exit" not in _prepared:
        atexit.register(_skip_final_collections)  # registered early, so it runs after the other handlers
        _prepared.add("exit")
    if schemas and "schemas" not in _prepared:
        from expkit.config.schema import register
        from expkit.sweep.run_names import register_resolver

        register()
        register_resolver()  # ${expkit.job_dir:...} names sweep job folders
        _prepared.add("schemas")
    if "tensorboard" not in _prepared:
        from expkit import event_checksums

        event_checksums.request(tensorboard_checksums)
        _prepared.add("tensorboard")


def main(hydra_main: Callable[[], object]) -> None:
    """Run a ``@hydra.main`` function; composition and input errors become one line, exit 2.

    Hydra reports its own errors (a misspelled key, a missing option) with exit status 1,
    the same as a crash; it is made to raise them here instead (``HYDRA_FULL_ERROR``,
    for this call only) so they can be told apart. Anything else propagates unchanged.
    """
    from hydra.errors import CompactHydraException

    from expkit.errors import InputError

    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        hydra_main()
    except (CompactHydraException, InputError) as e:
        refuse(e)
    finally:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous


def refuse(error: BaseException) -> NoReturn:
    """Print ``error`` (and its cause, when it adds something) as ``error: ...``, exit 2.

    For Hydra callbacks too: Hydra turns an exception raised there into a warning
    and carries on, so a callback that must stop the run calls this instead.
    """
    lines = [_one_line(error)]
    if error.__cause__ is not None and _one_line(error.__cause__) not in lines[0]:
        lines.append(_one_line(error.__cause__))
    print("error: " + "\n  ".join(lines), file=sys.stderr, flush=True)
    sys.exit(EXIT_BAD_INPUT)


def _one_line(error: BaseException) -> str:
    text = str(error).split("\nConfig search path:")[0]  # Hydra's list of where it looked: not the problem
    return " ".join(text.split()) or type(error).__name__
