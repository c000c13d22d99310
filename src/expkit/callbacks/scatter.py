"""The regression task's picture: predicted against true values, drawn by matplotlib.

matplotlib is imported only when a scatter is drawn, so runs that log no such picture never
pay for its import; a ``Figure`` on the Agg canvas leaves pyplot's global state alone.
"""
from __future__ import annotations

import torch

#: Points drawn at most (the first ones of the validation); more only blur the picture.
MAX_POINTS = 5000


def scatter_image(targets: torch.Tensor, preds: torch.Tensor) -> torch.Tensor:
    """A CHW float image in [0, 1]: one dot per value, the diagonal y = x dashed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    true = targets.detach().flatten().double().cpu()[:MAX_POINTS].numpy()
    pred = preds.detach().flatten().double().cpu()[:MAX_POINTS].numpy()
    figure = Figure(figsize=(4, 4), dpi=100)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.scatter(true, pred, s=8, alpha=0.5, linewidths=0)
    low, high = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    axes.plot([low, high], [low, high], linestyle="--", color="0.3", linewidth=1)
    axes.set_xlabel("true")
    axes.set_ylabel("predicted")
    axes.set_title(f"{len(true)} validation values")
    figure.tight_layout()
    canvas.draw()
    rgba = torch.frombuffer(bytearray(canvas.buffer_rgba()), dtype=torch.uint8)
    height, width = canvas.get_width_height()[::-1]
    return rgba.view(height, width, 4)[..., :3].permute(2, 0, 1).float() / 255.0
