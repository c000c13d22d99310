"""Legible pictures for TensorBoard, drawn with matplotlib in a worker process.

Drawing a labelled confusion matrix or a captioned prediction grid takes matplotlib tens
of milliseconds, all of it Python holding the interpreter lock: on the training thread, or
a thread beside it, that is time the training loop waits. ``PictureWorker`` hands the
drawing and the writing to one separate process (started when the first picture is due, so
a run that logs no pictures never imports matplotlib).
The drawing functions take plain numbers and numpy arrays and return (PNG, width, height).
"""
from __future__ import annotations

import atexit
import io
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

MAX_WIDTH_PX = 600  # TensorBoard's image card shows this without scaling or overflowing
DPI = 100


def _figure(width_px: float, height_px: float) -> Any:
    from matplotlib.figure import Figure  # the object API: no pyplot state, no GUI backend

    return Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)


def _png(fig: Any) -> tuple[bytes, int, int]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    canvas.print_png(buffer)
    width, height = canvas.get_width_height()
    return buffer.getvalue(), int(width), int(height)


def confusion_png(matrix: Sequence[Sequence[int]], names: Sequence[str]) -> tuple[bytes, int, int]:
    return _png(confusion_figure(matrix, names))


def confusion_figure(matrix: Sequence[Sequence[int]], names: Sequence[str]) -> Any:
    """Rows true class, columns prediction, each cell's count written in it. The colour is the
    count on a log scale from 1, so a cell with one error is clearly tinted and zeros stay white."""
    from matplotlib.colors import LogNorm

    counts = np.asarray(matrix, dtype=float)
    n = len(counts)
    fig = _figure(MAX_WIDTH_PX, MAX_WIDTH_PX * 0.85)
    ax = fig.add_subplot()
    shown = np.ma.masked_equal(counts, 0)
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    blues = colormaps["Blues"](np.linspace(0.35, 1.0, 256))  # from a clear blue: a count of 1 is visible
    cmap = ListedColormap(blues, name="expkit_blues").with_extremes(bad="white")
    image = ax.imshow(shown, cmap=cmap, norm=LogNorm(vmin=1, vmax=max(2.0, counts.max())), interpolation="nearest")
    from matplotlib.ticker import FuncFormatter

    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="count (log scale)")
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    step = max(1, n // 20)  # at most about 20 labelled ticks
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks, [names[i] for i in ticks], rotation=90 if max(map(len, names)) > 3 else 0)
    ax.set_yticks(ticks, [names[i] for i in ticks])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"confusion matrix ({int(counts.sum())} samples, {np.trace(counts) / max(counts.sum(), 1):.1%} right)")
    if n <= 25:  # counts stay readable up to this many classes
        dark = counts > np.sqrt(max(2.0, counts.max()))
        for i, j in zip(*np.nonzero(counts)):
            ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=max(6, 12 - n // 4),
                    color="white" if dark[i, j] else "black")
    fig.tight_layout()
    return fig


