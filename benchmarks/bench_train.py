#!/usr/bin/env python
"""Training throughput, peak memory and Ouroboros overhead on CPU.

    .venv/bin/python benchmarks/bench_train.py                       # the embedded default, everything (minutes)
    .venv/bin/python benchmarks/bench_train.py --backbone /tmp/tiny --batch 2 --seq-len 32 --quick

Every measurement runs in a fresh subprocess of this script (``--child``), so its peak RSS is its own. The parent
imports neither torch nor ouroboros: a child's ``ru_maxrss`` starts from the parent's high-water mark at exec.
In the child, the peak is reset after the model is built (``/proc/self/clear_refs``, value 5), so "peak" is the
high-water mark of the training steps themselves, *including* the resident model, torch and Python; the build's
own peak (dequantisation, SVD of the bases) is reported separately as ``load_peak``.

See benchmarks/README.md for what every number means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MiB = 1024 * 1024


# ----------------------------------------------------------------------------------------------------------------
# child side
# ----------------------------------------------------------------------------------------------------------------
def _rss_now() -> int:
    """Current resident set size in bytes (VmRSS)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _peak() -> int:
    """Peak resident set size in bytes since the start (or the last reset)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _reset_peak() -> bool:
    """Reset the high-water mark (Linux >= 4.0); False when the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Busy:
    """CPU time used by *other* processes while a block runs, as a share of all cores (0 = we had the machine)."""

    @staticmethod
    def _sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        busy = sum(v) - v[3] - (v[4] if len(v) > 4 else 0)  # all minus idle and iowait, in clock ticks
        t = os.times()
        return busy / os.sysconf("SC_CLK_TCK"), t.user + t.system, time.perf_counter()

    def __enter__(self):
        self.start = self._sample()
        return self

    def __exit__(self, *exc):
        b1, o1, w1 = self._sample()
        b0, o0, w0 = self.start
        self.own_cpu = o1 - o0
        self.foreign = max(0.0, ((b1 - b0) - (o1 - o0)) / ((os.cpu_count() or 1) * max(w1 - w0, 1e-9)))
        return False


def wait_idle(threshold: float, max_wait: float, log) -> float:
    """Wait (up to max_wait s) until other processes use less than ``threshold`` of the CPUs over 2 s."""
    t0 = time.perf_counter()
    while True:
        with Busy() as b:
            time.sleep(2.0)
        if b.foreign < threshold or time.perf_counter() - t0 > max_wait:
            return b.foreign
        log(f"    machine busy ({b.foreign:.0%} of the CPUs used by other processes), waiting ...")
        time.sleep(8.0)


def _stats(xs: list[float]) -> dict:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs), "all": xs}


