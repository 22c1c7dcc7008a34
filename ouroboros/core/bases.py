"""Frozen low-rank bases from the mean residual of the removed layers (DESIGN §2).

``R_k = mean_j (W_k[j] - W_k[R])`` over removed layers j, ``U S V^T = svd(R_k)`` in fp32, ``A_k = V_r^T`` (r x in),
``B_k = U_r S_r`` (out x r). Stored in checkpoints, never recomputed on load.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .errors import ConfigError


@dataclass(frozen=True)
class BasisReport:
    target: str
    shape: tuple[int, int]  # (out, in)
    rank: int
    energy: float | None  # share of ||R_k||_F^2 kept by the rank-r truncation; None when R_k = 0
    residual_norm: float


class Bases(nn.Module):
    """Holds ``A_k`` (r, in) and ``B_k`` (out, r) buffers for every target, in fp32."""

    def __init__(self, target_shapes: dict[str, tuple[int, int]], rank: int):
        super().__init__()
        self.targets = tuple(target_shapes)
        self.rank = rank
        for name, (out_f, in_f) in target_shapes.items():
            self.register_buffer(f"{name}_A", torch.zeros(rank, in_f))
            self.register_buffer(f"{name}_B", torch.zeros(out_f, rank))

    def pair(self, target: str) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"{target}_A"), getattr(self, f"{target}_B")


def check_rank(rank: int, target_shapes: dict[str, tuple[int, int]]) -> None:
    limit = min(min(shape) for shape in target_shapes.values())
    if not 1 <= rank <= limit:
        raise ConfigError(f"--rank {rank} is out of range: valid 1..{limit} (the smallest target is "
                          f"{min(target_shapes.items(), key=lambda kv: min(kv[1]))[0]})")


@torch.no_grad()
def compute_bases(recurrent: dict[str, nn.Linear], removed: list[dict[str, nn.Linear]], rank: int
                  ) -> tuple[Bases, list[BasisReport]]:
    """SVD bases for every target of the recurrent layer from the removed layers' mean residual."""
    shapes = {name: tuple(lin.weight.shape) for name, lin in recurrent.items()}
    check_rank(rank, shapes)
    bases, reports = Bases(shapes, rank), []
    for name, lin in recurrent.items():
        w_rec = lin.weight.detach().float()
        if not removed:  # no layer removed: the residual is zero, the low-rank path stays inert
            reports.append(BasisReport(name, shapes[name], rank, None, 0.0))
            continue
        residual = torch.zeros_like(w_rec)
        for layer in removed:
            residual += layer[name].weight.detach().float() - w_rec
        residual /= len(removed)
        u, s, vh = torch.linalg.svd(residual, full_matrices=False)
        A, B = bases.pair(name)
        A.copy_(vh[:rank])  # (r, in)
        B.copy_(u[:, :rank] * s[:rank])  # (out, r)
        total = float(s.pow(2).sum())
        energy = float(s[:rank].pow(2).sum()) / total if total > 0 else None
        reports.append(BasisReport(name, shapes[name], rank, energy, total ** 0.5))
    return bases, reports
