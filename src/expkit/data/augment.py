"""Training-time augmentation from ``data.augment``: expkit's batched transforms and torchvision's.

On the in-memory path (``TensorLoader``) augmentation runs on whole batches on the training
device. expkit's transforms here draw one random choice per sample from a generator seeded
by (seed, epoch, batch position, rank), never from the global RNG, so the same batch of the
same epoch gets the same pixels in a run resumed mid-epoch. torchvision's random transforms
draw one choice per call from the global RNG, so on a batch they would crop every image
alike: the memory path refuses them (``check_memory_transforms``) and takes only their
deterministic ones (``Normalize``, ``ToDtype``, ...). On the DataLoader path every transform
runs per sample in the workers (``AugmentedDataset``), expkit's ones too: there they draw
from the worker's RNG, which ``TorchDataLoader`` seeds from where the iteration starts.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from expkit.errors import ConfigError


class BatchTransform:
    """A transform with a per-sample random draw: ``batch(x, generator)`` on ``(N, C, H, W)``,
    ``__call__(x)`` on one ``(C, H, W)`` sample (the DataLoader path, global RNG)."""

    def batch(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator(device=x.device).manual_seed(int(torch.randint(2**62, (1,))))
        return self.batch(x.unsqueeze(0), generator).squeeze(0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


class RandomCrop(BatchTransform):
    """Pad each side by ``padding`` (with ``fill``), then cut a random ``size`` window per sample."""

    def __init__(self, size: int | Sequence[int], padding: int = 4, fill: float = 0.0) -> None:
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        if padding < 0 or min(self.size) < 1:
            raise ConfigError(f"RandomCrop(size={size}, padding={padding}): size must be >= 1, padding >= 0")
        self.padding, self.fill = padding, fill

    def batch(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, c = x.shape[:2]
        p, (h, w) = self.padding, self.size
        padded = F.pad(x, (p, p, p, p), value=self.fill) if p else x
        room_y, room_x = padded.shape[2] - h, padded.shape[3] - w
        if room_y < 0 or room_x < 0:
            raise ValueError(f"RandomCrop: size {self.size} is larger than the padded input {tuple(padded.shape[2:])}")
        dy = torch.randint(room_y + 1, (n, 1), generator=generator, device=x.device)
        dx = torch.randint(room_x + 1, (n, 1), generator=generator, device=x.device)
        rows = (dy + torch.arange(h, device=x.device)).view(n, 1, h, 1)
        cols = (dx + torch.arange(w, device=x.device)).view(n, 1, 1, w)
        samples = torch.arange(n, device=x.device).view(n, 1, 1, 1)
        channels = torch.arange(c, device=x.device).view(1, c, 1, 1)
        return padded[samples, channels, rows, cols]


class RandomHorizontalFlip(BatchTransform):
    """Mirror each sample left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"RandomHorizontalFlip(p={p}): must be in [0, 1]")
        self.p = p

    def batch(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        flip = torch.rand(x.shape[0], generator=generator, device=x.device) < self.p
        return torch.where(flip.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)


def is_random(transform: Any) -> bool:
    """Whether a transform draws random choices (torchvision v1 and v2 transforms, Compose, expkit's)."""
    if isinstance(transform, BatchTransform):
        return True
    inner = getattr(transform, "transforms", None)
    if isinstance(inner, (list, tuple)):  # Compose, RandomApply, RandomChoice, RandomOrder
        return type(transform).__name__ != "Compose" or any(is_random(t) for t in inner)
    try:
        from torchvision.transforms import v2
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return False
    base = v2.Transform
    for method in ("make_params", "_get_params"):  # v2: random transforms draw their parameters here
        own = getattr(type(transform), method, None)
        if own is not None and own is not getattr(base, method, None):
            return True
    name = type(transform).__name__
    return name.startswith("Random") or name in {"ColorJitter", "AutoAugment", "RandAugment", "TrivialAugmentWide",
                                                 "AugMix", "GaussianBlur", "ElasticTransform"}


def check_memory_transforms(transforms: Sequence[Any]) -> None:
    """The memory path takes expkit's batched transforms and deterministic ones only."""
    for i, t in enumerate(transforms):
        if is_random(t) and not isinstance(t, BatchTransform):
            raise ConfigError(
                f"data.augment[{i}]={type(t).__name__}: a random torchvision transform draws one choice per call "
                "from the global RNG, so on loader=memory it would treat a whole batch alike; use expkit's "
                "batched ones (expkit.data.augment.RandomCrop, RandomHorizontalFlip) or data.loader=dataloader")


def apply_batch(transforms: Sequence[Any], x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    for t in transforms:
        x = t.batch(x, generator) if isinstance(t, BatchTransform) else t(x)
    return x


def batch_seed(seed: int, epoch: int, position: int, rank: int) -> int:
    """The generator seed of one training batch: a function of where it is, not of what ran before."""
    value = seed
    for part in (epoch, position, rank):
        value = (value * 1_000_003 + part) % 2**62
    return value


class AugmentedDataset(Dataset):
    """A map-style data set whose samples' first element goes through ``transforms`` (in the workers)."""

    def __init__(self, dataset: Dataset, transforms: Sequence[Any]) -> None:
        self.dataset, self.transforms = dataset, list(transforms)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        x, *rest = self.dataset[index]
        for t in self.transforms:
            x = t(x)
        return (x, *rest)