def predictions_png(images: np.ndarray, labels: Sequence[int], preds: Sequence[int],
                    names: Sequence[str], columns: int = 8) -> tuple[bytes, int, int]:
    """Sample inputs (N, H, W) or (N, H, W, 3) in [0, 1], each captioned ``true -> predicted``
    (red when wrong), in a grid at most ``MAX_WIDTH_PX`` wide."""
    n = len(images)
    cols = min(n, columns)
    rows = -(-n // cols)
    cell = MAX_WIDTH_PX / cols
    fig = _figure(MAX_WIDTH_PX, rows * cell * 1.15)
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= n:
            continue
        gray = images[k].ndim == 2
        ax.imshow(images[k], cmap="gray" if gray else None, vmin=0, vmax=1, interpolation="nearest")
        right = labels[k] == preds[k]
        ax.set_title(f"{names[labels[k]]}→{names[preds[k]]}", fontsize=9,
                     color="black" if right else "red", fontweight="normal" if right else "bold")
    fig.suptitle("true→predicted (red: wrong)", fontsize=10)
    fig.tight_layout()
    return _png(fig)


DRAWINGS: dict[str, Callable[..., tuple[bytes, int, int]]] = {"confusion": confusion_png,
                                                              "predictions": predictions_png}
SUFFIX = ".pictures"  # the worker's own event file in the run
PRIORITY = 10  # the worker's niceness: on a busy machine its drawing yields to training
_running: set["PictureWorker"] = set()


def wait_for_pictures() -> None:
    """Wait until every worker of this process has written its pictures (and exited)."""
    for worker in list(_running):
        worker.finish()


class PictureWorker:
    """One ``python -m expkit.loggers.plots <run> <after>`` process that draws pictures and
    writes them into the run's TensorBoard directory itself, in its own event file.

    A plain subprocess rather than multiprocessing: it imports numpy, matplotlib and
    TensorBoard's writer only (a spawned multiprocessing child would import the training
    script and torch again). Requests travel pickled over its stdin; it answers each with the
    seconds it spent (or an error), read by a thread. Training never waits for it: ``close``
    lets it finish, and the interpreter waits for it at exit, so the pictures are all on disk
    when the run's process ends.
    """

    def __init__(self, save_dir: str, after_existing: bool) -> None:
        self.started = time.perf_counter()
        self.busy_seconds = 0.0  # the worker's own time (start-up included), as it reports it
        self.outstanding = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._proc = subprocess.Popen([sys.executable, "-m", "expkit.loggers.plots", save_dir, str(int(after_existing))],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True, name="expkit-pictures").start()
        _running.add(self)
        atexit.register(self.finish)

    @property
    def idle(self) -> bool:
        return self.outstanding == 0

    def submit(self, drawing: str, tag: str, step: int, *args: Any) -> None:
        with self._lock:
            self.outstanding += 1
        pickle.dump((drawing, tag, step, args), self._proc.stdin)
        self._proc.stdin.flush()

    def _read(self, stream: Any) -> None:
        while True:
            try:
                ok, answer = pickle.load(stream)
            except EOFError:
                return
            with self._lock:
                self.outstanding -= 1
                if ok:
                    self.busy_seconds += answer
                else:
                    self.errors.append(answer)

    def close(self) -> None:
        """No more pictures: the worker draws what it was asked and exits (not waited for here)."""
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            self._proc.stdin.close()

    def finish(self) -> None:
        """Close and wait until every picture is written (at interpreter exit)."""
        self.close()
        self._proc.wait()
        _running.discard(self)


def _serve(save_dir: str, after_existing: bool) -> None:
    """The worker's loop: draw each request, write it as an image event, answer in order."""
    started = time.perf_counter()
    if hasattr(os, "nice"):
        os.nice(PRIORITY)
    import matplotlib
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    from expkit.loggers.event_files import start_after_existing_files

    matplotlib.use("Agg")
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    writer = None
    while True:
        try:
            drawing, tag, step, args = pickle.load(stdin)
        except EOFError:
            break
        try:
            png, width, height = DRAWINGS[drawing](*args)
            if writer is None:
                if after_existing:  # a resumed run: sort after its purge marker
                    start_after_existing_files(Path(save_dir))
                writer = EventFileWriter(save_dir, filename_suffix=SUFFIX)
            image = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=png)
            writer.add_event(Event(wall_time=time.time(), step=step, summary=Summary(value=[
                Summary.Value(tag=tag, image=image)])))
            writer.flush()
            answer: tuple[bool, Any] = (True, time.perf_counter() - started)
        except Exception as e:  # noqa: BLE001 - reported to the training process, which logs it
            answer = (False, f"{tag} at step {step}: {type(e).__name__}: {e}")
        started = time.perf_counter()
        pickle.dump(answer, stdout)
        stdout.flush()
    if writer is not None:
        try:
            writer.close()
        except OSError:  # the run directory is gone (a temporary one, removed after its run)
            pass


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2] == "1")
