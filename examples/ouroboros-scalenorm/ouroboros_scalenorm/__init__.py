"""Example plugin: ScaleNorm (one learnable scalar gain per step) as an ouroboros normalizer."""

from dataclasses import dataclass, field

import torch

from ouroboros import hookimpl
from ouroboros.core.components import Normalizer


class ScaleNorm(Normalizer):
    """h * g_t / ||h|| with one learnable gain g_t per step (Nguyen & Salazar, 2019)."""

    name = "scalenorm"

    @dataclass(frozen=True)
    class Config:
        init_gain: float = field(default=1.0, metadata={"help": "initial gain, times sqrt(d_model)"})

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.gain = torch.nn.Parameter(torch.full((ctx.max_steps,), config.init_gain * ctx.d_model ** 0.5))

    def forward(self, h, step):
        x = h.float()
        return (x * self.gain[step] / x.norm(dim=-1, keepdim=True).clamp(min=1e-6)).to(h.dtype)


@hookimpl
def ouroboros_register_normalizers(register):
    register(ScaleNorm)
