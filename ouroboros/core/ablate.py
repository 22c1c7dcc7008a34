"""Ablation studies: a grid of compositions, expanded, trained arm by arm on the same budget, evaluated next to the
full and the plain pruned backbone, summarised in one table.

An output folder holds ``grid.json`` and ``environment.json`` (what was asked and where it ran), ``references.json``
(full and pruned backbone losses), one folder per arm under ``arms/`` (checkpoint, training state, metrics and
``result.json``), and ``results.csv`` / ``results.json``. Finished arms are skipped on a rerun; an interrupted arm
resumes from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import ConfigError

Event = Callable[[dict], None]
EVAL_SETS = ("train", "val", "heldout", "ood")


@dataclass(frozen=True)
class Grid:
    """The axes of a study (tuples are axes: every combination is an arm) and the budget every arm gets."""

    backbone: str = "smollm2-135m"
    prelude: int | None = None
    recurrent: int | None = None
    coda: int | None = None
    controller: tuple[str, ...] = ("mlp",)
    modulation: tuple[str, ...] = ("diagonal",)
    gate: tuple[str, ...] = ("sigmoid",)
    normalizer: tuple[str, ...] = ("rmsnorm",)
    options: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # "kind.field" -> values
    depth: tuple[int, ...] = (4,)
    rank: tuple[int, ...] = (32,)
    lr: tuple[float, ...] = (3e-4,)
    steps: int = 300
    batch: int = 4
    seq_len: int = 256
    warmup: int | None = None
    precision: str = "fp32"
    seed: int = 0
    data: str = "shakespeare"
    val: str = "shakespeare:val"
    heldout: str = "shakespeare:heldout"
    ood: str = "kjv"
    eval_windows: int = 32

    def __post_init__(self):
        for axis in ("controller", "modulation", "gate", "normalizer", "depth", "rank", "lr"):
            if not getattr(self, axis):
                raise ConfigError(f"--{axis} is an empty list; give at least one value")
        for key, values in self.options.items():
            if not values:
                raise ConfigError(f"--set {key}= is an empty list; give at least one value")
        if self.eval_windows < 1:
            raise ConfigError(f"eval_windows {self.eval_windows} must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in data.items()} | {
            "options": {k: list(v) for k, v in self.options.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Grid":
        from .config import reject_unknown_keys

        reject_unknown_keys(data, cls, "grid")
        axes = {"controller", "modulation", "gate", "normalizer", "depth", "rank", "lr"}
        out = {k: (tuple(v) if isinstance(v, (list, tuple)) else (v,)) if k in axes else v for k, v in data.items()}
        if "options" in data:
            out["options"] = {k: tuple(v) if isinstance(v, (list, tuple)) else (str(v),)
                              for k, v in data["options"].items()}
        return cls(**out)


@dataclass(frozen=True)
class Arm:
    controller: str
    modulation: str
    gate: str
    normalizer: str
    options: tuple[tuple[str, str], ...]  # (("controller.pooling", "token"), ...)
    depth: int
    rank: int
    lr: float

    @property
    def family(self) -> str:
        """The composition without depth, rank and learning rate."""
        opts = "".join(f"+{k.split('.')[1]}={v}" for k, v in self.options)
        return f"{self.controller}/{self.modulation}/{self.gate}/{self.normalizer}{opts}"

    @property
    def id(self) -> str:
        return f"{self.family.replace('/', '-')}_d{self.depth}_r{self.rank}_lr{self.lr:g}"

    def recipe(self, grid: Grid) -> dict[str, Any]:
        options: dict[str, dict[str, str]] = {}
        for key, value in self.options:
            kind, _, name = key.partition(".")
            options.setdefault(kind, {})[name] = value
        return dict(backbone=grid.backbone, prelude=grid.prelude, recurrent=grid.recurrent, coda=grid.coda,
                    controller=self.controller, modulation=self.modulation, gate=self.gate,
                    normalizer=self.normalizer, options=options, rank=self.rank, depth=self.depth,
                    max_steps=max(64, self.depth), seed=grid.seed)


def expand(grid: Grid, registry=None) -> tuple[list[Arm], list[tuple[str, str]]]:
    """The valid arms of the grid, and (description, reason) for each combination that cannot run.

    A modulation that ignores the controller (``static``, ``none``) runs with controller ``none``; an option is
    dropped for arms whose component does not have it; duplicates are merged.
    """
    from .builder import plan
    from .components import config_fields
    from .config import OuroborosConfig
    from .registry import default_registry

    registry = registry or default_registry()
    option_axes = [[(key, value) for value in values] for key, values in sorted(grid.options.items())]
    arms, skipped, seen, checked = [], [], set(), {}
    for ctl, mod, gate, norm, depth, rank, lr, *opts in itertools.product(
            grid.controller, grid.modulation, grid.gate, grid.normalizer, grid.depth, grid.rank, grid.lr,
            *option_axes):
        picked = {"controller": ctl, "modulation": mod, "gate": gate, "normalizer": norm}
        try:
            if not registry.get("modulation", mod).uses_conditioning:
                picked["controller"] = "none"
            kept = tuple((k, v) for k, v in opts if k.partition(".")[2] in
                         config_fields(registry.get(k.partition(".")[0], picked[k.partition(".")[0]]).Config))
            arm = Arm(**picked, options=kept, depth=depth, rank=rank, lr=lr)
            if arm in seen:
                continue
            key = dataclasses.replace(arm, lr=0.0)  # the learning rate does not change what can be built
            if key not in checked:
                try:
                    plan(OuroborosConfig(**arm.recipe(grid)), registry)
                    checked[key] = None
                except ConfigError as err:
                    checked[key] = err
            if checked[key] is not None:
                raise checked[key]
        except ConfigError as err:
            skipped.append((f"{ctl}/{mod}/{gate}/{norm} depth {depth} rank {rank} lr {lr:g}", str(err)))
            continue
        seen.add(arm)
        arms.append(arm)
    if not arms:
        reasons = "; ".join(f"{d}: {r}" for d, r in skipped[:3])
        raise ConfigError(f"the grid has no valid arm ({len(skipped)} combinations skipped: {reasons})")
    return arms, skipped


def prepare_output(out: Path, grid: Grid, overwrite: bool) -> None:
    """Create ``out`` or check that it holds this same grid; never silently replace a different study."""
    import shutil

    file = out / "grid.json"
    if out.exists() and overwrite:
        shutil.rmtree(out)
    elif file.exists():
        saved = json.loads(file.read_text())
        if saved != grid.to_dict():
            diff = [k for k in grid.to_dict() if saved.get(k) != grid.to_dict()[k]]
            raise ConfigError(f"output folder {str(out)!r} holds a different grid (differs in: {', '.join(diff)}); "
                              "choose another -o, or pass --overwrite to discard it")
        return
    elif out.exists() and any(out.iterdir()):
        raise ConfigError(f"output folder {str(out)!r} exists and is not an ablation of this grid; choose "
                          "another -o or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(grid.to_dict(), indent=2) + "\n")


def environment(grid: Grid, backbone_hash: str) -> dict[str, Any]:
    import platform

    import torch
    import transformers

    from .checkpoint import _version

    return {"backbone": grid.backbone, "backbone_hash": backbone_hash, "seed": grid.seed,
            "versions": {"ouroboros": _version("ouroboros"), "torch": torch.__version__,
                         "transformers": transformers.__version__, "python": platform.python_version()},
            "machine": {"cpus": __import__("os").cpu_count(), "processor": platform.processor() or platform.machine()}}
