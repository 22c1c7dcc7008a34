"""Built-in gates: ``sigmoid`` (the paper's) and ``none``."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ouroboros.core.components import BuildContext, Gate


class SigmoidGate(Gate):
    """``g = sigmoid(W [h_new; h_old] + b)``, ``h = g h_new + (1 - g) h_old``; ``W = 0`` and ``b = init_bias``."""

    name = "sigmoid"

    @dataclass(frozen=True)
    class Config:
        init_bias: float = field(
            default=-2.0, metadata={"help": "initial bias b: sigmoid(-2) = 0.12, i.e. 88% of h_old is retained"}
        )

    def __init__(self, config: Config, ctx: BuildContext):
        super().__init__(config, ctx)
        self.proj = nn.Linear(2 * ctx.d_model, ctx.d_model)
        nn.init.zeros_(self.proj.weight)
        nn.init.constant_(self.proj.bias, config.init_bias)

    def forward(self, h_new, h_old, step):
        g = torch.sigmoid(self.proj(torch.cat([h_new, h_old], dim=-1)))  # (B, T, D)
        return (h_old + g * (h_new - h_old)).to(h_old.dtype)


class NoGate(Gate):
    """``h = h_new``."""

    name = "none"

    @dataclass(frozen=True)
    class Config:
        pass

    def forward(self, h_new, h_old, step):
        return h_new
