"""``ouro eval``: held-out loss and perplexity of a checkpoint next to the full and the pruned backbone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .common import Device, console, err_console, handle_errors, parse_ints

DEFAULT_DATA = ("shakespeare:heldout", "kjv")
NON_CAUSAL_WARNING = ("this controller sees future tokens (pooling 'mean'): its loss is not a valid "
                      "language-model loss")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)


@handle_errors
def eval_command(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint folder (written by `ouro build` or training)")],
    data: Annotated[Optional[list[str]], typer.Option(
        "--data", help="dataset: embedded corpus, local path or Hub id (repeatable; default: "
                       "shakespeare:heldout and kjv)")] = None,
    depth: Annotated[Optional[str], typer.Option(
        help="comma list of depths, e.g. 1,4,8 (default: 1 and the checkpoint's default depth)")] = None,
    seq_len: Annotated[int, typer.Option(help="tokens per window")] = 256,
    batch: Annotated[int, typer.Option(help="windows per forward pass")] = 4,
    max_windows: Annotated[int, typer.Option(help="evaluate the first N windows of each dataset (0 = all)")] = 64,
    precision: Annotated[str, typer.Option(help="fp32 or bf16 (autocast)")] = "fp32",
    device: Device = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON on stdout")] = False,
) -> None:
    """Mean token loss and perplexity of a checkpoint at each depth, next to the full backbone and the plain pruned
    backbone on the same windows, with the share of the full-vs-pruned gap it recovers."""
    from ouroboros.core.evaluate import evaluate_checkpoint

    datasets = list(data) if data else list(DEFAULT_DATA)
    depths = None if depth is None else parse_ints(depth, "--depth")
    with _progress_bar() as (bar, task):
        def progress(description: str, advance: int, total: int) -> None:
            bar.update(task, description=description, advance=advance, total=total)

        result = evaluate_checkpoint(checkpoint, datasets, depths, seq_len=seq_len, batch=batch,
                                     max_windows=max_windows, precision=precision, device=device,
                                     progress=progress)
    if not result["causal"]:
        err_console.print(f"[bold yellow]warning:[/] {NON_CAUSAL_WARNING}", highlight=False, soft_wrap=True)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    for row in result["results"]:
        console.print(results_table(row, result))


class _progress_bar:
    """A rich progress bar on stderr (stdout stays clean for --json), removed when done."""

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=err_console, transient=True)
        self.bar.start()
        return self.bar, self.bar.add_task("loading", total=None)

    def __exit__(self, *exc):
        self.bar.stop()
        return False


def results_table(row: dict, result: dict) -> Table:
    """One dataset's table: full, pruned, then Ouroboros at each depth."""
    table = Table(title=f"{row['dataset']}: {row['windows']} windows of {result['seq_len']} tokens, "
                        f"{row['tokens']:,} predicted tokens ({result['precision']})")
    for col in ("model", "depth", "loss", "ppl", "recovered"):
        table.add_column(col, justify="left" if col == "model" else "right")
    table.add_row("full backbone", "", f"{row['full']['loss']:.4f}", f"{row['full']['ppl']:.2f}", "")
    table.add_row("pruned backbone", "1", f"{row['pruned']['loss']:.4f}", f"{row['pruned']['ppl']:.2f}", "")
    for score in row["ouroboros"]:
        share = "n/a" if score["recovered"] is None else f"{100 * score['recovered']:.1f}%"
        table.add_row("ouroboros", str(score["depth"]), f"{score['loss']:.4f}", f"{score['ppl']:.2f}", share)
    return table
