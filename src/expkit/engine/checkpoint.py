"""Checkpoint files: plain dicts of tensors and containers, written atomically,
read with ``weights_only=True`` and checked before anything uses them."""
from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import pickle
import random
import tempfile
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from expkit.errors import CheckpointError

FORMAT = "expkit-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "model")
#: Zip entry (next to torch's records) holding the SHA-256 of every other record.
CHECKSUM_ENTRY = "expkit_checksum"
#: Free space kept beyond a checkpoint's size before writing it (the file system's own use).
SPACE_MARGIN_BYTES = 64 << 10

log = logging.getLogger(__name__)


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; ``str()`` is one line naming the file and the OS reason.

    The file it was meant to replace (if any) is untouched: writes go to a temporary file first.
    """

    def __init__(self, path: Path, reason: str, errno_: int | None = None) -> None:
        super().__init__(errno_, reason, str(path))
        self.path, self.reason = Path(path), reason

    def __str__(self) -> str:
        return f"checkpoint {self.path}: not written ({self.reason}); the previous file there, if any, is intact"


def save_atomic(obj: dict[str, Any], path: str | os.PathLike, background: bool = False,
                copies: Sequence[str | os.PathLike] = (),
                on_saved: Callable[[Path], None] | None = None) -> Path:
    """Write ``obj`` to ``path`` so that a reader never sees a partial file.

    The bytes go to a temporary file in the same directory, are flushed and
    fsynced, and only then renamed over ``path``: a kill at any moment leaves
    either the old file or the new one.

    ``obj`` is serialized before this returns (later changes to the tensors do not
    leak in). With ``background`` the checksum, write, fsync and rename, which cost
    several milliseconds, run on one writer thread in order while training goes on;
    ``raise_if_save_failed`` (cheap, at step boundaries) and ``wait_for_saves`` (called
    by ``load`` and at the end of ``Trainer.fit``) re-raise a failure as
    ``CheckpointWriteError``. ``copies`` are more paths that get the same bytes
    (serialized once). ``on_saved(target)`` runs after each file is renamed into place
    (on the writer thread when ``background``): log "saved" there, not before.
    """
    data = io.BytesIO()
    torch.save(obj, data)  # one buffer, one write: faster than torch.save on a file
    targets = [Path(target) for target in (path, *copies)]
    if background:
        _pending.append(_writer_pool().submit(_publish_all, data, targets, on_saved))
    else:
        _publish_all(data, targets, on_saved)
    return Path(path)


def _publish_all(data: io.BytesIO, targets: list[Path], on_saved: Callable[[Path], None] | None) -> None:
    add_checksum(data)
    for target in targets:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            _check_space(target, data.getbuffer().nbytes)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            _publish(fd, tmp, data, target)
        except CheckpointWriteError:
            raise
        except OSError as e:
            raise CheckpointWriteError(target, e.strerror or type(e).__name__, e.errno) from e
        if on_saved is not None:
            on_saved(target)


def _check_space(target: Path, size: int) -> None:
    """Refuse a write that cannot fit before starting it (one ``statvfs``: cheap)."""
    try:
        stats = os.statvfs(target.parent)
    except (OSError, AttributeError):  # no statvfs (Windows) or an odd mount: the write itself will tell
        return
    free = stats.f_bavail * stats.f_frsize
    if free < size + SPACE_MARGIN_BYTES:
        raise CheckpointWriteError(target, f"No space left on device: {_size(free)} free, the checkpoint "
                                   f"needs {_size(size)}", errno.ENOSPC)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 10**7 else f"{n // 1024} KB"


_writer: ThreadPoolExecutor | None = None
_pending: list[Future] = []
_fork_hook_installed = False


def _writer_pool() -> ThreadPoolExecutor:
    """The one writer thread, started on the first background save (not at import)."""
    global _writer, _fork_hook_installed
    if _writer is None:
        _writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="expkit-checkpoint")
    if not _fork_hook_installed and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_forget_writer)
        _fork_hook_installed = True
    return _writer


def _forget_writer() -> None:
    """A forked child has no writer thread: start a fresh one when it first saves."""
    global _writer
    _writer = None
    _pending.clear()


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


def raise_if_save_failed() -> None:
    """Without waiting: re-raise (``CheckpointWriteError``) the first finished background save
    that failed. Cheap enough for every step boundary; saves still in flight are left alone."""
    while _pending and _pending[0].done():
        _pending.pop(0).result()


def wait_for_saves() -> None:
    """Block until every background save is on disk; re-raise the first that failed."""
    while _pending:
        _pending.pop(0).result()


# ---- checksums ----------------------------------------------------------------------------------

def _digest(archive: zipfile.ZipFile) -> str:
    """SHA-256 over every record of torch's archive but ours, in name order (name, then bytes)."""
    digest = hashlib.sha256()
    for name in sorted(n for n in archive.namelist() if n.rsplit("/", 1)[-1] != CHECKSUM_ENTRY):
        digest.update(name.encode())
        digest.update(archive.read(name))  # zipfile also checks the record's own CRC-32 here
    return digest.hexdigest()


