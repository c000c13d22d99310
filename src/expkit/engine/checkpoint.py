"""Checkpoint files: plain dicts of tensors and containers, written atomically,
read with ``weights_only=True`` and checked before anything uses them."""
from __future__ import annotations

import io
import os
import pickle
import random
import tempfile
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from expkit.errors import CheckpointError

FORMAT = "expkit-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "model")




def save_atomic(obj: dict[str, Any], path: str | os.PathLike, background: bool = False,
                copies: Sequence[str | os.PathLike] = ()) -> Path:
    """Write ``obj`` to ``path`` so that a reader never sees a partial file.

    The bytes go to a temporary file in the same directory, are flushed and
    fsynced, and only then renamed over ``path``: a kill at any moment leaves
    either the old file or the new one.

    ``obj`` is serialized before this returns (later changes to the tensors do not
    leak in). With ``background`` the write, fsync and rename, which cost several
    milliseconds of waiting on the disk, run on one writer thread in order while
    training goes on; ``wait_for_saves`` (called by ``load`` and at the end of
    ``Trainer.fit``) blocks until they are done and re-raises a failure.
    ``copies`` are more paths that get the same bytes (serialized once).
    """
    data = io.BytesIO()
    torch.save(obj, data)  # one buffer, one write: faster than torch.save on a file
    targets = [Path(target) for target in (path, *copies)]
    if background:
        global _writer
        if _writer is None:
            _writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="expkit-checkpoint")
        _pending.append(_writer.submit(_publish_all, data, targets))
    else:
        _publish_all(data, targets)
    return Path(path)


def _publish_all(data: io.BytesIO, targets: list[Path]) -> None:
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        _publish(fd, tmp, data, target)


_writer: ThreadPoolExecutor | None = None
_pending: list[Future] = []


def _forget_writer() -> None:
    """A forked child has no writer thread: start a fresh one when it first saves."""
    global _writer
    _writer = None
    _pending.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_writer)


def _publish(fd: int, tmp: str, data: io.BytesIO, path: Path) -> None:
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def wait_for_saves() -> None:
    """Block until every background save is on disk; re-raise the first that failed."""
    while _pending:
        _pending.pop(0).result()


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict[str, Any]:
    """Load and check a checkpoint; any problem becomes one ``CheckpointError`` line.

    ``mmap=True`` maps tensors lazily: cheap when only the config or loop state is read.
    """
    wait_for_saves()  # a file this process is still writing in the background
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        reason = _unpickler_reason(e)
        if "Unsupported global" in str(e):
            raise CheckpointError(f"checkpoint {path}: refused, it needs arbitrary pickled objects "
                                  f"({reason}); expkit only loads tensors and plain containers") from None
        raise CheckpointError(f"checkpoint {path}: corrupt or not a checkpoint ({reason})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise CheckpointError(f"checkpoint {path}: corrupt, truncated or not a checkpoint ({_short(e)})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: not an expkit checkpoint (no 'format: {FORMAT}' entry)")
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise CheckpointError(f"checkpoint {path}: incomplete, missing {', '.join(missing)}")
    if obj["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path}: format version {obj['format_version']} is newer than "
                              f"this expkit reads ({FORMAT_VERSION})")
    return obj


def _unpickler_reason(e: BaseException) -> str:
    """The one informative sentence of torch's long weights_only message: what the unpickler
    met (``GLOBAL argparse.Namespace``, ``Unsupported operand 245``), not how to bypass it."""
    text = str(e)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1].strip().split("\n\n")[0]
        text = text.replace("Unsupported global: ", "").split(" was not an allowed global")[0]
    return _short(pickle.UnpicklingError(text))


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text[:200] + "...") if len(text) > 200 else (text or type(e).__name__)


def capture_rng() -> dict[str, Any]:
    """Every RNG that affects training, as tensors and plain containers."""
    version, state, gauss = random.getstate()
    np_state = np.random.get_state()
    rng = {
        # one tensor, not 625 ints: pickling each int separately made every save ~2 ms slower
        "python": {"version": version, "state": torch.tensor(state, dtype=torch.int64), "gauss": gauss},
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_rng(rng: dict[str, Any]) -> None:
    py = rng["python"]
    state = py["state"]
    state = state.tolist() if isinstance(state, torch.Tensor) else state  # older checkpoints hold a list
    random.setstate((py["version"], tuple(state), py["gauss"]))
    np_rng = rng["numpy"]
    np.random.set_state(("MT19937", np_rng["key"].numpy().astype(np.uint32), np_rng["pos"],
                         np_rng["has_gauss"], np_rng["cached_gaussian"]))
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DDP's ``module`` and torch.compile's ``_orig_mod``."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def compare_shapes(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], path: str) -> None:
    """Refuse weights that do not fit the model, naming the first mismatching key."""
    for key in list(expected) + [k for k in found if k not in expected]:
        if key not in found:
            raise CheckpointError(f"checkpoint {path}: model key '{key}' is missing (model or data config changed?)")
        if key not in expected:
            raise CheckpointError(f"checkpoint {path}: model key '{key}' is not in the model (model or data config changed?)")
        if tuple(expected[key].shape) != tuple(found[key].shape):
            raise CheckpointError(f"checkpoint {path}: model key '{key}' has shape {tuple(found[key].shape)}, "
                                  f"the model expects {tuple(expected[key].shape)} (model or data config changed?)")