def _apply_patches(patches: list[str]) -> list[str]:
    """Monkeypatches of the library, to measure a suggested fix without editing it. Returns what was applied."""
    import functools

    import torch
    import torch.nn.functional as F

    import ouroboros.core.model as M

    done = []
    for p in patches:
        name, _, arg = p.partition("=")
        if name == "chunk":  # chunk size of the chunked loss (tokens per chunk)
            M.chunked_lm_loss = functools.partial(_ORIG_CHUNKED, chunk=int(arg))
        elif name.startswith("fused_ce"):  # loss and d loss / d h chunk by chunk in the forward: no recompute
            M.chunked_lm_loss = functools.partial(fused_lm_loss, chunk=int(arg or 256))
        elif name == "gate_split":  # sigmoid gate without torch.cat: W [a; b] = W_a a + W_b b
            from ouroboros.plugins.gates import SigmoidGate

            def forward(self, h_new, h_old, step):
                D = h_new.shape[-1]
                w = self.proj.weight
                z = torch.addmm(self.proj.bias, h_new.flatten(0, -2), w[:, :D].t())
                z = torch.addmm(z, h_old.flatten(0, -2), w[:, D:].t())
                g = torch.sigmoid(z).view_as(h_new)
                return (h_old + g * (h_new - h_old)).to(h_old.dtype)

            SigmoidGate.forward = forward
        elif name == "fast_lowrank":  # fold the scale into d (r-wide) and fuse "y + z B^T" into one addmm
            from ouroboros.core.lowrank import LowRankLinear

            def forward(self, x):
                y = self.base(x)
                if self.path is None:
                    return y
                A, B, d, scale = self.path
                z = F.linear(x, A.to(x.dtype)) * (d * scale)  # (B, T, r): the scale costs r, not out, per token
                out = torch.addmm(y.reshape(-1, y.shape[-1]), z.reshape(-1, z.shape[-1]).to(y.dtype),
                                  B.to(y.dtype).t())
                return out.view(y.shape)

            LowRankLinear.forward = forward
        elif name == "fast_controller":  # causal mean without a ones mask; step embedding folded into a bias
            from ouroboros.plugins.controllers import MLPController, pool

            def forward(self, h, step, mask=None):
                self._check_step(step)
                if mask is None and self.config.pooling == "causal_mean":
                    n = torch.arange(1, h.shape[1] + 1, device=h.device, dtype=torch.float32).unsqueeze(-1)
                    pooled = (h.float().cumsum(1) / n).to(h.dtype)
                else:
                    pooled = pool(h, mask, self.config.pooling)
                s = F.silu(self.state_proj(pooled))  # (B, T', hidden)
                first = self.mlp[0]
                k = s.shape[-1]
                bias = F.linear(self.step_emb.weight[step].to(s.dtype), first.weight[:, k:], first.bias)  # (hidden,)
                x = torch.addmm(bias, s.reshape(-1, k), first.weight[:, :k].t()).view(*s.shape[:-1], -1)
                return self.mlp[2](self.mlp[1](x))

            MLPController.forward = forward
        elif name in ("release_mmap", "malloc_trim"):  # applied after the build, see _post_build
            pass
        else:
            raise SystemExit(f"unknown patch {p!r}")
        done.append(p)
    return done


_ORIG_CHUNKED = None


def fused_lm_loss(h, head, labels, attention_mask=None, chunk: int = 256):
    """Drop-in for ``chunked_lm_loss`` when the head is frozen (as in Ouroboros): the forward computes, chunk by
    chunk, the loss *and* its gradient w.r.t. the hidden states (softmax - one-hot) @ W, keeping only that
    (N, D) gradient; the backward scales it. Same arithmetic as recomputing the logits in the backward, minus
    the recomputation, and never more than one chunk of logits alive."""
    import torch
    import torch.nn.functional as F

    assert not head.weight.requires_grad and getattr(head, "bias", None) is None
    targets = labels[:, 1:]
    if attention_mask is not None:
        targets = targets.masked_fill(attention_mask[:, 1:] == 0, -100)
    hs, ts = h[:, :-1].flatten(0, 1), targets.flatten()
    return _FusedCE.apply(hs, head.weight, ts, chunk)


def _fused_ce_class():
    import torch
    import torch.nn.functional as F

    class FusedCE(torch.autograd.Function):
        @staticmethod
        def forward(ctx, hs, weight, ts, chunk):
            n_valid = (ts != -100).sum().clamp(min=1)
            grad = torch.empty(hs.shape, dtype=hs.dtype, device=hs.device)
            total = torch.zeros((), dtype=torch.float32, device=hs.device)
            for i in range(0, hs.shape[0], chunk):
                x, t = hs[i:i + chunk], ts[i:i + chunk]
                logits = F.linear(x, weight.to(x.dtype) if not torch.is_autocast_enabled("cpu") else weight).float()
                valid = t != -100
                tc = t.clamp(min=0)
                lse = torch.logsumexp(logits, -1)
                total += ((lse - logits.gather(1, tc[:, None])[:, 0]) * valid).sum()
                p = logits.sub_(lse[:, None]).exp_()  # softmax, in place
                p[torch.arange(p.shape[0], device=p.device), tc] -= valid.float()
                p.mul_((valid.float() / n_valid)[:, None])
                g = F.linear(p, weight.t().to(p.dtype) if not torch.is_autocast_enabled("cpu") else weight.t())
                grad[i:i + chunk] = g.to(grad.dtype)
            ctx.save_for_backward(grad)
            return total / n_valid

        @staticmethod
        def backward(ctx, g):
            (grad,) = ctx.saved_tensors
            return grad * g.to(grad.dtype), None, None, None

    return FusedCE


