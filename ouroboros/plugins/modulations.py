"""Built-in modulations: ``diagonal`` (the paper's Ouroboros), ``static`` (per-step LoRA), ``none``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from ouroboros.core.components import BuildContext, Modulation


class DiagonalModulation(Modulation):
    """Zero-initialised linear heads read the controller output: ``d_k = W_k c`` for every target k."""

    name = "diagonal"
    uses_conditioning = True

    @dataclass(frozen=True)
    class Config:
        pass

    def __init__(self, config: Config, ctx: BuildContext):
        super().__init__(config, ctx)
        # one fused head for all targets: (targets * r, cond_dim), zero so training starts from the plain layer
        self.heads = nn.Linear(ctx.cond_dim, len(ctx.targets) * ctx.rank, bias=False)
        nn.init.zeros_(self.heads.weight)

    def forward(self, c, step):
        d = rearrange(self.heads(c), "b t (k r) -> k b t r", k=len(self.ctx.targets))
        return dict(zip(self.ctx.targets, d.unbind(0)))


class StaticModulation(Modulation):
    """The paper's "static per-step LoRA": a zero-initialised table ``[steps, targets, r]``, no input dependence."""

    name = "static"

    @dataclass(frozen=True)
    class Config:
        pass

    def __init__(self, config: Config, ctx: BuildContext):
        super().__init__(config, ctx)
        self.table = nn.Parameter(torch.zeros(ctx.max_steps, len(ctx.targets), ctx.rank))

    def forward(self, c, step):
        self._check_step(step)
        return dict(zip(self.ctx.targets, self.table[step].unbind(0)))  # each (r,): broadcasts over (B, T, r)


class NoModulation(Modulation):
    """Plain recursion: no low-rank path."""

    name = "none"

    @dataclass(frozen=True)
    class Config:
        pass

    def forward(self, c, step):
        return {}
