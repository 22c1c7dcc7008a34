"""Abstract bases of the four component kinds, the build context they receive, and their typed configs.

Every component is an ``nn.Module`` with a unique lowercase ``name`` and a frozen dataclass ``Config`` whose fields
carry ``metadata={"help": ...}``. Its constructor takes ``(config, ctx)``: whatever it needs beyond the contract
(d_model, targets, rank, number of step slots) comes from the :class:`BuildContext`, never from globals.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Mapping

import torch
from torch import nn

from .errors import ConfigError
from .kinds import KINDS, NAME_RE  # noqa: F401  (re-exported)



@dataclass(frozen=True)
class BuildContext:
    """Everything a component may know about the model it is built into."""

    d_model: int
    targets: tuple[str, ...]  # names of the modulated linear maps, e.g. ("q", "k", "v", "o", "gate", "up", "down")
    target_shapes: Mapping[str, tuple[int, int]]  # target -> (out_features, in_features)
    rank: int
    max_steps: int = 64  # number of per-step slots (step embeddings, per-step tables and norms)
    norm_eps: float = 1e-6
    cond_dim: int = 0  # width of the controller output, filled in after the controller is built


class Component(nn.Module):
    """Base of every component. Subclasses set ``name`` and ``Config``."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    Config: ClassVar[type] = None  # type: ignore[assignment]

    def __init__(self, config: Any, ctx: BuildContext):
        super().__init__()
        self.config = config
        self.ctx = ctx

    def _check_step(self, step: int) -> None:
        if not 0 <= step < self.ctx.max_steps:
            raise ConfigError(
                f"{self.kind} '{self.name}': step {step} is outside its {self.ctx.max_steps} step slots "
                f"(valid steps 0..{self.ctx.max_steps - 1}); build with a larger max_steps for deeper recursion"
            )


class Controller(Component):
    """``(h, step, mask) -> c``: per-position conditioning of shape (B, T, output_dim) or (B, 1, output_dim).

    ``mask`` is None or a (B, T) bool tensor of real (non-padding) tokens. Row ``i`` of ``c`` must depend on
    ``h[:, :i+1]`` only unless the instance sets ``causal = False`` (then generation refuses it).
    """

    kind = "controller"
    causal: bool = True

    @property
    def output_dim(self) -> int:
        """Width of ``c``; 0 means the controller produces no conditioning."""
        raise NotImplementedError

    def forward(self, h: torch.Tensor, step: int, mask: torch.Tensor | None = None) -> torch.Tensor | None:
        raise NotImplementedError


class Modulation(Component):
    """``(c, step) -> {target: d}``: the per-step diagonal over the frozen bases.

    Each ``d`` has shape (B, T, r) or is broadcastable to it; an empty dict means "plain layer".
    ``uses_conditioning`` says whether ``c`` is read: it must match whether the controller produces one.
    """

    kind = "modulation"
    uses_conditioning: ClassVar[bool] = False

    def forward(self, c: torch.Tensor | None, step: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class Gate(Component):
    """``(h_new, h_old, step) -> h``: how the step's output is mixed into the running state."""

    kind = "gate"

    def forward(self, h_new: torch.Tensor, h_old: torch.Tensor, step: int) -> torch.Tensor:
        raise NotImplementedError


class Normalizer(Component):
    """``(h, step) -> h``: a per-step normalisation of the step's output."""

    kind = "normalizer"

    def forward(self, h: torch.Tensor, step: int) -> torch.Tensor:
        raise NotImplementedError


BASES: dict[str, type[Component]] = {
    "controller": Controller,
    "modulation": Modulation,
    "gate": Gate,
    "normalizer": Normalizer,
}


# ---------------------------------------------------------------------------------------------------------------
# Configs: typed construction from strings (``--set gate.init_bias=-3``) and dictionaries (checkpoints)
# ---------------------------------------------------------------------------------------------------------------


def config_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Turn ``value`` (often a string from the command line) into ``annotation``'s type, or raise ConfigError."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ConfigError(f"{where}={value!r} is not valid; choose one of: {', '.join(map(str, choices))}")
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}={value!r} is not a boolean; use true or false")
    if annotation in (int, float, str):
        if annotation is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{where}={value!r} is not an integer")
        try:
            return annotation(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}={value!r} is not a valid {annotation.__name__}") from None
    return value


def make_config(component: type[Component], values: Mapping[str, Any] | None = None) -> Any:
    """Build ``component.Config`` from ``values``, coercing types; unknown keys are refused with the known ones."""
    values = dict(values or {})
    cfg_cls = component.Config
    fields = config_fields(cfg_cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields)) or "(none: it takes no options)"
        raise ConfigError(f"{component.kind} '{component.name}' has no option {', '.join(unknown)}; known: {known}")
    hints = typing.get_type_hints(cfg_cls)
    kwargs = {
        key: _coerce(val, hints[key], f"{component.kind}.{key}") for key, val in values.items()
    }
    try:
        return cfg_cls(**kwargs)
    except (TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{component.kind} '{component.name}': {err}") from None


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def parse_set_options(items: list[str] | None) -> dict[str, dict[str, str]]:
    """Parse repeatable ``kind.field=value`` strings into ``{kind: {field: value}}``."""
    out: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
    for item in items or []:
        key, sep, value = item.partition("=")
        kind, dot, field = key.strip().partition(".")
        if not sep or not dot or not field:
            raise ConfigError(f"--set {item!r} is not of the form kind.field=value (e.g. gate.init_bias=-3)")
        if kind not in out:
            raise ConfigError(f"--set {item!r}: unknown kind {kind!r}; valid kinds: {', '.join(KINDS)}")
        out[kind][field] = value.strip()
    return out