class _Lazy:
    def __getattr__(self, name):
        global _FusedCE
        _FusedCE = _fused_ce_class()
        return getattr(_FusedCE, name)


_FusedCE = _Lazy()


def _build(args):
    import torch

    import ouroboros
    from ouroboros.testing import randomise_trainable

    torch.manual_seed(0)
    kw = {}
    if args.prelude is not None:
        kw = dict(prelude=args.prelude, recurrent=args.recurrent, coda=args.coda)
    model = ouroboros.build(args.backbone, rank=args.rank, dtype=args.dtype, **kw)
    randomise_trainable(model)  # move the zero-initialised parts off zero: no path is skipped
    _post_build(model, args.patches)
    return model


def _post_build(model, patches: list[str]) -> None:
    """Build-time fixes measured by patching: ``release_mmap`` copies every tensor the model keeps into its own
    memory, so the safetensors file mapping (which keeps the dropped layers' pages resident) is released;
    ``malloc_trim`` returns the heap that the build freed (dtype conversion of the dropped layers) to the OS."""
    import ctypes
    import gc

    import torch

    if "release_mmap" in patches:
        with torch.no_grad():
            for mod in model.modules():
                for key, p in list(mod._parameters.items()):
                    if p is not None:
                        p.data = p.data.clone()
                for key, b in list(mod._buffers.items()):
                    if b is not None:
                        mod._buffers[key] = b.clone()
        gc.collect()
    if "malloc_trim" in patches or "release_mmap" in patches:
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def child(spec: dict) -> dict:
    global _ORIG_CHUNKED
    t_start = time.perf_counter()
    import torch

    torch.set_num_threads(spec["threads"])
    import ouroboros.core.model as M

    _ORIG_CHUNKED = M.chunked_lm_loss
    args = argparse.Namespace(**spec)
    patches = _apply_patches(spec.get("patches", []))
    model = _build(args)
    vocab = model.lm_head.weight.shape[0]
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (args.batch, args.seq_len), generator=g)
    load = {"load_peak": _peak(), "rss_after_load": _rss_now(), "load_s": time.perf_counter() - t_start}
    reset_ok = _reset_peak()
    out = {"spec": spec, "patches": patches, "peak_reset": reset_ok, **load,
           "trainable": model.num_trainable_parameters()}
    if spec["kind"] == "train":
        out.update(_train(model, ids, spec))
    elif spec["kind"] == "overhead":
        out.update(_overhead(model, ids, spec))
    else:
        raise SystemExit(f"unknown kind {spec['kind']!r}")
    out["peak"] = _peak()
    out["rss_end"] = _rss_now()
    return out


def _autocast(precision: str):
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def _train(model, ids, spec) -> dict:
    """What Trainer._optimizer_step does (one process, no accumulation): forward with labels, backward,
    gradient clipping, AdamW step (fp32 master weights), zero_grad."""
    import torch

    model.train()
    model.checkpoint_steps = spec["checkpoint_steps"]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    times, cpu, foreign, losses, step_peaks = [], [], [], [], []
    for i in range(spec["warmup"] + spec["steps"]):
        with Busy() as b:
            t0 = time.perf_counter()
            with _autocast(spec["precision"]):
                loss = model(ids, labels=ids, depth=spec["depth"], return_logits=spec["return_logits"]).loss
                loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            dt = time.perf_counter() - t0
        losses.append(float(loss))
        if i >= spec["warmup"]:
            times.append(dt)
            cpu.append(b.own_cpu)
            foreign.append(b.foreign)
        step_peaks.append(_peak())
    st = _stats(times)
    tokens = ids.numel()
    return {"step_s": st, "tokens_per_s": tokens / st["median"], "tokens": tokens, "loss": losses,
            "cpu_s": _stats(cpu), "foreign_load": _stats(foreign),
            "peak_after_each_step": step_peaks}


