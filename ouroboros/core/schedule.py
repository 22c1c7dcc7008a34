"""Learning-rate schedule and data order, both functions of the optimizer step alone (so a resumed run matches)."""

from __future__ import annotations

import functools
import math
import random

import torch


def lr_multiplier(step: int, steps: int, warmup: int, min_ratio: float) -> float:
    """Multiplier of the peak LR used by optimizer step ``step`` (0-based): linear warmup over ``warmup`` steps,
    then cosine decay to ``min_ratio`` at the last step. Counted in optimizer steps, never micro-batches."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup - 1))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@functools.lru_cache(maxsize=4)
def _permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def batch_indices(step: int, batch: int, n: int, seed: int) -> torch.Tensor:
    """Window indices of the global batch of optimizer step ``step``: consecutive slices of a fresh permutation
    per epoch. The data position of a run is therefore just its step."""
    out = []
    for i in range(step * batch, (step + 1) * batch):
        epoch, pos = divmod(i, n)
        out.append(int(_permutation(n, seed, epoch)[pos]))
    return torch.tensor(out, dtype=torch.long)


def depth_for(step: int, depths: tuple[int, ...], seed: int) -> int:
    """The depth of optimizer step ``step``: fixed, or drawn from ``depths`` by (seed, step)."""
    return depths[0] if len(depths) == 1 else random.Random(seed * 7919 + step).choice(depths)
