"""``ouro eval`` and ouroboros.core.evaluate: real losses on a tiny backbone and a local text file."""

import json
import math
import random

import pytest
import torch
import typer
from typer.testing import CliRunner

import ouroboros
from ouroboros.core.errors import ConfigError
from ouroboros.core.evaluate import evaluate_checkpoint, mean_loss, perplexity, recovered
from ouroboros.core.model import causal_lm_loss

SEQ, WINDOWS, BATCH = 32, 7, 3  # 7 windows in batches of 3, 3, 1: uneven on purpose
SPLIT = dict(prelude=1, recurrent=2, coda=1, rank=4, max_steps=8)
IDENTITY = dict(controller="none", modulation="none", gate="none", normalizer="none")


@pytest.fixture(scope="module")
def isolated(tmp_path_factory):
    """Every cache (packed windows, datasets' own) under a temporary folder; never the network."""
    import datasets

    root = tmp_path_factory.mktemp("eval-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OUROBOROS_CACHE", str(root / "ouro"))
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", str(root / "hf-datasets"))
        mp.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        yield root


@pytest.fixture(scope="module")
def text_file(isolated):
    """A few KB of varied English-like sentences (characters the tiny tokenizer knows)."""
    rng = random.Random(0)
    subjects = ["The king", "A fool", "My lady", "The ghost", "Our army", "This knave", "The witch", "Good Kate"]
    verbs = ["speaks of", "dreams of", "fears", "sings to", "waits for", "curses", "forgives", "remembers"]
    objects = ["the crown", "a storm", "the sea", "his daughter", "the night", "old Rome", "a rose", "the moon"]
    lines = [f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}{rng.choice('.!?;')}"
             for _ in range(160)]
    path = isolated / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size > 3000
    return str(path)


def _checkpoint(llama_dir, folder, randomise=False, **components):
    model = ouroboros.build(llama_dir, **SPLIT, **components)
    if randomise:
        from ouroboros.testing import randomise_trainable

        randomise_trainable(model, scale=0.05)
    model.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def identity_ckpt(llama_dir, tmp_path_factory):
    return _checkpoint(llama_dir, tmp_path_factory.mktemp("ckpt") / "identity", **IDENTITY)


@pytest.fixture(scope="module")
def trained_ckpt(llama_dir, tmp_path_factory):
    return _checkpoint(llama_dir, tmp_path_factory.mktemp("ckpt") / "trained", randomise=True)


def _evaluate(ckpt, text_file, depths, **kw):
    return evaluate_checkpoint(ckpt, [text_file], depths, seq_len=SEQ, batch=BATCH, max_windows=WINDOWS, **kw)


PROGRESS = []


@pytest.fixture(scope="module")
def identity_result(identity_ckpt, text_file):
    return _evaluate(identity_ckpt, text_file, [1, 2], progress=lambda *call: PROGRESS.append(call))


@pytest.fixture(scope="module")
def trained_result(trained_ckpt, text_file):
    return _evaluate(trained_ckpt, text_file, [1, 2, 4])


# ------------------------------------------------------------------------------------------------ helpers
def test_recovered_and_perplexity_arithmetic():
    assert recovered(2.0, 3.0, 2.5) == pytest.approx(0.5)
    assert recovered(2.0, 3.0, 3.0) == 0.0
    assert recovered(2.0, 3.0, 2.0) == pytest.approx(1.0)
    assert recovered(2.0, 3.0, 3.5) == pytest.approx(-0.5)  # worse than pruned
    assert recovered(2.0, 3.0, 1.5) == pytest.approx(1.5)  # better than the full backbone
    assert recovered(2.0, 2.0, 1.0) is None and recovered(2.0, 2.0 + 1e-9, 1.0) is None
    assert perplexity(0.0) == 1.0 and perplexity(math.log(7.0)) == pytest.approx(7.0)
    assert perplexity(1e4) == float("inf")


