"""The build recipe of an Ouroboros model: everything needed to rebuild it from its backbone source."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from .kinds import KINDS
from .errors import ConfigError

DEFAULT_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")
DTYPES = ("float32", "bfloat16", "float16")


def reject_unknown_keys(data: Mapping[str, Any], cls: type, what: str) -> None:
    """ConfigError naming the keys of ``data`` that are no field of the dataclass ``cls``, and the known ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {what} keys {unknown}; known: {', '.join(sorted(known))}")


@dataclass(frozen=True)
class OuroborosConfig:
    backbone: str = "smollm2-135m"
    prelude: int | None = None  # None: the default split for the backbone's depth (Split.default)
    recurrent: int | None = None
    coda: int | None = None
    controller: str = "mlp"
    modulation: str = "diagonal"
    gate: str = "sigmoid"
    normalizer: str = "rmsnorm"
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # kind -> field -> value
    rank: int = 32
    alpha: float = 32.0  # low-rank scale s = alpha / rank
    targets: tuple[str, ...] = DEFAULT_TARGETS
    max_steps: int = 64
    depth: int = 4  # default depth of a forward call
    dtype: str = "float32"  # dtype of the frozen backbone; trainable parts are always fp32
    seed: int = 0

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype {self.dtype!r} is not supported; choose one of: {', '.join(DTYPES)}")
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"--rank {self.rank!r} must be a positive integer")
        if self.alpha <= 0:
            raise ConfigError(f"--alpha {self.alpha!r} must be positive")
        if self.max_steps < 1:
            raise ConfigError(f"max_steps {self.max_steps!r} must be at least 1")
        if not 1 <= self.depth <= self.max_steps:
            raise ConfigError(f"--depth {self.depth!r} is out of range: valid 1..{self.max_steps}")
        unknown = set(self.options) - set(KINDS)
        if unknown:
            raise ConfigError(f"options for unknown kind(s) {sorted(unknown)}; valid kinds: {', '.join(KINDS)}")
        if not self.targets or len(set(self.targets)) != len(self.targets):
            raise ConfigError(f"targets {self.targets!r} must be a non-empty list of distinct names")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def component(self, kind: str) -> tuple[str, dict[str, Any]]:
        return getattr(self, kind), dict(self.options.get(kind, {}))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["options"] = {k: dict(v) for k, v in self.options.items() if v}
        data["targets"] = list(self.targets)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "OuroborosConfig":
        reject_unknown_keys(data, cls, "config")
        data = dict(data)
        if "targets" in data:
            data["targets"] = tuple(data["targets"])
        return cls(**data)
