"""PNG plots of a study (matplotlib, headless): loss against depth per set, and training curves."""

from __future__ import annotations

import json
from pathlib import Path

SETS = (("train", "training distribution"), ("heldout", "held-out, in-domain"), ("ood", "held-out, out-of-domain"))


def plot_study(out: Path, rows: list[dict], refs: dict) -> list[Path]:
    """Write ``loss_vs_depth.png`` and ``loss_curves.png`` into ``out``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = [r for r in rows if r["best_lr"]]
    paths = [_loss_vs_depth(plt, out / "loss_vs_depth.png", best, refs),
             _curves(plt, out / "loss_curves.png", best, out)]
    plt.close("all")
    return paths


def _loss_vs_depth(plt, path: Path, rows: list[dict], refs: dict) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), sharey=False)
    lines: dict[tuple, list[dict]] = {}
    for row in rows:
        lines.setdefault((row["family"], row["rank"]), []).append(row)
    for ax, (key, title) in zip(axes, SETS):
        for (family, rank), group in sorted(lines.items()):
            group = sorted(group, key=lambda r: r["depth"])
            ax.plot([r["depth"] for r in group], [r["loss"][key] for r in group], marker="o",
                    label=f"{family} r{rank}")
        ax.axhline(refs["full"][key], color="black", linestyle="--", label="full backbone")
        ax.axhline(refs["pruned"][key], color="grey", linestyle=":", label="pruned backbone")
        ax.set_title(title)
        ax.set_xlabel("depth (recurrent steps)")
        ax.set_ylabel("mean token loss")
        ax.set_xscale("log", base=2)
        depths = sorted({r["depth"] for r in rows})
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.minorticks_off()
    axes[0].legend(fontsize=7)
    fig.suptitle("final loss per arm (each at its best learning rate on the validation split)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _curves(plt, path: Path, rows: list[dict], out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(9, 5))
    for row in sorted(rows, key=lambda r: r["arm"]):
        file = out / "arms" / row["arm"] / "metrics.jsonl"
        if not file.exists():
            continue
        metrics = [json.loads(line) for line in file.read_text().splitlines()]
        ax.plot([m["step"] for m in metrics], _ema([m["loss"] for m in metrics]), label=row["arm"], linewidth=1)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (EMA 0.9)")
    ax.set_title("training curves")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _ema(values: list[float], beta: float = 0.9) -> list[float]:
    out, avg = [], None
    for v in values:
        avg = v if avg is None else beta * avg + (1 - beta) * v
        out.append(avg)
    return out
