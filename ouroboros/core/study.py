"""Running an ablation grid: references, arms (in this process or in worker processes), results and best LRs."""

from __future__ import annotations

import csv
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from .ablate import EVAL_SETS, Arm, Event, Grid, environment, expand, prepare_output

RESULT_FILE = "result.json"


def eval_windows(grid: Grid, tokenizer) -> dict[str, torch.Tensor]:
    """The fixed windows every arm and reference is scored on: the first ``eval_windows`` of each set."""
    from .data import load_windows

    specs = {"train": grid.data, "val": grid.val, "heldout": grid.heldout, "ood": grid.ood}
    return {name: load_windows(spec, tokenizer, grid.seq_len)[: grid.eval_windows] for name, spec in specs.items()}


def losses(forward, windows: dict[str, torch.Tensor], grid: Grid, device: str) -> dict[str, float]:
    from .evaluate import mean_loss

    return {name: mean_loss(forward, w, grid.batch, device, grid.precision)[0] for name, w in windows.items()}


def references(grid: Grid, out: Path, device: str = "cpu") -> dict[str, Any]:
    """Full and plain pruned backbone losses on the evaluation windows (computed once, kept in the folder)."""
    file = out / "references.json"
    if file.exists():
        return json.loads(file.read_text())
    from .backbone import load_backbone, load_tokenizer, state_hash
    from .builder import build_from_config
    from .config import OuroborosConfig

    model = build_from_config(OuroborosConfig(backbone=grid.backbone, prelude=grid.prelude,
                                              recurrent=grid.recurrent, coda=grid.coda, controller="none",
                                              modulation="none", gate="none", normalizer="none", rank=1)
                              ).to(device)
    windows = eval_windows(grid, load_tokenizer(grid.backbone))
    with torch.no_grad():
        pruned = losses(lambda ids: model(ids, depth=1, plain=True).logits, windows, grid, device)
        full_model = load_backbone(grid.backbone).to(device)
        full = losses(lambda ids: full_model(ids, use_cache=False).logits, windows, grid, device)
    refs = {"full": full, "pruned": pruned, "split": [model.split.prelude, model.split.recurrent, model.split.coda],
            "windows": {k: list(v.shape) for k, v in windows.items()}}
    (out / "environment.json").write_text(json.dumps(environment(grid, state_hash(full_model)), indent=2) + "\n")
    file.write_text(json.dumps(refs, indent=2) + "\n")
    return refs


def run_arm(grid: Grid, arm: Arm, folder: Path, threads: int | None = None, callback: Event | None = None,
            device: str = "cpu") -> dict[str, Any]:
    """Build, train (resuming if interrupted) and evaluate one arm; its result.json marks it finished."""
    from .backbone import load_tokenizer
    from .builder import build_from_config
    from .config import OuroborosConfig
    from .train import TrainConfig, Trainer, training_state

    if threads:
        torch.set_num_threads(threads)
    if (folder / RESULT_FILE).exists():
        return json.loads((folder / RESULT_FILE).read_text())
    if not (folder / "ouroboros.json").exists():
        build_from_config(OuroborosConfig(**arm.recipe(grid))).save_pretrained(folder)
    cfg = TrainConfig(data=grid.data, eval_data=(grid.val,), steps=grid.steps, batch=grid.batch,
                      seq_len=grid.seq_len, lr=arm.lr, warmup=grid.warmup, depth=(arm.depth,),
                      precision=grid.precision, seed=grid.seed, eval_every=max(1, grid.steps // 4),
                      eval_windows=min(8, grid.eval_windows), save_every=max(1, grid.steps // 3))
    state = training_state(folder)
    start = time.perf_counter()
    if state is None or state["step"] < grid.steps:
        trainer = Trainer(folder, cfg, resume=state is not None, callback=callback, device=device)
        trainer.train()
        model = trainer.model
    else:
        from .model import OuroborosModel

        model = OuroborosModel.from_pretrained(folder).to(device)
    windows = eval_windows(grid, load_tokenizer(grid.backbone))
    with torch.no_grad():
        result = losses(lambda ids: model(ids, depth=arm.depth).logits, windows, grid, device)
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    record = {"arm": arm.id, "family": arm.family, **{k: v for k, v in arm.__dict__.items() if k != "options"},
              "options": dict(arm.options), "trainable": model.num_trainable_parameters(),
              "loss": result, "steps": grid.steps, "train_seconds": round(time.perf_counter() - start, 1),
              "tokens_per_s": sum(m["tokens_per_s"] for m in metrics) / max(1, len(metrics))}
    (folder / RESULT_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record


def run_study(grid: Grid, out: Path, *, workers: int = 1, overwrite: bool = False, callback: Event | None = None,
              device: str = "cpu") -> dict[str, Any]:
    """Run every valid arm of ``grid`` into ``out``; returns {"arms", "skipped", "references", "rows"}."""
    callback = callback or (lambda event: None)
    arms, skipped = expand(grid)
    prepare_output(out, grid, overwrite)
    callback({"event": "plan", "arms": len(arms), "skipped": skipped})
    refs = references(grid, out, device)
    records = []
    if workers <= 1:
        for i, arm in enumerate(arms):
            callback({"event": "arm", "index": i, "arm": arm.id})
            records.append(run_arm(grid, arm, out / "arms" / arm.id, callback=callback, device=device))
            callback({"event": "arm_done", "index": i, "arm": arm.id})
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
        import multiprocessing

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(run_arm, grid, arm, out / "arms" / arm.id, threads, None, device) for arm in arms]
            for i, future in enumerate(futures):
                records.append(future.result())
                callback({"event": "arm_done", "index": i, "arm": arms[i].id})
    rows = summarise(records, refs)
    write_results(out, rows, refs, skipped)
    from .plots import plot_study

    plot_study(out, rows, refs)
    return {"arms": arms, "skipped": skipped, "references": refs, "rows": rows}


def summarise(records: list[dict], refs: dict) -> list[dict]:
    """Add the share of the full-vs-pruned gap recovered on each set and mark each family's best LR (on val)."""
    from .evaluate import recovered

    groups: dict[tuple, list[dict]] = {}
    for rec in records:
        rec["recovered"] = {name: recovered(refs["full"][name], refs["pruned"][name], rec["loss"][name])
                            for name in EVAL_SETS}
        groups.setdefault((rec["family"], rec["depth"], rec["rank"]), []).append(rec)
    for group in groups.values():
        best = min(group, key=lambda r: r["loss"]["val"])
        for rec in group:
            rec["best_lr"] = rec is best
            rec["lrs_tried"] = sorted(r["lr"] for r in group)
    return records


def write_results(out: Path, rows: list[dict], refs: dict, skipped: list) -> None:
    (out / "results.json").write_text(json.dumps({"references": refs, "arms": rows, "skipped": skipped},
                                                 indent=2) + "\n")
    columns = ["arm", "family", "controller", "modulation", "gate", "normalizer", "depth", "rank", "lr", "best_lr",
               "trainable", "steps"] + [f"loss_{s}" for s in EVAL_SETS] + [f"recovered_{s}" for s in EVAL_SETS]
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        for ref in ("full", "pruned"):
            writer.writerow({"arm": f"{ref} backbone", **{f"loss_{s}": refs[ref][s] for s in EVAL_SETS}})
        for row in rows:
            writer.writerow({**{k: row[k] for k in columns[:12]}, **{f"loss_{s}": row["loss"][s] for s in EVAL_SETS},
                             **{f"recovered_{s}": row["recovered"][s] for s in EVAL_SETS}})
