"""Training: schedule in optimizer steps, accumulation, fp32 masters, NaN stop, SIGKILL + resume, 2 processes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import ouroboros
from ouroboros.cli.app import make_app
from ouroboros.core.errors import TrainingError
from ouroboros.core.schedule import batch_indices, lr_multiplier
from ouroboros.core.train import TrainConfig, Trainer

ROOT = Path(__file__).parent.parent
WORDS = "the cat sat on a mat while dogs ran over hills and rivers flowed to the sea under bright stars".split()


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    import random

    rng = random.Random(0)
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(400)))
    return str(path)


@pytest.fixture
def run(llama_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OUROBOROS_CACHE", str(tmp_path / "cache"))

    def make(name="run", **kw):
        model = ouroboros.build(llama_dir, prelude=1, recurrent=2, coda=1, rank=4, **kw)
        return model.save_pretrained(tmp_path / name)

    return make


def cfg(corpus, **kw):
    base = dict(data=corpus, eval_data=(corpus,), steps=6, batch=4, seq_len=16, lr=3e-3, eval_every=3,
                eval_windows=4, save_every=3)
    return TrainConfig(**{**base, **kw})


def weights(folder):
    return load_file(Path(folder) / "model.safetensors")


def metrics(folder):
    return [json.loads(line) for line in (Path(folder) / "metrics.jsonl").read_text().splitlines()]


def test_lr_schedule_is_counted_in_optimizer_steps(run, corpus):
    assert lr_multiplier(0, 10, 2, 0.1) == 0.5 and lr_multiplier(1, 10, 2, 0.1) == 1.0
    assert lr_multiplier(9, 10, 2, 0.1) == pytest.approx(0.1)
    assert lr_multiplier(5, 10, 2, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(
        torch.pi * 3 / 7)).item()))
    folder = run()
    Trainer(folder, cfg(corpus, steps=10, warmup=2, grad_accum=2, lr=1e-3, eval_every=100)).train()
    lrs = [m["lr"] for m in metrics(folder)]
    assert len(lrs) == 10  # one line per optimizer step, though each had two micro-batches
    assert lrs[0] == pytest.approx(5e-4) and lrs[1] == pytest.approx(1e-3)
    assert lrs[5] == pytest.approx(1e-3 * lr_multiplier(5, 10, 2, 0.1)) and lrs[-1] == pytest.approx(1e-4)


def test_gradient_accumulation_matches_one_big_batch(run, corpus):
    a, b = run("a"), run("b")
    Trainer(a, cfg(corpus, grad_accum=1)).train()
    Trainer(b, cfg(corpus, grad_accum=4)).train()
    wa, wb = weights(a), weights(b)
    assert all(torch.allclose(wa[k], wb[k], atol=2e-6) for k in wa)
    assert not torch.equal(wa["gate.proj.weight"], weights(run("init"))["gate.proj.weight"])


def test_bf16_precision_keeps_fp32_masters_and_small_updates(run, corpus):
    folder = run()
    before = weights(folder)
    trainer = Trainer(folder, cfg(corpus, precision="bf16", lr=1e-5, steps=2, eval_every=100))
    trainer.train()
    after = weights(folder)
    assert all(v.dtype == torch.float32 for v in after.values())
    assert all(p.dtype == torch.float32 for p in trainer.params)
    delta = (after["gate.proj.bias"] - before["gate.proj.bias"]).abs()
    assert 0 < delta.max() < 1e-4  # a 1e-5 step survives in fp32; bf16 at -2.0 has a spacing of 1.6e-2
    assert torch.equal(before["gate.proj.bias"].bfloat16(), after["gate.proj.bias"].bfloat16())


def test_metrics_and_held_out_evaluation(run, corpus):
    folder = run()
    Trainer(folder, cfg(corpus, depth=(1, 3))).train()
    rows = metrics(folder)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert {r["depth"] for r in rows} <= {1, 3} and all(r["tokens_per_s"] > 0 for r in rows)
    assert [("eval" in r) for r in rows] == [False, False, True, False, False, True]
    assert set(rows[2]["eval"]) == {corpus} and rows[-1]["eval"][corpus] > 0
    assert all(r["grad_norm"] > 0 and r["loss"] > 0 for r in rows)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(run, corpus):
    folder = run()
    trainer = Trainer(folder, cfg(corpus, steps=8, save_every=2, eval_every=100))

    def poison(event):
        if event["event"] == "step" and event["step"] == 5:
            with torch.no_grad():
                trainer.model.gate.proj.bias.fill_(float("nan"))

    trainer.callback = poison
    with pytest.raises(TrainingError, match=r"loss became nan .* at step 6 .*The last good checkpoint \(step 4\)"):
        trainer.train()
    saved = weights(folder)
    assert torch.isfinite(saved["gate.proj.bias"]).all()
    assert torch.load(Path(folder) / "training" / "state.pt", weights_only=False)["step"] == 4


def _train_cmd(folder, corpus, *extra):
    return [sys.executable, "-m", "ouroboros.cli", "train", str(folder), "--data", corpus, "--eval-data", corpus,
            "--steps", "160", "--batch", "4", "--seq-len", "16", "--lr", "1e-3", "--save-every", "20",
            "--eval-every", "100", "--eval-windows", "2", "--depth", "1,2,3", *extra]


def test_sigkill_then_resume_ends_at_the_same_weights(run, corpus):
    whole, killed = run("whole"), run("killed")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(_train_cmd(whole, corpus), env=env, check=True, capture_output=True)
    proc = subprocess.Popen(_train_cmd(killed, corpus), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state = Path(killed) / "training" / "state.pt"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and torch.load(state, weights_only=False)["step"] >= 40:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = torch.load(state, weights_only=False)["step"]
    assert 40 <= step < 160, f"the run was not killed mid-way (step {step})"
    result = subprocess.run(_train_cmd(killed, corpus, "--resume"), env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    a, b = weights(whole), weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [m["step"] for m in metrics(killed)] == list(range(1, 161))
    assert [m["loss"] for m in metrics(killed)] == [m["loss"] for m in metrics(whole)]


def test_two_processes_match_one_with_the_same_global_batch(run, corpus):
    one, two = run("one"), run("two")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = ["--data", corpus, "--eval-windows", "0", "--steps", "8", "--batch", "4", "--seq-len", "16",
            "--lr", "3e-3", "--depth", "2"]
    subprocess.run([sys.executable, "-m", "ouroboros.cli", "train", str(one), *args], env=env, check=True,
                   capture_output=True)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--master_port", "29533", "-m", "ouroboros.cli", "train", str(two), *args],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert torch.load(Path(two) / "training" / "state.pt", weights_only=False)["processes"] == 2
    a, b = weights(one), weights(two)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert not torch.allclose(a["gate.proj.weight"], weights(run("init"))["gate.proj.weight"])


def test_data_order_is_a_function_of_the_step():
    first = torch.cat([batch_indices(s, 4, 10, seed=0) for s in range(5)])  # two epochs of 10 windows
    assert sorted(first[:10].tolist()) == list(range(10)) and sorted(first[10:20].tolist()) == list(range(10))
    assert torch.equal(batch_indices(3, 4, 10, 0), batch_indices(3, 4, 10, 0))
    assert not torch.equal(batch_indices(0, 4, 10, 0), batch_indices(0, 4, 10, 1))


@pytest.fixture
def ouro(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    app, runner = make_app(), CliRunner()

    def invoke(*args):
        result = runner.invoke(app, [str(a) for a in args])
        return result.exit_code, " ".join(result.output.split())

    return invoke


@pytest.mark.parametrize("args,message", [
    (["--steps", 0], "--steps 0 must be a positive integer"),
    (["--batch", 0], "--batch 0 must be a positive integer"),
    (["--lr", -1], "--lr -1.0 must be a finite number >= 0"),
    (["--depth", 0], "every depth must be >= 1"),
    (["--depth", "2,x"], "--depth: 'x' is not an integer"),
    (["--depth", 99], "--depth 99 is out of range: valid 1..64"),
    (["--seq-len", 300], "--seq-len 300 is beyond the backbone's context: valid 2..256"),
    (["--precision", "fp16"], "--precision 'fp16' is not valid; choose one of: fp32, bf16"),
    (["--batch", 3, "--grad-accum", 2], "--batch 3 must be divisible by processes x --grad-accum = 1 x 2"),
    (["--data", "no-such-corpus"], "no-such-corpus"),
    (["--resume"], "holds no training run to resume"),
])
def test_train_bad_input_exits_2(ouro, run, corpus, args, message):
    folder = run()
    base = {"--data": corpus, "--eval-data": corpus, "--steps": 2, "--seq-len": 16}
    for flag, value in zip(args[::2], args[1::2]):
        base.pop(flag, None)
    flat = [x for kv in base.items() for x in kv] + list(args)
    code, out = ouro("train", folder, *flat)
    assert code == 2 and message in out and "Traceback" not in out, out


def test_empty_and_missing_data_files(ouro, run, tmp_path):
    folder = run()
    (tmp_path / "empty.txt").write_text("")
    code, out = ouro("train", folder, "--data", tmp_path / "empty.txt", "--eval-windows", 0, "--seq-len", 16)
    assert code == 2 and "empty" in out
    code, out = ouro("train", folder, "--data", tmp_path / "missing.txt", "--eval-windows", 0, "--seq-len", 16)
    assert code == 2 and "missing.txt" in out


def test_existing_run_is_not_overwritten_without_a_flag(ouro, run, corpus):
    folder = run()
    args = ["--data", corpus, "--eval-data", corpus, "--steps", 2, "--seq-len", 16]
    assert ouro("train", folder, *args)[0] == 0
    trained = weights(folder)
    code, out = ouro("train", folder, *args)
    assert code == 2 and "already holds a training run (step 2 of 2); pass --resume" in out
    assert all(torch.equal(trained[k], v) for k, v in weights(folder).items())
    code, out = ouro("train", folder, *args[:-2], "--seq-len", 32, "--resume")
    assert code == 2 and "seq_len=16 vs 32" in out
    code, out = ouro("train", folder, *args, "--overwrite")
    assert code == 0 and all(torch.equal(trained[k], v) for k, v in weights(folder).items())  # same seed