def add_checksum(data: io.BytesIO) -> None:
    """Append the checksum record to the serialized checkpoint in ``data`` (once)."""
    with zipfile.ZipFile(data, "a") as archive:
        names = archive.namelist()
        prefix = names[0].split("/", 1)[0] if names else "archive"
        if any(n.endswith("/" + CHECKSUM_ENTRY) for n in names):
            return
        digest = _digest(archive)
        archive.writestr(f"{prefix}/{CHECKSUM_ENTRY}", json.dumps({"sha256": digest}))


_warned_unverified: set[str] = set()  # files already reported as having no checksum (warn once each)


def verify_checksum(path: Path) -> None:
    """Refuse a file whose bytes changed since it was saved; warn for one saved before checksums."""
    try:
        with zipfile.ZipFile(path) as archive:
            entry = next((n for n in archive.namelist() if n.rsplit("/", 1)[-1] == CHECKSUM_ENTRY), None)
            if entry is None:
                if str(path) in _warned_unverified:
                    return
                _warned_unverified.add(str(path))
                log.warning("checkpoint %s: has no checksum (saved by an older expkit), so its bytes "
                            "cannot be verified", path)
                return
            stored = json.loads(archive.read(entry)).get("sha256")
            actual = _digest(archive)
    except (zipfile.BadZipFile, ValueError, AttributeError) as e:
        if "CRC" in str(e):  # a record's bytes changed: the same damage the checksum finds
            raise CheckpointError(f"checkpoint {path}: damaged, its bytes changed after it was saved "
                                  f"({_short(e)}); refused") from None
        raise CheckpointError(f"checkpoint {path}: corrupt, truncated or not a checkpoint ({_short(e)})") from None
    if stored != actual:
        raise CheckpointError(f"checkpoint {path}: damaged, its checksum does not match its bytes "
                              "(changed after it was saved); refused")


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict[str, Any]:
    """Load and check a checkpoint; any problem becomes one ``CheckpointError`` line.

    The checksum is verified before anything is unpickled. ``mmap=True`` maps tensors
    lazily: cheap when only the config or loop state is read.
    """
    wait_for_saves()  # a file this process is still writing in the background
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        verify_checksum(path)
    except OSError as e:
        raise CheckpointError(f"checkpoint {path}: unreadable ({_short(e)})") from None
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        reason = _unpickler_reason(e)
        if "GLOBAL" in reason or "global" in str(e):
            raise CheckpointError(f"checkpoint {path}: refused, it holds arbitrary pickled objects ({reason}), "
                                  "which could run code when loaded; expkit only loads tensors and plain "
                                  "containers (save model.state_dict(), not objects)") from None
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
    """The informative part of torch's long weights_only message: what the unpickler met
    (``GLOBAL argparse.Namespace``, ``GLOBAL posix.system whose module posix is blocked``),
    never its advice on how to bypass the check (``weights_only=False``, allow-listing)."""
    text = str(e).split("WeightsUnpickler error:", 1)[-1]
    kept = []
    for paragraph in (p.strip() for p in text.split("\n\n")):
        paragraph = paragraph.replace("Unsupported global: ", "").replace("Trying to load unsupported ", "")
        paragraph = paragraph.split(" was not an allowed global")[0]
        if paragraph and not any(w in paragraph for w in ("weights_only", "Weights only", "Please ", "safe_globals")):
            kept.append(paragraph.rstrip("."))
    return _short(pickle.UnpicklingError("; ".join(kept) or "unsupported pickled content"))


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