def _overhead(model, ids, spec) -> dict:
    """Forward + backward of recurrent loop (depth) + coda + final norm + chunked loss, gradient w.r.t. the
    prelude output h0 (and the trainable parameters for Ouroboros). plain=True vs plain=False, interleaved."""
    import torch

    from ouroboros.core.model import _call

    M = sys.modules["ouroboros.core.model"]
    model.train()
    depth, prec = spec["depth"], spec["precision"]
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.no_grad(), _autocast(prec):
        h = model.embed(ids)
        pos = torch.arange(ids.shape[1]).unsqueeze(0)
        masks = model._attention_masks(h, None, pos)
        kw = {"position_embeddings": model.rotary(h, pos), "position_ids": pos}
        for layer, kind in zip(model.prelude, model._types["prelude"]):
            h = _call(layer, h, masks[kind], kw)
    h0 = h.detach().requires_grad_()
    rmask = masks[model._types["recurrent"]]

    def run(plain: bool) -> float:
        h0.grad = None
        for p in params:
            p.grad = None
        t0 = time.perf_counter()
        with _autocast(prec):
            h = h0
            for t in range(depth):
                h = model.step(h, t, rmask, kw, None, plain)
            for layer, kind in zip(model.coda, model._types["coda"]):
                h = _call(layer, h, masks[kind], kw)
            h = model.norm(h)
            loss = M.chunked_lm_loss(h, model.lm_head, ids)
            loss.backward()
        dt = time.perf_counter() - t0
        assert h0.grad is not None
        if not plain:
            assert all(p.grad is not None for p in params)
        return dt

    for _ in range(spec["warmup"]):
        run(True)
        run(False)
    plain_t, ouro_t, ratios, foreign = [], [], [], []
    for i in range(spec["reps"]):
        order = (True, False) if i % 2 == 0 else (False, True)  # alternate the order against drift
        with Busy() as b:
            r = {p: run(p) for p in order}
        foreign.append(b.foreign)
        plain_t.append(r[True])
        ouro_t.append(r[False])
        ratios.append(r[False] / r[True])
    ratio = statistics.median(ouro_t) / statistics.median(plain_t)
    return {"plain_s": _stats(plain_t), "ouroboros_s": _stats(ouro_t), "ratio": ratio,
            "pair_ratio": _stats(ratios), "min_ratio": min(ouro_t) / min(plain_t), "foreign_load": _stats(foreign)}


# ----------------------------------------------------------------------------------------------------------------
# parent side
# ----------------------------------------------------------------------------------------------------------------
WAIT = [0.0]  # seconds to wait for an idle machine before each child (--wait-idle)


