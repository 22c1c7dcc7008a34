"""The modulated linear map ``y = W x + s * B((A x) * d)``: the low-rank path never materialises B diag(d) A."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn


class LowRankLinear(nn.Module):
    """Wraps a frozen ``nn.Linear``; adds the low-rank path only while :func:`modulated` has set one."""

    def __init__(self, base: nn.Linear):
        super().__init__()
        self.base = base
        self.path: tuple[torch.Tensor, torch.Tensor, torch.Tensor, float] | None = None  # (A, B, d, scale)

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.path is None:
            return y
        A, B, d, scale = self.path
        z = F.linear(x, A.to(x.dtype))  # (B, T, r)
        z = z * d  # d: (B, T, r), (B, 1, r) or (r,)
        return y + (scale * F.linear(z, B.to(z.dtype))).to(y.dtype)  # (B, T, out)


@contextlib.contextmanager
def modulated(wrappers: dict[str, LowRankLinear], paths: dict[str, tuple]) -> Iterator[None]:
    """Activate ``paths[target] = (A, B, d, scale)`` on the wrappers for the duration of one layer call."""
    try:
        for target, path in paths.items():
            wrappers[target].path = path
        yield
    finally:
        for target in paths:
            wrappers[target].path = None
