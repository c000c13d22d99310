"""Legible pictures for TensorBoard, drawn with matplotlib in a worker process.

Drawing a labelled confusion matrix or a captioned prediction grid takes matplotlib tens
of milliseconds, all of it Python holding the interpreter lock: on the training thread, or
a thread beside it, that is time the training loop waits. ``PictureWorker`` hands the
drawing to one separate process (started when the first picture is due, so a run that
logs no pictures never imports matplotlib); the event is written when the PNG comes back.
The drawing functions take plain numbers and numpy arrays and return (PNG, width, height).
"""
from __future__ import annotations

import io
import pickle
import queue
import subprocess
import sys
import threading
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


class PictureWorker:
    """One ``python -m expkit.loggers.plots`` process that draws pictures asked for by name.

    A plain subprocess rather than multiprocessing: it imports numpy and matplotlib only
    (a spawned multiprocessing child would import the training script and torch again).
    Requests and PNGs travel pickled over its stdin and stdout; a reader thread collects them.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._pending: list[tuple[str, int]] = []
        self._results: "queue.Queue[tuple[bool, Any]]" = queue.Queue()

    def submit(self, tag: str, step: int, drawing: str, *args: Any) -> None:
        if self._proc is None:
            self._proc = subprocess.Popen([sys.executable, "-m", "expkit.loggers.plots"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE)
            threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True,
                             name="expkit-pictures").start()
        pickle.dump((drawing, args), self._proc.stdin)
        self._proc.stdin.flush()
        self._pending.append((tag, step))

    def _read(self, stream: Any) -> None:
        while True:
            try:
                self._results.put(pickle.load(stream))
            except EOFError:
                self._results.put((False, "the picture worker exited"))
                return

    def ready(self, wait: bool = False) -> list[tuple[str, int, tuple[bytes, int, int]]]:
        """The pictures drawn so far, in the order asked (``wait``: all of them)."""
        done = []
        while self._pending and (wait or not self._results.empty()):
            ok, result = self._results.get()
            tag, step = self._pending.pop(0)
            if not ok:
                raise RuntimeError(f"drawing {tag} at step {step} failed: {result}")
            done.append((tag, step, result))
        return done

    def close(self) -> None:
        if self._proc is not None:
            self._proc.stdin.close()
            self._proc.wait()
            self._proc = None


def _serve() -> None:
    """The worker's loop: draw each request, answer (ok, PNG or error text) in order."""
    import matplotlib

    matplotlib.use("Agg")
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            drawing, args = pickle.load(stdin)
        except EOFError:
            return
        try:
            answer: tuple[bool, Any] = (True, DRAWINGS[drawing](*args))
        except Exception as e:  # noqa: BLE001 - reported to the training process, which raises it
            answer = (False, f"{type(e).__name__}: {e}")
        pickle.dump(answer, stdout)
        stdout.flush()


if __name__ == "__main__":
    _serve()
