"""Built-in controllers: ``mlp`` (the paper's hypernetwork) and ``none``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from einops import repeat
from torch import nn

from ouroboros.core.components import BuildContext, Controller
from ouroboros.core.errors import ConfigError

Pooling = Literal["causal_mean", "token", "mean"]


def pool(h: torch.Tensor, mask: torch.Tensor | None, how: str) -> torch.Tensor:
    """Summarise ``h`` (B, T, D) per position. ``causal_mean``: mean of h[:, :i+1]; ``token``: h itself;
    ``mean``: the whole-sequence mean (the paper's; every position sees the future)."""
    if how == "token":
        return h
    m = torch.ones(h.shape[:2], dtype=torch.float32, device=h.device) if mask is None else mask.float()
    m = m.unsqueeze(-1)  # (B, T, 1)
    hm = h.float() * m
    if how == "mean":
        return (hm.sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1.0)).to(h.dtype)  # (B, 1, D)
    return (hm.cumsum(1) / m.cumsum(1).clamp(min=1.0)).to(h.dtype)  # (B, T, D)


class MLPController(Controller):
    """The paper's controller: pooled state -> SiLU projection, step embedding, 2-layer SiLU MLP -> style vector."""

    name = "mlp"

    @dataclass(frozen=True)
    class Config:
        style_dim: int = field(default=128, metadata={"help": "width of the step embedding and of the output c"})
        hidden_dim: int = field(default=256, metadata={"help": "width of the state projection and the MLP hidden"})
        pooling: Pooling = field(
            default="causal_mean",
            metadata={"help": "causal_mean (mean of positions <= i), token (h_i itself), or mean (the paper's "
                              "whole-sequence mean: NOT causal, refused by generation)"},
        )

        def __post_init__(self):
            for key in ("style_dim", "hidden_dim"):
                if getattr(self, key) <= 0:
                    raise ConfigError(f"controller.{key}={getattr(self, key)} must be a positive integer")

    def __init__(self, config: Config, ctx: BuildContext):
        super().__init__(config, ctx)
        self.causal = config.pooling != "mean"
        self.state_proj = nn.Linear(ctx.d_model, config.hidden_dim)
        self.step_emb = nn.Embedding(ctx.max_steps, config.style_dim)
        self.mlp = nn.Sequential(
            nn.Linear(config.hidden_dim + config.style_dim, config.hidden_dim),
            nn.SiLU(),
            nn.Linear(config.hidden_dim, config.style_dim),
        )

    @property
    def output_dim(self) -> int:
        return self.config.style_dim

    def forward(self, h, step, mask=None):
        self._check_step(step)
        pooled = pool(h, mask, self.config.pooling)  # (B, T or 1, D)
        s = F.silu(self.state_proj(pooled))  # (B, T', hidden)
        e = repeat(self.step_emb.weight[step], "s -> b t s", b=s.shape[0], t=s.shape[1]).to(s.dtype)
        return self.mlp(torch.cat([s, e], dim=-1))  # (B, T', style)


class NoController(Controller):
    """No conditioning: for static or no modulation."""

    name = "none"

    @dataclass(frozen=True)
    class Config:
        pass

    @property
    def output_dim(self) -> int:
        return 0

    def forward(self, h, step, mask=None):
        return None
