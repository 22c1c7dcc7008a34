"""``ouro ablate``: a grid of compositions -> trained arms -> one table, CSV/JSON and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from .common import Backbone, Device, Overwrite, console, err_console, fresh_output, handle_errors, parse_ints

List = Annotated[Optional[str], typer.Option(help="comma list")]


def register(app: typer.Typer) -> None:
    app.command("ablate")(ablate)


@handle_errors
def ablate(
    backbone: Backbone = "smollm2-135m",
    preset: Annotated[Optional[str], typer.Option(help="quick or paper (other options refine it)")] = None,
    from_: Annotated[Optional[Path], typer.Option("--from", help="grid file (TOML) with the same keys")] = None,
    prelude: Annotated[Optional[int], typer.Option(help="split: prelude layers")] = None,
    recurrent: Annotated[Optional[int], typer.Option(help="split: looped layer")] = None,
    coda: Annotated[Optional[int], typer.Option(help="split: coda layers")] = None,
    controller: List = None,
    modulation: List = None,
    gate: List = None,
    normalizer: List = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="kind.field=v1,v2 (an axis; repeatable)")]
    = None,
    depth: List = None,
    rank: List = None,
    lr: List = None,
    steps: Annotated[Optional[int], typer.Option(help="optimizer steps per arm")] = None,
    batch: Annotated[Optional[int], typer.Option(help="windows per optimizer step")] = None,
    seq_len: Annotated[Optional[int], typer.Option(help="tokens per window")] = None,
    seed: Annotated[Optional[int], typer.Option(help="seed (same data order for every arm)")] = None,
    eval_windows: Annotated[Optional[int], typer.Option(help="windows per evaluation set")] = None,
    workers: Annotated[int, typer.Option(help="arms trained in parallel processes")] = 1,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="output folder (resumable)")] = None,
    overwrite: Overwrite = False,
    device: Device = "cpu",
) -> None:
    """Train and evaluate every composition of a grid on the same budget; one table, CSV/JSON, plots.

    Axes take comma lists (--modulation diagonal,static --depth 1,4,8 --lr 3e-4,1e-3). The full and the plain
    pruned backbone are always added as references. Rerunning into the same -o resumes the study.
    """
    from ouroboros.core.ablate import Grid
    from ouroboros.core.errors import ConfigError
    from ouroboros.core.presets import PRESETS, load_grid_file
    from ouroboros.core.study import run_study

    base: dict = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
        base.update(PRESETS[preset])
    if from_ is not None:
        base.update(load_grid_file(from_))
    given = {"backbone": backbone if backbone != "smollm2-135m" else None, "prelude": prelude,
             "recurrent": recurrent, "coda": coda, "steps": steps, "batch": batch, "seq_len": seq_len, "seed": seed,
             "eval_windows": eval_windows, **_axes(controller, modulation, gate, normalizer, depth, rank, lr)}
    base.update({k: v for k, v in given.items() if v is not None})
    if set_:
        base["options"] = {**base.get("options", {}), **_set_axes(set_)}
    if workers < 1:
        raise ConfigError(f"--workers {workers} must be at least 1")
    grid = Grid.from_dict(base)
    out = output if output is not None else fresh_output(None, f"runs/ablate-{preset or 'grid'}", False)
    with StudyProgress() as progress:
        result = run_study(grid, out, workers=workers, overwrite=overwrite, callback=progress, device=device)
    reasons = sorted({reason for _, reason in result["skipped"]})
    if reasons:
        err_console.print(f"[yellow]skipped {len(result['skipped'])} combinations[/] (listed in results.json): "
                          + " / ".join(escape(r) for r in reasons), highlight=False)
    console.print(results_table(result, grid))
    console.print(f"results: {out}/results.csv, results.json; plots: {out}/loss_vs_depth.png, "
                  f"{out}/loss_curves.png")


def _axes(controller, modulation, gate, normalizer, depth, rank, lr) -> dict:
    from ouroboros.core.errors import ConfigError

    out: dict = {}
    for name, text in (("controller", controller), ("modulation", modulation), ("gate", gate),
                       ("normalizer", normalizer)):
        if text is not None:
            out[name] = [x.strip() for x in text.split(",") if x.strip()]
            if not out[name]:
                raise ConfigError(f"--{name} is an empty list; give at least one name")
    for name, text in (("depth", depth), ("rank", rank)):
        if text is not None:
            out[name] = parse_ints(text, f"--{name}")
    if lr is not None:
        try:
            out["lr"] = [float(x) for x in lr.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"--lr {lr!r} is not a comma list of numbers (e.g. 3e-4,1e-3)") from None
        if not out["lr"] or any(x <= 0 for x in out["lr"]):
            raise ConfigError(f"--lr {lr!r} must list positive learning rates")
    return out


def _set_axes(items: list[str]) -> dict[str, list[str]]:
    from ouroboros.core.components import parse_set_options

    out = {}
    for item in items:
        for kind, fields in parse_set_options([item]).items():
            for name, values in fields.items():
                out[f"{kind}.{name}"] = [v.strip() for v in values.split(",") if v.strip()]
    return out


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x:.0f}%" if pct else f"{x:.3f}"


def _count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}K" if n >= 1e3 else str(n)


def results_table(result: dict, grid) -> Table:
    refs, rows = result["references"], result["rows"]
    several_lrs = len(grid.lr) > 1
    title = (f"{grid.backbone}: {grid.steps} steps x batch {grid.batch} x {grid.seq_len} tokens, seed {grid.seed}; "
             f"losses on {grid.eval_windows} windows per set"
             + (f"; each arm at its best LR on the validation split, out of {', '.join(f'{x:g}' for x in grid.lr)}"
                if several_lrs else ""))
    table = Table(title=title, caption="d = depth, r = rank; losses on the training distribution (train), held-out "
                                       "in-domain (in) and out-of-domain (out) text; rec, in%, out% = share of the "
                                       "full-vs-pruned gap recovered on each")
    table.box, table.pad_edge, table.padding, table.show_edge = box.SIMPLE_HEAD, False, (0, 0, 0, 1), False
    widths = {"d": 2, "r": 3, "lr": 5, "params": 6, "train": 6, "in": 6, "out": 6, "rec": 5, "in%": 5, "out%": 5}
    table.add_column("arm", overflow="fold")
    for col, width in widths.items():
        table.add_column(col, justify="right", no_wrap=True, width=width)
    for ref in ("full", "pruned"):
        table.add_row(f"{ref} backbone", "", "", "", "", *(_fmt(refs[ref][s]) for s in ("train", "heldout", "ood")),
                      "", "", "", style="dim")
    for row in sorted((r for r in rows if r["best_lr"] or not several_lrs),
                      key=lambda r: (r["family"], r["rank"], r["depth"])):
        lr = f"{row['lr']:.0e}"
        table.add_row(escape(row["family"]), str(row["depth"]), str(row["rank"]), lr, _count(row["trainable"]),
                      *(_fmt(row["loss"][s]) for s in ("train", "heldout", "ood")),
                      *(_fmt(row["recovered"][s], pct=True) for s in ("train", "heldout", "ood")))
    return table


class StudyProgress:
    """Rich progress bars fed by the study's and the trainer's events: arms done, and steps of the current arm."""

    def __init__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=console)
        self.arms = self.steps = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def __call__(self, event: dict) -> None:
        kind, p = event["event"], self.progress
        if kind == "plan":
            self.arms = p.add_task("[bold]arms", total=event["arms"], info=f"{len(event['skipped'])} skipped")
        elif kind == "arm":
            p.update(self.arms, info=escape(event["arm"]))
        elif kind == "start":
            if self.steps is None:
                self.steps = p.add_task("  steps", total=event["steps"], info="")
            p.reset(self.steps, total=event["steps"], completed=event["step"], info="")
        elif kind == "step":
            p.update(self.steps, completed=event["step"],
                     info=f"loss {event['loss']:.4f}  {event['tokens_per_s']:.0f} tok/s")
        elif kind == "arm_done":
            p.advance(self.arms)
