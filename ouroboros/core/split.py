"""Prelude / recurrent layer / coda split of an L-layer backbone."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class Split:
    """Keep layers ``[0, prelude)``, loop layer ``recurrent``, keep ``[L - coda, L)``; drop the rest."""

    prelude: int
    recurrent: int
    coda: int

    @classmethod
    def default(cls, num_layers: int) -> "Split":
        """Close to the paper's 8/18/8 of 36: P = C = round(8L/36), R in the middle of what is left."""
        p = c = max(0, round(num_layers * 8 / 36))
        if p + c >= num_layers:
            p = c = (num_layers - 1) // 2
        return cls(p, p + (num_layers - p - c) // 2, c)

    def validate(self, num_layers: int) -> None:
        """Raise ConfigError naming the bad value and the valid range."""
        L = num_layers
        for name in ("prelude", "recurrent", "coda"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"--{name} must be an integer, got {value!r}")
        if self.prelude < 0 or self.prelude > L - 1:
            raise ConfigError(f"--prelude {self.prelude} is out of range: valid 0..{L - 1} for a {L}-layer backbone")
        if self.coda < 0 or self.coda > L - 1 - self.prelude:
            raise ConfigError(f"--coda {self.coda} is out of range: with --prelude {self.prelude} on a {L}-layer "
                              f"backbone, valid 0..{L - 1 - self.prelude} (one layer must stay for the recurrent block)")
        lo, hi = self.prelude, L - self.coda - 1
        if not lo <= self.recurrent <= hi:
            where = ("inside the prelude" if 0 <= self.recurrent < lo else
                     "inside the coda" if hi < self.recurrent < L else "out of range")
            raise ConfigError(f"--recurrent {self.recurrent} is {where}: with --prelude {self.prelude} and --coda "
                              f"{self.coda} on a {L}-layer backbone, valid {lo}..{hi}")

    def kept(self, num_layers: int) -> list[int]:
        return [*range(self.prelude), self.recurrent, *range(num_layers - self.coda, num_layers)]

    def removed(self, num_layers: int) -> list[int]:
        return [j for j in range(self.prelude, num_layers - self.coda) if j != self.recurrent]

    def describe(self, num_layers: int) -> str:
        L = num_layers
        return f"prelude [0,{self.prelude}) + recurrent {self.recurrent} + coda [{L - self.coda},{L})"
