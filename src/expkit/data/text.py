"""Character-level text for language models: any UTF-8 file, cut into fixed-length windows.

The vocabulary (every distinct character of the file, sorted) is built at set-up, so the
model's embedding and output width come from the data (``sizes``). The text is split by
position, train first, then validation, then test, so no window of one split overlaps
another. A window of ``block_size`` characters is paired with the same window shifted by
one: ``(tokens, next tokens)``. Without ``data.path``, the default text is the Python
documentation's topic pages that every CPython installation ships (``pydoc_data``,
about 700 kB of English prose): offline, and the same on every machine with that Python.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from expkit.data.base import DataModule, Split, check_fractions
from expkit.data.options import TextOptions
from expkit.errors import DataError


def default_text() -> str:
    """The topic texts of Python's own documentation (``help('topics')``), in a fixed order."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name] for name in sorted(topics))


def read_text(path: str) -> str:
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"data.path={path}: no such file (any UTF-8 text file; null for the default text)")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"data.path={path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def windows(ids: torch.Tensor, block_size: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every ``block_size`` window starting ``stride`` apart, with its next-character targets."""
    if len(ids) < block_size + 1:
        return ids.new_zeros(0, block_size), ids.new_zeros(0, block_size)
    spans = ids.unfold(0, block_size + 1, stride)
    return spans[:, :-1].contiguous(), spans[:, 1:].contiguous()


class TextDataModule(DataModule):
    """Batches of ``(tokens, next tokens)``, both ``(batch, block_size)`` int64 character ids."""

    Options = TextOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        check_fractions(self.opts.val_fraction, self.opts.test_fraction)
        self.block_size, self.stride = self.opts.block_size, self.opts.stride or self.opts.block_size
        self.vocab = ""  # every character of the text, sorted: id i is vocab[i] (set at set-up)

    def sizes(self) -> dict[str, Any]:
        self.setup()  # the vocabulary is known only once the text is read
        return {"vocab_size": len(self.vocab), "num_outputs": len(self.vocab), "block_size": self.block_size}

    def encode(self, text: str) -> torch.Tensor:
        index = {ch: i for i, ch in enumerate(self.vocab)}
        return torch.tensor([index[ch] for ch in text], dtype=torch.long)

    def decode(self, ids: torch.Tensor) -> str:
        return "".join(self.vocab[i] for i in ids.tolist())

    def _load(self) -> dict[str, Split]:
        text = read_text(self.opts.path) if self.opts.path is not None else default_text()
        if self.opts.max_chars is not None:
            text = text[:self.opts.max_chars]
        self.vocab = "".join(sorted(set(text)))
        ids = self.encode(text)
        n_val, n_test = int(len(ids) * self.opts.val_fraction), int(len(ids) * self.opts.test_fraction)
        n_train = len(ids) - n_val - n_test
        parts = {"train": ids[:n_train], "val": ids[n_train:n_train + n_val], "test": ids[n_train + n_val:]}
        splits = {name: windows(part, self.block_size, self.stride) for name, part in parts.items()}
        short = [name for name, (x, _) in splits.items() if len(x) == 0]
        if short:
            where = self.opts.path or "the default text"
            raise DataError(f"data.path={where}: {len(text)} characters leave no {self.block_size + 1}-character "
                            f"window for the {', '.join(short)} split (a longer text, or a smaller data.block_size)")
        return splits
