"""Held-out evaluation of a checkpoint next to its references, in one harness and on the same windows.

For every dataset, the same token windows are scored by three kinds of model:

* ``full``: the whole frozen backbone (Hugging Face's own forward, no cache);
* ``pruned``: the plain pruned backbone, i.e. ``model(ids, depth=1, plain=True)`` (prelude + the bare recurrent
  layer once + coda; equal to Hugging Face's forward over the kept layers, and sharing the model's memory);
* ``ouroboros``: the checkpoint at each requested depth.

The loss is the token-weighted mean next-token cross-entropy (labels == input_ids, shifted once), accumulated as a
sum in float32 so that batches of different sizes weigh correctly. ``recovered`` is the share of the full-vs-pruned
gap closed by Ouroboros: ``(loss_pruned - loss_ouro) / (loss_pruned - loss_full)``.

Windows are the consecutive, non-overlapping ``seq_len`` windows of :func:`ouroboros.core.data.load_windows` (the
documents' token stream in order); the first ``max_windows`` of them are kept, so the selection is deterministic.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .errors import ConfigError

PRECISIONS = ("fp32", "bf16")
GAP_TOLERANCE = 1e-6
"""Below this full-vs-pruned loss gap, ``recovered`` is undefined (None)."""

Forward = Callable[[torch.Tensor], torch.Tensor]
Progress = Callable[[str, int, int], None]
"""``progress(description, advance, total)``: ``advance`` batches just finished out of ``total`` for the whole run."""


def perplexity(loss: float) -> float:
    """``exp(loss)``, or ``inf`` when it overflows a float."""
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


def recovered(loss_full: float, loss_pruned: float, loss_ouro: float, tol: float = GAP_TOLERANCE) -> float | None:
    """Share of the pruning gap that Ouroboros recovers: 0 = no better than pruned, 1 = as good as the full model.

    None when the gap ``loss_pruned - loss_full`` is within ``tol`` of zero (nothing to recover).
    """
    gap = loss_pruned - loss_full
    if not math.isfinite(gap) or abs(gap) <= tol:
        return None
    return (loss_pruned - loss_ouro) / gap


def autocast_context(device: str | torch.device, precision: str):
    """bf16 autocast on the device's type for ``precision == "bf16"``, nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def mean_loss(forward: Forward, windows: torch.LongTensor, batch: int, device: str | torch.device = "cpu",
              precision: str = "fp32", on_batch: Callable[[int], None] | None = None) -> tuple[float, int]:
    """Token-weighted mean next-token loss of ``forward(ids) -> logits`` over ``windows`` (N, T).

    ``logits[:, i]`` predicts ``ids[:, i + 1]`` (the one shift of :func:`ouroboros.core.model.causal_lm_loss`); the
    cross-entropy is summed in float32 over every batch and divided by the number of predicted tokens,
    ``N * (T - 1)``. Returns ``(loss, tokens)``. ``on_batch(1)`` is called after each batch.
    """
    total, tokens = torch.zeros((), dtype=torch.float64), 0
    for start in range(0, windows.shape[0], batch):
        ids = windows[start:start + batch].to(device)
        with autocast_context(device, precision):
            logits = forward(ids)
        targets = ids[:, 1:]
        total += F.cross_entropy(logits[:, :-1].float().flatten(0, 1), targets.flatten(),
                                 reduction="sum").double().cpu()
        tokens += targets.numel()
        if on_batch is not None:
            on_batch(1)
    if tokens == 0:
        raise ConfigError("no tokens to evaluate: the windows are empty")
    return float(total / tokens), tokens


def check_options(datasets: Sequence[str], seq_len: int, batch: int, max_windows: int | None,
                  precision: str) -> None:
    """ConfigError for the options that can be checked without loading anything."""
    if not datasets:
        raise ConfigError("no dataset given: pass at least one --data (an embedded corpus, a local path or a Hub id)")
    blank = [spec for spec in datasets if not isinstance(spec, str) or not spec.strip()]
    if blank:
        raise ConfigError(f"--data {blank[0]!r} is blank; give an embedded corpus, a local path or a Hub id")
    if _not_int(seq_len) or seq_len < 2:
        raise ConfigError(f"--seq-len {seq_len!r} must be an integer >= 2 (a window predicts seq_len - 1 tokens)")
    if _not_int(batch) or batch <= 0:
        raise ConfigError(f"--batch {batch!r} must be a positive integer")
    if max_windows is not None and (_not_int(max_windows) or max_windows < 0):
        raise ConfigError(f"--max-windows {max_windows!r} must be an integer >= 0 (0 = every window)")
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r} is not supported; choose one of: {', '.join(PRECISIONS)}")


