"""Write docs/results.md (and copy the plots beside it) from an `ouro ablate` output folder.

    python docs/make_results.py runs/paper-cpu --command "ouro ablate ..." [--quick runs/quick]

Every number in the report is read from the study's results.json / references.json; nothing is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).parent
OURO, STATIC = "mlp/diagonal/sigmoid/rmsnorm", "none/static/sigmoid/rmsnorm"
OURO_NOGATE, STATIC_NOGATE = "mlp/diagonal/none/rmsnorm", "none/static/none/rmsnorm"
SETS = (("train", "train"), ("heldout", "held-out in-domain"), ("ood", "held-out out-of-domain"))


def load(folder: Path) -> tuple[dict, dict, dict]:
    results = json.loads((folder / "results.json").read_text())
    return results, json.loads((folder / "grid.json").read_text()), json.loads((folder / "environment.json").read_text())


def best(rows: list[dict]) -> dict[tuple, dict]:
    return {(r["family"], r["depth"], r["rank"]): r for r in rows if r["best_lr"]}


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def results_table(results: dict) -> list[str]:
    refs = results["references"]
    lines = ["| arm | depth | rank | best lr (of) | trainable | " + " | ".join(f"{n} loss" for _, n in SETS)
             + " | " + " | ".join(f"recovered {k}" for k, _ in SETS) + " |",
             "|---|---:|---:|---:|---:|" + "---:|" * 6]
    for ref in ("full", "pruned"):
        lines.append(f"| **{ref} backbone** | | | | | " + " | ".join(f"{refs[ref][k]:.4f}" for k, _ in SETS)
                     + " | | | |")
    for (family, depth, rank), r in sorted(best(results["arms"]).items()):
        lrs = ", ".join(f"{x:g}" for x in r["lrs_tried"])
        lines.append(f"| {family} | {depth} | {rank} | {r['lr']:g} ({lrs}) | {r['trainable']:,} | "
                     + " | ".join(f"{r['loss'][k]:.4f}" for k, _ in SETS) + " | "
                     + " | ".join(pct(r["recovered"][k]) for k, _ in SETS) + " |")
    return lines


def claims(results: dict) -> list[str]:
    refs, table = results["references"], best(results["arms"])
    keys = sorted({(d, r) for (_, d, r) in table})
    ouro = [table[(OURO, d, r)] for d, r in keys if (OURO, d, r) in table]
    if not ouro:
        return ["(the study has no Ouroboros arm)"]
    top = min(ouro, key=lambda r: r["loss"]["train"])
    reduction = (refs["pruned"]["train"] - top["loss"]["train"]) / refs["pruned"]["train"]
    rows = ["| paper's claim | measured here | holds here? |", "|---|---|---|",
            f"| 43.4% training-loss reduction over the pruned model | {pct(reduction)} (best Ouroboros arm: depth "
            f"{top['depth']}, rank {top['rank']}) | {'yes' if reduction >= 0.434 else 'no'} |",
            f"| 51.3% of the full-vs-pruned gap recovered (training distribution) | {pct(top['recovered']['train'])}"
            f" | {'yes' if (top['recovered']['train'] or 0) >= 0.513 else 'no'} |"]
    diffs = [(d, r, table[(STATIC, d, r)]["loss"]["train"] - table[(OURO, d, r)]["loss"]["train"])
             for d, r in keys if (OURO, d, r) in table and (STATIC, d, r) in table]
    if diffs:
        text = "; ".join(f"depth {d} rank {r}: {x:+.3f}" for d, r, x in diffs)
        ahead = all(x > 0 for _, _, x in diffs)
        verdict = ("no" if not ahead else "yes" if min(x for _, _, x in diffs) >= 1.44 else
                   "in direction yes (at every depth and rank run); the margin is smaller than 1.44")
        rows.append(f"| controller ahead of static per-step LoRA (train loss, static minus controller; paper: "
                    f"+1.44 at depth 1) at every depth and rank | {text} | {verdict} |")
    gate = [(d, r, table[(OURO_NOGATE, d, r)]["loss"]["train"] - table[(OURO, d, r)]["loss"]["train"])
            for d, r in keys if (OURO, d, r) in table and (OURO_NOGATE, d, r) in table]
    if gate:
        text = "; ".join(f"depth {d} rank {r}: {x:+.3f}" for d, r, x in gate)
        rows.append(f"| the gate is essential (train loss without gate minus with gate) | {text} | "
                    f"{'yes' if all(x > 0 for _, _, x in gate) else 'no'} |")
    held = [r["recovered"]["heldout"] for r in ouro if r["recovered"]["heldout"] is not None]
    if held:
        rows.append(f"| (the paper's stated limitation) no held-out gain | best Ouroboros held-out recovery: "
                    f"{pct(max(held))} | {'yes' if max(held) <= 0 else 'no: some held-out gain'} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("--command", required=True, help="the command that made the study")
    parser.add_argument("--quick", type=Path, help="a quick-preset folder to report too")
    parser.add_argument("--notes", type=Path, help="a Markdown file of observations to include verbatim")
    args = parser.parse_args()
    results, grid, env = load(args.study)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    for png in ("loss_vs_depth.png", "loss_curves.png"):
        shutil.copy(args.study / png, out / png)
    lines = ["# Reproduction report", "",
             "Generated by `docs/make_results.py` from the study folder; regenerate with:", "", "```",
             args.command, "python " + " ".join(shlex.quote(a) for a in sys.argv), "```", "",
             f"Backbone `{grid['backbone']}` (hash `{env['backbone_hash'][:16]}...`), split "
             f"{results['references']['split']}, seed {grid['seed']}; budget per arm: {grid['steps']} optimizer "
             f"steps x batch {grid['batch']} x {grid['seq_len']} tokens, {grid['precision']}; losses are mean token "
             f"losses on the first {grid['eval_windows']} windows of each set (train = `{grid['data']}`, "
             f"validation = `{grid['val']}` for choosing the LR, held-out = `{grid['heldout']}`, out-of-domain = "
             f"`{grid['ood']}`). Machine: {env['machine']}; versions: {env['versions']}.", "",
             "## Results (each arm at its best learning rate on the validation split)", "",
             *results_table(results), "", "![loss vs depth](results/loss_vs_depth.png)", "",
             "![training curves](results/loss_curves.png)", "", "## The paper's claims next to ours", "",
             *claims(results), ""]
    if results.get("skipped"):
        lines += ["Skipped combinations: " + "; ".join(f"{d} ({r})" for d, r in results["skipped"]), ""]
    if args.notes:
        lines += [args.notes.read_text().strip(), ""]
    if args.quick:
        quick, qgrid, _ = load(args.quick)
        lines += ["## The quick preset (`make demo`)", "", f"{qgrid['steps']} steps x batch {qgrid['batch']} x "
                  f"{qgrid['seq_len']} tokens per arm.", "", *results_table(quick), ""]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
