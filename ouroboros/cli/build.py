"""``ouro build``: backbone + split + components -> checkpoint folder, with a summary."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from .common import (Backbone, Controller, Device, Gate, Modulation, Normalizer, Output, Overwrite, Set, console,
                     fresh_output, handle_errors)


def register(app: typer.Typer) -> None:
    app.command("build")(build)


@handle_errors
def build(
    backbone: Backbone = "smollm2-135m",
    prelude: Annotated[Optional[int], typer.Option(help="layers [0, P) kept before the loop")] = None,
    recurrent: Annotated[Optional[int], typer.Option(help="index R of the looped layer")] = None,
    coda: Annotated[Optional[int], typer.Option(help="last C layers kept after the loop")] = None,
    controller: Controller = "mlp",
    modulation: Modulation = "diagonal",
    gate: Gate = "sigmoid",
    normalizer: Normalizer = "rmsnorm",
    set_: Set = None,
    rank: Annotated[int, typer.Option(help="rank r of the frozen bases")] = 32,
    alpha: Annotated[float, typer.Option(help="low-rank scale is alpha / rank")] = 32.0,
    depth: Annotated[int, typer.Option(help="default number of recurrent steps")] = 4,
    max_steps: Annotated[int, typer.Option(help="step slots (deepest depth the model supports)")] = 64,
    dtype: Annotated[str, typer.Option(help="backbone dtype: float32, bfloat16, float16")] = "float32",
    seed: Annotated[int, typer.Option(help="seed of the component initialisation")] = 0,
    output: Output = None,
    overwrite: Overwrite = False,
    device: Device = "cpu",
) -> None:
    """Build an Ouroboros model from a backbone and save it as a checkpoint folder.

    Without --prelude/--recurrent/--coda the split is close to the paper's 8/18/8 of 36 layers (7/15/7 for
    SmolLM2's 30).
    """
    from ouroboros.core.builder import build_from_config
    from ouroboros.core.components import parse_set_options
    from ouroboros.core.config import OuroborosConfig
    from ouroboros.core.reference import parity_error

    cfg = OuroborosConfig(backbone=backbone, prelude=prelude, recurrent=recurrent, coda=coda, controller=controller,
                          modulation=modulation, gate=gate, normalizer=normalizer,
                          options={k: v for k, v in parse_set_options(set_).items() if v}, rank=rank, alpha=alpha,
                          depth=depth, max_steps=max_steps, dtype=dtype, seed=seed)
    out = fresh_output(output, "runs/ouro", overwrite)
    with console.status(f"building on {backbone} ..."):
        model = build_from_config(cfg).to(device)
        error = parity_error(model)
    model.save_pretrained(out)
    print_summary(model)
    console.print(f"identity config == pruned backbone: max |Δlogit| = {error:.3g}")
    console.print(f"saved to [bold]{out}[/]")


def print_summary(model) -> None:
    L, split = model.num_backbone_layers, model.split
    removed = split.removed(L)
    console.print(f"[bold]{model.config.backbone}[/]: {L} layers, {split.describe(L)}; "
                  f"removed {len(removed)}: {_ranges(removed) or 'none'}; depth {model.config.depth}, "
                  f"rank {model.config.rank}, alpha {model.config.alpha}")
    table = Table(title="parameters")
    for col in ("part", "component", "trainable", "frozen"):
        table.add_column(col, justify="right" if col in ("trainable", "frozen") else "left")
    counts = model.parameter_counts()
    for part, c in counts.items():
        name = getattr(getattr(model, part), "name", "") if part in ("controller", "modulation", "gate",
                                                                     "normalizer") else ""
        table.add_row(part, name, f"{c['trainable']:,}", f"{c['frozen']:,}")
    table.add_row("total", "", f"{sum(c['trainable'] for c in counts.values()):,}",
                  f"{sum(c['frozen'] for c in counts.values()):,}", style="bold")
    console.print(table)
    if model.basis_reports:
        bases = Table(title=f"frozen bases: share of ||R_k||² kept at rank {model.config.rank}")
        for col in ("target", "shape (out×in)", "||R_k||_F", "energy kept"):
            bases.add_column(col)
        for r in model.basis_reports:
            energy = "n/a (no removed layers: R_k = 0)" if r.energy is None else f"{100 * r.energy:.1f}%"
            bases.add_row(r.target, f"{r.shape[0]}×{r.shape[1]}", f"{r.residual_norm:.3g}", energy)
        console.print(bases)


def _ranges(indices: list[int]) -> str:
    spans, start = [], None
    for i, x in enumerate(indices):
        if start is None:
            start = x
        if i + 1 == len(indices) or indices[i + 1] != x + 1:
            spans.append(f"{start}" if start == x else f"{start}-{x}")
            start = None
    return ", ".join(spans)
