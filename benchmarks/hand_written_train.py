"""What ``python train.py`` (the default: MLP on digits) does, written by hand in one file:
the yardstick for ``benchmarks/whole_run.py``.

Same data (scikit-learn's digits CSV, read without importing scikit-learn, as expkit
does), the same split sizes, model, optimizer, batch size and epochs; validation after
every epoch and a test at the end.

    python benchmarks/hand_written_train.py                 # train, validate, test; print
    python benchmarks/hand_written_train.py --outputs DIR   # also what a run directory holds:
        # TensorBoard scalars per epoch and last/best checkpoints (model + optimizer)
"""
from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    root = Path(importlib.util.find_spec("sklearn").submodule_search_locations[0])
    table = np.loadtxt(root / "datasets" / "data" / "digits.csv.gz", delimiter=",", dtype=np.float32)
    x = (torch.from_numpy(table[:, :-1]) / 16.0 - 0.3) / 0.4
    return x, torch.from_numpy(table[:, -1]).long()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--outputs", help="write TensorBoard scalars and checkpoints into this directory")
    args = parser.parse_args()

    torch.manual_seed(42)
    x, y = digits()
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(42))
    n_test, n_val = round(len(y) * 0.2), round(len(y) * 0.1)
    test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    writer = None
    if args.outputs:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(os.path.join(args.outputs, "tensorboard"))

    def accuracy(indices: torch.Tensor) -> float:
        model.eval()
        with torch.no_grad():
            acc = (model(x[indices]).argmax(1) == y[indices]).double().mean().item()
        model.train()
        return acc

    best, step = -1.0, 0
    for epoch in range(args.epochs):
        loss_sum = torch.zeros((), dtype=torch.float64)
        for batch in train[torch.randperm(len(train))].split(64):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            loss_sum += loss.detach() * len(batch)
            step += 1
        val_acc = accuracy(val)
        print(f"epoch {epoch}: train/loss {loss_sum.item() / len(train):.4f} val/acc {val_acc:.4f}")
        if writer is not None:
            writer.add_scalar("train/loss", loss_sum.item() / len(train), step)
            writer.add_scalar("val/acc", val_acc, step)
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch}
            torch.save(state, os.path.join(args.outputs, "last.ckpt"))
            if val_acc > best:
                best = val_acc
                torch.save(state, os.path.join(args.outputs, "best.ckpt"))
    print(f"test/acc {accuracy(test):.4f}")
    if writer is not None:
        writer.close()


if __name__ == "__main__":
    main()
