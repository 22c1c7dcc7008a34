"""``ouro train``: train the trainable parts of a built model on text, resumably."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import Device, console, handle_errors, parse_ints


def register(app: typer.Typer) -> None:
    app.command("train")(train)


@handle_errors
def train(
    run: Annotated[Path, typer.Argument(help="checkpoint folder made by `ouro build` (trained in place)")],
    data: Annotated[str, typer.Option(help="training data: embedded corpus, local file/folder or Hub name")]
    = "shakespeare",
    eval_data: Annotated[Optional[list[str]], typer.Option(help="held-out data evaluated every --eval-every "
                                                                "steps (repeatable)")] = None,
    steps: Annotated[int, typer.Option(help="optimizer steps")] = 300,
    batch: Annotated[int, typer.Option(help="windows per optimizer step (global, all processes)")] = 4,
    grad_accum: Annotated[int, typer.Option(help="micro-batches per optimizer step")] = 1,
    seq_len: Annotated[int, typer.Option(help="tokens per window")] = 256,
    depth: Annotated[str, typer.Option(help="depth, or a comma list sampled per step (e.g. 1,4,8)")] = "4",
    lr: Annotated[float, typer.Option(help="peak learning rate (AdamW)")] = 3e-4,
    warmup: Annotated[Optional[int], typer.Option(help="warmup optimizer steps (default 10% of --steps)")] = None,
    min_lr_ratio: Annotated[float, typer.Option(help="final LR as a share of the peak (cosine decay)")] = 0.1,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay")] = 0.0,
    clip: Annotated[float, typer.Option(help="max gradient norm (0: off)")] = 1.0,
    precision: Annotated[str, typer.Option(help="fp32, or bf16 autocast of the frozen backbone")] = "fp32",
    seed: Annotated[int, typer.Option(help="seed of the data order and depth sampling")] = 0,
    eval_every: Annotated[int, typer.Option(help="evaluate every N optimizer steps")] = 50,
    eval_windows: Annotated[int, typer.Option(help="held-out windows per evaluation (0: none)")] = 16,
    save_every: Annotated[int, typer.Option(help="checkpoint every N optimizer steps")] = 100,
    checkpoint_steps: Annotated[bool, typer.Option(help="recompute recurrent steps in backward (less memory)")]
    = False,
    resume: Annotated[bool, typer.Option(help="continue an interrupted run from its last checkpoint")] = False,
    overwrite: Annotated[bool, typer.Option(help="discard an existing run and start from a fresh initialisation")]
    = False,
    device: Device = "cpu",
) -> None:
    """Train the controller, modulation, gate and normalizer of RUN; the backbone stays frozen.

    Several processes: `accelerate launch --num_processes 2 -m ouroboros.cli train RUN ...` or
    `torchrun --nproc_per_node 2 -m ouroboros.cli train RUN ...` (same global --batch, same result).
    """
    from ouroboros.core.train import TrainConfig, Trainer

    cfg = TrainConfig(data=data, eval_data=tuple(eval_data if eval_data is not None else ["shakespeare:val"]),
                      steps=steps, batch=batch, grad_accum=grad_accum, seq_len=seq_len,
                      depth=tuple(parse_ints(depth, "--depth")), lr=lr, warmup=warmup, min_lr_ratio=min_lr_ratio,
                      weight_decay=weight_decay, clip=clip, precision=precision, seed=seed, eval_every=eval_every,
                      eval_windows=eval_windows, save_every=save_every, checkpoint_steps=checkpoint_steps)
    progress = TrainProgress()
    with console.status("loading model and data ..."):
        trainer = Trainer(run, cfg, resume=resume, overwrite=overwrite, device=device,
                          callback=progress.update)
    if not trainer.acc.is_main_process:
        trainer.callback = lambda event: None
        trainer.train()
        return
    with progress:
        last = trainer.train()
    evals = ", ".join(f"{k} {v:.4f}" for k, v in last.get("eval", {}).items())
    console.print(f"step {last.get('step', cfg.steps)}: train loss {last.get('loss', float('nan')):.4f}"
                  + (f"; held-out {evals}" if evals else "") + f"; saved to [bold]{run}[/]")


class TrainProgress:
    """A rich progress bar fed by the trainer's events: loss, tokens/s, held-out loss."""

    def __init__(self):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console)
        self.task = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def update(self, event: dict) -> None:
        if event["event"] == "start":
            self.task = self.progress.add_task("train", total=event["steps"], completed=event["step"], info="")
            return
        info = f"loss {event['loss']:.4f}  {event['tokens_per_s']:.0f} tok/s  depth {event['depth']}"
        if "eval" in event:
            info += "  " + " ".join(f"{k} {v:.4f}" for k, v in event["eval"].items())
        self.progress.update(self.task, completed=event["step"], info=info)
