"""Named ablation grids, and grid files (TOML with the keys of :class:`ouroboros.core.ablate.Grid`)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from .errors import ConfigError

# static per-step LoRA ignores the controller, so it runs with controller "none" (see ablate.expand)
PAPER_COMPONENTS = dict(controller=["mlp"], modulation=["diagonal", "static"], gate=["sigmoid", "none"],
                        normalizer=["rmsnorm"])

PRESETS: dict[str, dict[str, Any]] = {
    # a small, informative subset on the embedded default: Ouroboros vs static per-step LoRA (same bases), each
    # with and without the gate, one depth and rank; sized to finish in about 15 minutes on 2 CPU cores
    "quick": dict(PAPER_COMPONENTS, depth=[4], rank=[32], lr=[1e-3], steps=40, batch=4, seq_len=128,
                  eval_windows=16),
    # the paper's study: controller vs static per-step LoRA at depth 1/4/8/16 and rank 8/32/64, with and without
    # the gate, each at its best learning rate from a small sweep
    "paper": dict(PAPER_COMPONENTS, depth=[1, 4, 8, 16], rank=[8, 32, 64], lr=[3e-4, 1e-3, 3e-3], steps=300,
                  batch=4, seq_len=256, eval_windows=32),
}


def load_grid_file(path: Path) -> dict[str, Any]:
    """Read a TOML grid file; unknown keys are reported by Grid itself."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"grid file {str(path)!r} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"grid file {str(path)!r} is not valid TOML: {err}") from None
    if "set" in data:  # [set] table: "controller.pooling" = ["token", "causal_mean"]
        data["options"] = {k: v if isinstance(v, list) else [v] for k, v in data.pop("set").items()}
    return data