def run_child(spec: dict, log) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "MKL_NUM_THREADS": str(spec["threads"]),
           "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore", **spec.get("env", {})}
    label = spec["label"]
    if WAIT[0] > 0:
        wait_idle(0.15, WAIT[0], log)
    log(f"[{time.strftime('%H:%M:%S')}] {label} ...")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT))
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise SystemExit(f"child {label!r} failed with exit code {proc.returncode}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["label"] = label
    result["wall_s"] = time.perf_counter() - t0
    log(f"[{time.strftime('%H:%M:%S')}] {label}: {_summary(result)} ({result['wall_s']:.0f} s)")
    return result


def _summary(r: dict) -> str:
    if "ratio" in r:
        return (f"ratio {r['ratio']:.3f} (plain {r['plain_s']['median']:.3f} s, ouroboros "
                f"{r['ouroboros_s']['median']:.3f} s, min ratio {r['min_ratio']:.3f}), other load {_load(r)}")
    return (f"{r['tokens_per_s']:.0f} tok/s, step {r['step_s']['median']:.3f} s "
            f"[{r['step_s']['min']:.3f}..{r['step_s']['max']:.3f}], peak {r['peak'] / MiB:.0f} MiB, "
            f"other load {_load(r)}")


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = subprocess.run([sys.executable, "-c", "import torch, transformers; "
                               "print(torch.__version__, transformers.__version__, torch.get_num_threads())"],
                              capture_output=True, text=True).stdout.split()
    mem = 0
    try:
        mem = int(open("/proc/meminfo").readline().split()[1]) * 1024
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem / 2**30, 1),
            "torch": versions[0] if versions else "?", "transformers": versions[1] if len(versions) > 1 else "?",
            "python": platform.python_version(), "platform": platform.platform()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="smollm2-135m", help="embedded name or a Hugging Face folder "
                    "(e.g. one written by ouroboros.testing.tiny_backbone)")
    ap.add_argument("--prelude", type=int, default=7)
    ap.add_argument("--recurrent", type=int, default=15)
    ap.add_argument("--coda", type=int, default=7)
    ap.add_argument("--default-split", action="store_true", help="let the builder choose the split")
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--depth", type=int, default=4, help="depth of the main training and overhead measurements")
    ap.add_argument("--depths", default="1,4,8,16", help="depths of the scaling measurement")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="timed optimizer steps per measurement (median)")
    ap.add_argument("--reps", type=int, default=7, help="interleaved repetitions of the overhead timing")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--overhead-precisions", default="fp32,bf16", help="precisions of the overhead measurement")
    ap.add_argument("--checkpoint-steps", action="store_true",
                    help="also use activation checkpointing of the recurrent steps in the main training rows "
                         "(the depth scaling always measures both)")
    ap.add_argument("--parts", default="train,logits,overhead,depth",
                    help="comma list of: train (= fp32,bf16,bf16-backbone: the three training rows), logits (return_logits=True "
                         "vs False), overhead (ouroboros vs plain recursion), depth (1,4,8,16 x checkpointing), "
                         "patches (suggested library fixes, measured by monkeypatching)")
    ap.add_argument("--patch", action="append", default=[],
                    help="monkeypatch applied to every child, e.g. chunk=256 or gate_split")
    ap.add_argument("--out", default=str(HERE / "results"), help="folder for train.json and train.md")
    ap.add_argument("--name", default="train", help="basename of the result files")
    ap.add_argument("--quick", action="store_true", help="warmup 1, steps 2, reps 3 (for development)")
    ap.add_argument("--wait-idle", type=float, default=600.0,
                    help="before each measurement, wait up to this many seconds until other processes use < 15%% "
                         "of the CPUs (0: do not wait); the load seen during each measurement is reported anyway")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    WAIT[0] = args.wait_idle
    if args.quick:
        args.warmup, args.steps, args.reps = 1, 2, 3
    parts = set(args.parts.split(","))
    base = dict(backbone=args.backbone, rank=args.rank, batch=args.batch, seq_len=args.seq_len,
                threads=args.threads, warmup=args.warmup, steps=args.steps, dtype="float32",
                prelude=None if args.default_split else args.prelude,
                recurrent=None if args.default_split else args.recurrent,
                coda=None if args.default_split else args.coda, patches=args.patch)

    def train(label, **kw):
        spec = {**base, "kind": "train", "label": label, "depth": args.depth, "precision": "fp32",
                "checkpoint_steps": args.checkpoint_steps, "return_logits": False, **kw}
        return run_child(spec, log)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    info = machine()
    log(f"machine: {info}")
    results = {"machine": info, "args": vars(args), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    main_fp32 = None
    if "train" in parts:
        parts |= {"fp32", "bf16", "bf16-backbone"}
    rows = []
    if "fp32" in parts:
        main_fp32 = train("train fp32")
        rows.append(main_fp32)
    if "bf16" in parts:
        rows.append(train("train bf16 autocast (fp32 backbone)", precision="bf16"))
    if "bf16-backbone" in parts:
        rows.append(train("train bf16 autocast (bf16 backbone)", precision="bf16", dtype="bfloat16"))
    if rows:
        results["train"] = rows
    if "logits" in parts:
        chunked = main_fp32 or train("train fp32")
        results["logits"] = [chunked, train("train fp32, return_logits=True (full logits)", return_logits=True)]
    if "overhead" in parts:
        results["overhead"] = [run_child({**base, "kind": "overhead", "label": f"overhead {p}", "depth": args.depth,
                                          "precision": p, "reps": args.reps}, log)
                              for p in args.overhead_precisions.split(",")]
    if "depth" in parts:
        rows = []
        for ck in (False, True):
            for d in map(int, args.depths.split(",")):
                if (main_fp32 is not None and d == args.depth and ck == args.checkpoint_steps):
                    rows.append(main_fp32)
                else:
                    rows.append(train(f"depth {d} fp32 checkpoint_steps={ck}", depth=d, checkpoint_steps=ck))
        results["depth"] = rows
    if "patches" in parts:
        env = {"MALLOC_MMAP_THRESHOLD_": "131072"}  # glibc: blocks >= 128 KiB are mmap-ed, freed blocks go back
        bf16bb = dict(precision="bf16", dtype="bfloat16")
        fast = ["fast_lowrank", "gate_split", "fast_controller"]
        P = args.patch
        rows = [train("fp32, chunk=256", patches=[*P, "chunk=256"]),
                train("fp32, fused_ce", patches=[*P, "fused_ce"]),
                train("fp32, fused_ce, release_mmap", patches=[*P, "fused_ce", "release_mmap"]),
                train("fp32, fused_ce, release_mmap, MALLOC_MMAP_THRESHOLD_", env=env,
                      patches=[*P, "fused_ce", "release_mmap"]),
                train("bf16 backbone, chunk=256", **bf16bb, patches=[*P, "chunk=256"]),
                train("bf16 backbone, fused_ce", **bf16bb, patches=[*P, "fused_ce"]),
                train("bf16 backbone, fused_ce, malloc_trim", **bf16bb, patches=[*P, "fused_ce", "malloc_trim"]),
                train("bf16 backbone, fused_ce, malloc_trim, MALLOC_MMAP_THRESHOLD_", **bf16bb, env=env,
                      patches=[*P, "fused_ce", "malloc_trim"]),
                train("fp32, " + ", ".join(fast), patches=[*P, *fast]),
                train("fp32, all: fused_ce, release_mmap, " + ", ".join(fast), patches=[*P, "fused_ce",
                                                                                        "release_mmap", *fast])]
        for prec in args.overhead_precisions.split(","):
            rows.append(run_child({**base, "kind": "overhead", "label": f"overhead {prec}, " + ", ".join(fast),
                                   "depth": args.depth, "precision": prec, "reps": args.reps,
                                   "patches": [*args.patch, *fast]}, log))
        results["patches"] = rows
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    md = render(results, args)
    print(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / f"{args.name}.md").write_text(md)
    log(f"wrote {out / (args.name + '.json')} and {out / (args.name + '.md')}")


# ----------------------------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------------------------
def _mib(x: int) -> str:
    return f"{x / MiB:,.0f}"


def _gb(x: int) -> str:
    return f"{x / 1e9:.2f}"


def _load(r: dict) -> str:
    f = r.get("foreign_load")
    return f"{f['median']:.0%} (max {f['max']:.0%})" if f else "?"


def _spread(s: dict) -> str:
    return f"{s['median']:.3f} ({s['min']:.3f}–{s['max']:.3f})"


def _train_table(rows: list[dict], extra: str | None = None) -> list[str]:
    head = ["measurement", "depth", "ckpt", "step s median (min–max)", "tokens/s", "RSS after load MiB",
            "peak MiB", "peak GB", "step adds MiB", "build peak MiB", "other load"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        s = r["spec"]
        lines.append("| " + " | ".join([
            r["label"], str(s["depth"]), "yes" if s["checkpoint_steps"] else "no", _spread(r["step_s"]),
            f"{r['tokens_per_s']:.0f}", _mib(r["rss_after_load"]), _mib(r["peak"]), _gb(r["peak"]),
            _mib(r["peak"] - r["rss_after_load"]), _mib(r["load_peak"]), _load(r)]) + " |")
    return lines


def verdicts(results: dict, depth: int) -> list[tuple[str, str, str]]:
    out = []
    if "overhead" in results:
        r = results["overhead"][0]["ratio"]
        out.append(("overhead ratio fp32 (depth %d) ≤ 1.10" % depth, f"{r:.3f}", "met" if r <= 1.10 else "NOT met"))
    for r in results.get("train", []):
        if r["spec"]["precision"] == "fp32":
            out.append(("peak fp32 ≤ 2.2 GB", _gb(r["peak"]) + " GB", "met" if r["peak"] <= 2.2e9 else "NOT met"))
        else:
            name = "bf16 backbone" if r["spec"]["dtype"] == "bfloat16" else "fp32 backbone"
            out.append((f"peak bf16 ≤ 1.3 GB (autocast, {name})", _gb(r["peak"]) + " GB",
                        "met" if r["peak"] <= 1.3e9 else "NOT met"))
    if "depth" in results:
        rows = results["depth"]
        for ck in (False, True):
            sel = {r["spec"]["depth"]: r for r in rows if r["spec"]["checkpoint_steps"] == ck}
            if sel:
                lo, hi = min(sel), max(sel)
                ratio = sel[hi]["peak"] / sel[lo]["peak"]
                target = " ≤ 1.5" if ck else " (no target)"
                out.append((f"peak depth {hi} / depth {lo}, checkpoint_steps={ck}{target}", f"{ratio:.2f}",
                            ("met" if ratio <= 1.5 else "NOT met") if ck else "-"))
    return out


def render(results: dict, args) -> str:
    m = results["machine"]
    lines = [f"# Training benchmark: `{args.backbone}`", "",
             f"Machine: {m['nproc']} CPU cores ({m['cpu']}), {m['memory_gib']} GiB, torch {m['torch']}, "
             f"transformers {m['transformers']}, Python {m['python']}; torch threads {args.threads}.  ",
             f"Split {'default' if args.default_split else f'{args.prelude}/{args.recurrent}/{args.coda}'}, "
             f"rank {args.rank}, batch {args.batch}×{args.seq_len} = {args.batch * args.seq_len} tokens/step, "
             f"components mlp/diagonal/sigmoid/rmsnorm (trainable parameters randomised off zero); "
             f"{args.warmup} warm-up + {args.steps} timed optimizer steps per row.  ",
             f"Run {results['started']} – {results['finished']}. Patches: {args.patch or 'none'}.", "",
             "Peak = `ru_maxrss` of a fresh process, reset after the model is built: it **includes** the resident "
             "model, torch and Python (see *RSS after load*); *step adds* = peak − RSS after load; *build peak* is "
             "the high-water mark of building the model (before the reset).", ""]
    if "train" in results:
        lines += ["## Training step (forward with labels and `return_logits=False`, backward, clip, AdamW)", ""]
        lines += _train_table(results["train"]) + [""]
    if "logits" in results:
        lines += ["## What the chunked loss saves (fp32)", ""] + _train_table(results["logits"]) + [""]
    if "overhead" in results:
        lines += [f"## Overhead of the Ouroboros parts (depth {args.depth})", "",
                  "Forward + backward of the recurrent loop + coda + final norm + chunked loss from a fixed prelude "
                  "output h0, gradient w.r.t. h0 (and the trainable parameters for Ouroboros); plain = "
                  "`step(..., plain=True)`: the bare recurrent layer. Interleaved, order alternated.", "",
                  "| precision | plain s median (min–max) | ouroboros s median (min–max) | ratio of medians | "
                  "per-pair ratio median (min–max) | ratio of minima | reps | other load |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in results["overhead"]:
            lines.append(f"| {r['spec']['precision']}{' + ' + ','.join(r['patches']) if r['patches'] else ''} | "
                         f"{_spread(r['plain_s'])} | {_spread(r['ouroboros_s'])} | **{r['ratio']:.3f}** | "
                         f"{_spread(r['pair_ratio'])} | {r['min_ratio']:.3f} | {r['spec']['reps']} | {_load(r)} |")
        lines.append("")
    if "depth" in results:
        lines += ["## Depth scaling (fp32)", ""] + _train_table(results["depth"]) + [""]
    if "patches" in results:
        lines += ["## Suggested library fixes, measured by monkeypatching (library unchanged)", ""]
        tr = [r for r in results["patches"] if "step_s" in r]
        lines += _train_table(tr) + [""]
        for r in results["patches"]:
            if "ratio" in r:
                lines.append(f"- {r['label']}: ratio **{r['ratio']:.3f}** (plain {_spread(r['plain_s'])} s, "
                             f"ouroboros {_spread(r['ouroboros_s'])} s, ratio of minima {r['min_ratio']:.3f}, "
                             f"other load {_load(r)})")
        lines.append("")
    v = verdicts(results, args.depth)
    if v:
        lines += ["## Targets", "", "| target | measured | |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in v] + [""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
