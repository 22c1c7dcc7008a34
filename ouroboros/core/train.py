"""Training: fp32 master weights, AdamW, warmup + cosine in optimizer steps, gradient accumulation and clipping,
fixed or sampled depth, held-out evaluation, atomic resumable checkpoints, and several processes through Hugging
Face Accelerate (DDP; gloo on CPU).

A run lives in its checkpoint folder: the weights are replaced atomically at each save, together with
``training/state.pt`` (step, optimizer, scheduler, RNG); ``metrics.jsonl`` gets one line per optimizer step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from .checkpoint import load_checkpoint, read_meta, save_checkpoint
from .errors import CheckpointError, ConfigError, TrainingError
from .schedule import batch_indices, depth_for, lr_multiplier

PRECISIONS = ("fp32", "bf16")
STATE_DIR, STATE_FILE, METRICS_FILE = "training", "state.pt", "metrics.jsonl"
# options that only change what is reported, not the trained weights: they may differ on --resume
COSMETIC = {"eval_data", "eval_every", "eval_windows", "save_every"}


@dataclass(frozen=True)
class TrainConfig:
    data: str = "shakespeare"
    eval_data: tuple[str, ...] = ("shakespeare:val",)
    steps: int = 300  # optimizer steps
    batch: int = 4  # global batch: windows per optimizer step, over all processes and accumulation
    grad_accum: int = 1
    seq_len: int = 256
    lr: float = 3e-4
    warmup: int | None = None  # optimizer steps; None: 10% of steps
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    clip: float = 1.0  # max gradient norm; 0 disables clipping
    depth: tuple[int, ...] = (4,)  # one depth, or several sampled per optimizer step
    precision: str = "fp32"  # fp32, or bf16 autocast of the frozen backbone (trainable weights stay fp32)
    seed: int = 0
    eval_every: int = 50
    eval_windows: int = 16
    save_every: int = 100
    checkpoint_steps: bool = False  # recompute recurrent steps in the backward pass

    def __post_init__(self):
        positive = {"steps": self.steps, "batch": self.batch, "grad_accum": self.grad_accum,
                    "eval_every": self.eval_every, "save_every": self.save_every}
        for name, value in positive.items():
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} {value!r} must be a positive integer")
        if self.seq_len < 2:
            raise ConfigError(f"--seq-len {self.seq_len} must be at least 2")
        if not (self.lr >= 0 and math.isfinite(self.lr)):
            raise ConfigError(f"--lr {self.lr} must be a finite number >= 0")
        if not self.depth or any(d < 1 for d in self.depth):
            raise ConfigError(f"--depth {','.join(map(str, self.depth))} is invalid: every depth must be >= 1")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision {self.precision!r} is not valid; choose one of: {', '.join(PRECISIONS)}")
        if self.warmup is not None and not 0 <= self.warmup <= self.steps:
            raise ConfigError(f"--warmup {self.warmup} is out of range: valid 0..{self.steps}")
        if not 0 <= self.min_lr_ratio <= 1 or self.clip < 0 or self.weight_decay < 0 or self.eval_windows < 0:
            raise ConfigError("min_lr_ratio must be in [0, 1]; clip, weight_decay and eval_windows must be >= 0")

    @property
    def warmup_steps(self) -> int:
        return max(1, self.steps // 10) if self.warmup is None else self.warmup

    def lr_at(self, step: int) -> float:
        return self.lr * lr_multiplier(step, self.steps, self.warmup_steps, self.min_lr_ratio)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "eval_data": list(self.eval_data), "depth": list(self.depth)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        return cls(**{**data, "eval_data": tuple(data["eval_data"]), "depth": tuple(data["depth"])})


def training_state(run: Path) -> dict[str, Any] | None:
    """The saved training state of a run folder, or None."""
    file = Path(run) / STATE_DIR / STATE_FILE
    return torch.load(file, weights_only=False) if file.exists() else None


def prepare_run(run: Path, cfg: TrainConfig, resume: bool, overwrite: bool) -> dict[str, Any] | None:
    """Check the run folder against --resume/--overwrite; returns the state to resume from (or None)."""
    read_meta(run)  # a clear error when the folder is no checkpoint
    state = training_state(run)
    if resume and state is None:
        raise CheckpointError(f"--resume: {str(run)!r} holds no training run to resume; start it without --resume")
    if state is not None and not resume and not overwrite:
        raise ConfigError(f"{str(run)!r} already holds a training run (step {state['step']} of "
                          f"{state['config']['steps']}); pass --resume to continue it or --overwrite to start again")
    if resume:
        saved = TrainConfig.from_dict(state["config"]).to_dict()
        diff = {k: (saved[k], v) for k, v in cfg.to_dict().items() if k not in COSMETIC and saved[k] != v}
        if diff:
            raise ConfigError("--resume needs the options of the interrupted run; these differ (saved, given): "
                              + ", ".join(f"{k}={a!r} vs {b!r}" for k, (a, b) in diff.items()))
        return state
    if overwrite:
        shutil.rmtree(Path(run) / STATE_DIR, ignore_errors=True)
        (Path(run) / METRICS_FILE).unlink(missing_ok=True)
    return None


class Trainer:
    """One training run of the model in ``run`` (a checkpoint folder)."""

    def __init__(self, run: Path, cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False,
                 device: str = "cpu", callback: Callable[[dict], None] | None = None):
        from accelerate import Accelerator

        self.run, self.cfg, self.callback = Path(run), cfg, callback or (lambda event: None)
        if device not in ("cpu", "cuda", "auto"):
            raise ConfigError(f"--device {device!r} is not valid; choose cpu, cuda or auto")
        self.acc = Accelerator(cpu=device == "cpu")
        self.resume_state = prepare_run(self.run, cfg, resume, overwrite) if self.acc.is_main_process else None
        self.acc.wait_for_everyone()
        if not self.acc.is_main_process and resume:
            self.resume_state = training_state(self.run)
        self.model = load_checkpoint(self.run, fresh_components=overwrite and not resume)
        self._check_model()
        self.model.checkpoint_steps = cfg.checkpoint_steps
        self.train_windows, self.eval_sets = self._load_data()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: lr_multiplier(s, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio))
        self.start = 0
        if self.resume_state is not None:
            self.opt.load_state_dict(self.resume_state["optimizer"])
            self.sched.load_state_dict(self.resume_state["scheduler"])
            torch.set_rng_state(self.resume_state["rng"])
            self.start = self.resume_state["step"]
        self.ddp_model, self.opt = self.acc.prepare(self.model, self.opt)
        world = self.acc.num_processes
        if cfg.batch % (world * cfg.grad_accum):
            raise ConfigError(f"--batch {cfg.batch} must be divisible by processes x --grad-accum = "
                              f"{world} x {cfg.grad_accum}")

    def _check_model(self) -> None:
        cfg, model = self.cfg, self.model
        if max(cfg.depth) > model.config.max_steps:
            raise ConfigError(f"--depth {max(cfg.depth)} is out of range: valid 1..{model.config.max_steps}")
        limit = getattr(model.hf_config, "max_position_embeddings", None)
        if limit is not None and cfg.seq_len > limit:
            raise ConfigError(f"--seq-len {cfg.seq_len} is beyond the backbone's context: valid 2..{limit}")
        if not model.is_causal:
            raise ConfigError("this model's controller sees future tokens (pooling=mean): it cannot be trained "
                              "as a language model; rebuild with --set controller.pooling=causal_mean")

    def _load_data(self):
        from .backbone import load_tokenizer
        from .data import load_windows

        tokenizer = load_tokenizer(self.model.config.backbone)
        with self.acc.main_process_first():
            train = load_windows(self.cfg.data, tokenizer, self.cfg.seq_len)
            evals = {name: load_windows(name, tokenizer, self.cfg.seq_len)[: self.cfg.eval_windows]
                     for name in self.cfg.eval_data} if self.cfg.eval_windows else {}
        return train, evals

    def autocast(self):
        enabled = self.cfg.precision == "bf16"
        return torch.autocast(self.acc.device.type, dtype=torch.bfloat16, enabled=enabled)

    # -----------------------------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Run to ``cfg.steps``; returns the last metrics. Raises TrainingError on a non-finite loss."""
        cfg, last = self.cfg, {}
        self.callback({"event": "start", "step": self.start, "steps": cfg.steps,
                       "trainable": sum(p.numel() for p in self.params), "windows": len(self.train_windows)})
        self._truncate_metrics(self.start)
        for step in range(self.start, cfg.steps):
            t0 = time.perf_counter()
            depth = depth_for(step, cfg.depth, cfg.seed)
            lr = self.opt.param_groups[0]["lr"]  # what this optimizer step uses
            loss, grad_norm = self._optimizer_step(step, depth)
            tokens = cfg.batch * (cfg.seq_len - 1)
            last = {"step": step + 1, "lr": lr, "loss": loss, "grad_norm": grad_norm, "depth": depth,
                    "tokens_per_s": tokens / (time.perf_counter() - t0)}
            if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
                last["eval"] = self.evaluate(max(cfg.depth))
            if self.acc.is_main_process:
                with open(self.run / METRICS_FILE, "a") as f:
                    f.write(json.dumps(last) + "\n")
            if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps:
                self.save(step + 1)
            self.callback({"event": "step", **last})
        return last

    def _optimizer_step(self, step: int, depth: int) -> tuple[float, float]:
        cfg, acc = self.cfg, self.acc
        idx = batch_indices(step, cfg.batch, len(self.train_windows), cfg.seed)
        per = cfg.batch // acc.num_processes
        local = self.train_windows[idx[acc.process_index * per:(acc.process_index + 1) * per]].to(acc.device)
        micro = per // cfg.grad_accum
        total = torch.zeros((), device=acc.device)
        for i in range(cfg.grad_accum):
            ids = local[i * micro:(i + 1) * micro]
            sync = i == cfg.grad_accum - 1
            with (contextlib.nullcontext() if sync else acc.no_sync(self.ddp_model)), self.autocast():
                loss = self.ddp_model(ids, labels=ids, depth=depth, return_logits=False).loss / cfg.grad_accum
                acc.backward(loss)
            total += loss.detach()
        total = acc.reduce(total, "mean")
        grad_norm = acc.clip_grad_norm_(self.params, cfg.clip if cfg.clip > 0 else float("inf"))
        if not (torch.isfinite(total) and torch.isfinite(grad_norm)):
            saved = training_state(self.run)
            raise TrainingError(f"the loss became {float(total)} (grad norm {float(grad_norm)}) at step {step + 1} "
                                f"(lr {cfg.lr_at(step):.3g}); stopped without saving. The last good checkpoint "
                                f"(step {saved['step'] if saved else 0}) is kept in {self.run}; lower --lr, "
                                f"use --precision fp32 or a smaller depth")
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        return float(total), float(grad_norm)

    @torch.no_grad()
    def evaluate(self, depth: int) -> dict[str, float]:
        from .evaluate import mean_loss

        forward = lambda ids: self.model(ids, depth=depth).logits  # noqa: E731
        return {name: mean_loss(forward, windows, self.cfg.batch, self.acc.device, self.cfg.precision)[0]
                for name, windows in self.eval_sets.items()}

    def save(self, step: int) -> None:
        """Weights and training state, in one atomic write (main process; the others wait)."""
        if self.acc.is_main_process:
            state = {"step": step, "config": self.cfg.to_dict(), "optimizer": self.opt.state_dict(),
                     "scheduler": self.sched.state_dict(), "rng": torch.get_rng_state(),
                     "processes": self.acc.num_processes}

            def extra(folder: Path) -> None:
                (folder / STATE_DIR).mkdir()
                torch.save(state, folder / STATE_DIR / STATE_FILE)

            save_checkpoint(self.acc.unwrap_model(self.ddp_model), self.run, extra=extra)
        self.acc.wait_for_everyone()

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric lines logged after the checkpoint we resume from (a killed run may have written them)."""
        file = self.run / METRICS_FILE
        if not self.acc.is_main_process or not file.exists():
            return
        lines = [line for line in file.read_text().splitlines() if line.strip()]
        kept = [line for line in lines if json.loads(line)["step"] <= step]
        if len(kept) != len(lines):
            file.write_text("".join(line + "\n" for line in kept))