def check_model_options(model, depths: Sequence[int], seq_len: int) -> None:
    """ConfigError for a depth outside 1..max_steps or a seq_len beyond the backbone's positions."""
    if not depths:
        raise ConfigError(f"no depth given; valid depths: 1..{model.config.max_steps}")
    for depth in depths:
        if _not_int(depth) or not 1 <= depth <= model.config.max_steps:
            raise ConfigError(f"--depth {depth!r} is out of range: valid 1..{model.config.max_steps} "
                              f"(the checkpoint has {model.config.max_steps} step slots)")
    limit = getattr(model.hf_config, "max_position_embeddings", None)
    if limit is not None and seq_len > limit:
        raise ConfigError(f"--seq-len {seq_len} is out of range: valid 2..{limit} "
                          f"(the backbone's max_position_embeddings)")


def _not_int(value) -> bool:
    return isinstance(value, bool) or not isinstance(value, int)


def select_windows(windows: torch.LongTensor, max_windows: int | None) -> torch.LongTensor:
    """The first ``max_windows`` windows (all of them for 0 or None)."""
    return windows if not max_windows else windows[:max_windows]


def _score(label: str, forward: Forward, windows, batch, device, precision, progress: Progress | None,
           total: int) -> dict:
    """One column of the table: loss, perplexity and token count of ``forward`` on ``windows``."""
    on_batch = None if progress is None else (lambda n: progress(label, n, total))
    loss, tokens = mean_loss(forward, windows, batch, device, precision, on_batch=on_batch)
    return {"loss": loss, "ppl": perplexity(loss), "tokens": tokens}


def evaluate_windows(model, full, spec: str, windows: torch.LongTensor, depths: Sequence[int], *, batch: int,
                     device, precision: str, progress: Progress | None = None, total: int = 0) -> dict:
    """Score full backbone, pruned backbone and Ouroboros at each depth on the same ``windows`` of ``spec``."""
    args = (windows, batch, device, precision, progress, total)
    row = {"dataset": spec, "windows": int(windows.shape[0]),
           "tokens": int(windows.shape[0] * (windows.shape[1] - 1)),
           "full": _score(f"{spec}: full backbone", lambda ids: full(ids, use_cache=False).logits, *args),
           "pruned": _score(f"{spec}: pruned backbone", lambda ids: model(ids, depth=1, plain=True).logits, *args),
           "ouroboros": []}
    for depth in depths:
        score = _score(f"{spec}: ouroboros depth {depth}", lambda ids, d=depth: model(ids, depth=d).logits, *args)
        score = {"depth": depth, **score,
                 "recovered": recovered(row["full"]["loss"], row["pruned"]["loss"], score["loss"])}
        row["ouroboros"].append(score)
    return row


def evaluate_checkpoint(path: str | Path, datasets: Sequence[str], depths: Sequence[int] | None, *, seq_len: int = 256,
                        batch: int = 4, max_windows: int | None = 64, precision: str = "fp32",
                        device: str = "cpu", progress: Progress | None = None,
                        cache_dir: Path | None = None) -> dict:
    """Evaluate the checkpoint at ``path`` on every dataset spec at every depth (None: 1 and its default depth).

    Everything is checked before any forward pass: options, depths and ``seq_len`` against the checkpoint, then
    every dataset is loaded (DataError for an unknown one). Returns the JSON-ready result (see the CLI's ``--json``).
    """
    from .backbone import load_backbone, load_tokenizer
    from .data import load_windows
    from .model import OuroborosModel

    check_options(datasets, seq_len, batch, max_windows, precision)
    model = OuroborosModel.from_pretrained(path).eval()
    depths = list(dict.fromkeys([1, model.config.depth] if depths is None else depths))
    check_model_options(model, depths, seq_len)
    tokenizer = load_tokenizer(model.config.backbone)
    data = {spec: select_windows(load_windows(spec, tokenizer, seq_len, cache_dir=cache_dir), max_windows)
            for spec in dict.fromkeys(datasets)}
    full = load_backbone(model.config.backbone, dtype=model.embed.weight.dtype).to(device)
    model.to(device)
    total = sum(-(-w.shape[0] // batch) for w in data.values()) * (2 + len(depths))
    results = [evaluate_windows(model, full, spec, windows, depths, batch=batch, device=device,
                                precision=precision, progress=progress, total=total)
               for spec, windows in data.items()]
    return {"checkpoint": str(path), "backbone": model.config.backbone, "causal": model.is_causal,
            "seq_len": seq_len, "batch": batch, "max_windows": max_windows or None, "precision": precision,
            "device": str(device), "depths": depths, "results": results}