def test_mean_loss_weights_tokens_not_batches():
    torch.manual_seed(0)
    table = torch.randn(11, 11)
    windows = torch.randint(0, 11, (5, 6))
    forward = lambda ids: table[ids]  # noqa: E731  logits (B, T, V) from a lookup table
    whole = causal_lm_loss(forward(windows), windows).item()
    calls = []
    for batch in (1, 2, 5, 64):
        loss, tokens = mean_loss(forward, windows, batch, "cpu", "fp32", on_batch=calls.append)
        assert tokens == 5 * 5 and loss == pytest.approx(whole, abs=1e-6)
    assert sum(calls) == 5 + 3 + 1 + 1


# ---------------------------------------------------------------------------------------- real numbers
def test_three_columns_share_the_same_windows(identity_result, text_file):
    (row,) = identity_result["results"]
    assert row["dataset"] == text_file and row["windows"] == WINDOWS and row["tokens"] == WINDOWS * (SEQ - 1)
    columns = [row["full"], row["pruned"], *row["ouroboros"]]
    assert {c["tokens"] for c in columns} == {WINDOWS * (SEQ - 1)}
    assert identity_result["depths"] == [1, 2] and identity_result["seq_len"] == SEQ
    assert identity_result["causal"] is True


def test_progress_counts_every_batch_of_every_column(identity_result):
    batches = -(-WINDOWS // BATCH) * (2 + 2)  # 3 batches x (full, pruned, depth 1, depth 2)
    assert sum(advance for _, advance, _ in PROGRESS) == batches and {t for *_, t in PROGRESS} == {batches}
    labels = list(dict.fromkeys(d.split(": ")[-1] for d, *_ in PROGRESS))
    assert labels == ["full backbone", "pruned backbone", "ouroboros depth 1", "ouroboros depth 2"]


def test_identity_equals_pruned_and_full_equals_hugging_face(identity_result, llama_dir, text_file):
    from transformers import AutoModelForCausalLM

    from ouroboros.core.backbone import load_tokenizer
    from ouroboros.core.data import load_windows

    (row,) = identity_result["results"]
    depth1 = row["ouroboros"][0]
    assert depth1["depth"] == 1 and depth1["loss"] == pytest.approx(row["pruned"]["loss"], abs=1e-6)
    assert depth1["recovered"] == pytest.approx(0.0, abs=1e-5)
    assert abs(row["pruned"]["loss"] - row["full"]["loss"]) > 1e-4  # pruning two layers changes the loss
    ids = load_windows(text_file, load_tokenizer(llama_dir), SEQ)[:WINDOWS]  # all windows in ONE batch
    reference = AutoModelForCausalLM.from_pretrained(llama_dir)(ids, labels=ids).loss.item()
    assert row["full"]["loss"] == pytest.approx(reference, abs=1e-5)
    assert row["full"]["ppl"] == pytest.approx(math.exp(reference), rel=1e-5)


def test_trained_losses_differ_per_depth(trained_result):
    (row,) = trained_result["results"]
    losses = [s["loss"] for s in row["ouroboros"]]
    assert [s["depth"] for s in row["ouroboros"]] == [1, 2, 4]
    assert all(math.isfinite(x) for x in losses) and len({round(x, 6) for x in losses}) == 3
    assert abs(losses[0] - row["pruned"]["loss"]) > 1e-6  # the trained parts act at depth 1
    for s in row["ouroboros"]:
        gap = row["pruned"]["loss"] - row["full"]["loss"]
        assert s["recovered"] == pytest.approx((row["pruned"]["loss"] - s["loss"]) / gap)


def test_bf16_is_close_to_fp32(trained_ckpt, trained_result, text_file):
    bf16 = _evaluate(trained_ckpt, text_file, [1, 2, 4], precision="bf16")
    (a,), (b,) = trained_result["results"], bf16["results"]
    pairs = [(a["full"], b["full"]), (a["pruned"], b["pruned"]), *zip(a["ouroboros"], b["ouroboros"])]
    for x, y in pairs:
        assert y["tokens"] == x["tokens"] and abs(y["loss"] - x["loss"]) < 0.05, (x, y)
    assert bf16["precision"] == "bf16"


def test_library_refuses_an_empty_dataset_list(identity_ckpt):
    with pytest.raises(ConfigError, match="no dataset given"):
        evaluate_checkpoint(identity_ckpt, [], [1])


# ------------------------------------------------------------------------------------------------- CLI
@pytest.fixture
def ouro_eval(monkeypatch, isolated, tmp_path):
    from ouroboros.cli import evaluate

    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    app = typer.Typer()
    evaluate.register(app)
    app.command("noop", hidden=True)(lambda: None)  # two commands: typer keeps `eval` as a subcommand
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(app, ["eval", *map(str, args)])
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result

    return run


def _small(text_file):
    return ["--data", text_file, "--seq-len", SEQ, "--batch", BATCH, "--max-windows", WINDOWS]


def test_cli_table(ouro_eval, trained_ckpt, text_file):
    r = ouro_eval(trained_ckpt, *_small(text_file), "--depth", "1,2")
    assert r.exit_code == 0, r.output
    text = " ".join(r.stdout.split())
    assert f"{WINDOWS} windows of {SEQ} tokens, {WINDOWS * (SEQ - 1)} predicted tokens (fp32)" in text
    for word in ("full backbone", "pruned backbone", "ouroboros", "recovered", "loss", "ppl", "%"):
        assert word in text
    assert "warning" not in r.output


def test_cli_json(ouro_eval, identity_ckpt, text_file):
    r = ouro_eval(identity_ckpt, *_small(text_file), "--depth", "2,1", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert {"checkpoint", "backbone", "causal", "seq_len", "batch", "max_windows", "precision", "device",
            "depths", "results"} <= set(out)
    assert out["checkpoint"] == identity_ckpt and out["depths"] == [2, 1] and out["seq_len"] == SEQ
    (row,) = out["results"]
    assert {"dataset", "windows", "tokens", "full", "pruned", "ouroboros"} <= set(row)
    assert row["windows"] == WINDOWS and row["tokens"] == WINDOWS * (SEQ - 1)
    assert set(row["full"]) == set(row["pruned"]) == {"loss", "ppl", "tokens"}
    assert [set(s) for s in row["ouroboros"]] == [{"depth", "loss", "ppl", "tokens", "recovered"}] * 2


def test_cli_warns_about_a_non_causal_controller(ouro_eval, llama_dir, tmp_path, text_file):
    ckpt = _checkpoint(llama_dir, tmp_path / "mean", options={"controller": {"pooling": "mean"}})
    r = ouro_eval(ckpt, *_small(text_file), "--max-windows", 2, "--depth", "1", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["causal"] is False
    assert "sees future tokens" in " ".join(r.stderr.split())


@pytest.mark.parametrize("args,message", [
    (["--depth", "0"], "--depth 0 is out of range: valid 1..8"),
    (["--depth", "1,9"], "--depth 9 is out of range: valid 1..8"),
    (["--depth", "1,x"], "--depth: 'x' is not an integer"),
    (["--seq-len", "1"], "--seq-len 1 must be an integer >= 2"),
    (["--seq-len", "1000"], "--seq-len 1000 is out of range: valid 2..256"),
    (["--batch", "0"], "--batch 0 must be a positive integer"),
    (["--max-windows", "-1"], "--max-windows -1 must be an integer >= 0"),
    (["--precision", "fp16"], "--precision 'fp16' is not supported; choose one of: fp32, bf16"),
    (["--data", "./no-such-file.txt"], "data file or folder './no-such-file.txt' does not exist"),
    (["--data", " "], "--data ' ' is blank"),
])
def test_cli_bad_input_exits_2_with_one_message(ouro_eval, identity_ckpt, text_file, args, message):
    r = ouro_eval(identity_ckpt, *_small(text_file), *args)
    assert r.exit_code == 2, r.output
    assert message in " ".join(r.output.split()) and "Traceback" not in r.output


def test_cli_missing_checkpoint_exits_2(ouro_eval, tmp_path, text_file):
    r = ouro_eval(tmp_path / "nowhere", *_small(text_file))
    assert r.exit_code == 2 and "no checkpoint folder at" in r.output and "Traceback" not in r.output
