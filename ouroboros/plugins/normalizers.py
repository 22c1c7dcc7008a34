"""Built-in normalizers with a separate weight per step: ``rmsnorm`` (the paper's), ``layernorm``, ``none``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ouroboros.core.components import BuildContext, Normalizer


class RMSNormalizer(Normalizer):
    """RMSNorm with a weight table ``[steps, d_model]`` (ones at init); eps from the backbone."""

    name = "rmsnorm"

    @dataclass(frozen=True)
    class Config:
        pass

    def __init__(self, config: Config, ctx: BuildContext):
        super().__init__(config, ctx)
        self.weight = nn.Parameter(torch.ones(ctx.max_steps, ctx.d_model))

    def forward(self, h, step):
        self._check_step(step)
        x = h.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.ctx.norm_eps)
        return (x * self.weight[step]).to(h.dtype)


class LayerNormalizer(Normalizer):
    """LayerNorm with per-step weight (ones) and bias (zeros) tables ``[steps, d_model]``."""

    name = "layernorm"

    @dataclass(frozen=True)
    class Config:
        pass

    def __init__(self, config: Config, ctx: BuildContext):
        super().__init__(config, ctx)
        self.weight = nn.Parameter(torch.ones(ctx.max_steps, ctx.d_model))
        self.bias = nn.Parameter(torch.zeros(ctx.max_steps, ctx.d_model))

    def forward(self, h, step):
        self._check_step(step)
        out = F.layer_norm(h.float(), (h.shape[-1],), self.weight[step], self.bias[step], self.ctx.norm_eps)
        return out.to(h.dtype)


class NoNormalizer(Normalizer):
    """Identity."""

    name = "none"

    @dataclass(frozen=True)
    class Config:
        pass

    def forward(self, h, step):
        return h
