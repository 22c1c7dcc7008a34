"""`ouro ablate`: grid expansion, one study end to end on a tiny backbone, resumability, bad input."""

import csv
import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from ouroboros.cli.app import make_app
from ouroboros.core import study
from ouroboros.core.ablate import Grid, expand
from ouroboros.core.errors import ConfigError
from ouroboros.core.presets import PRESETS

WORDS = "the cat sat on a mat while dogs ran over hills and rivers flowed to the sea under bright stars".split()


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    root = tmp_path_factory.mktemp("texts")
    for name, seed in (("train", 0), ("val", 1), ("heldout", 2), ("ood", 3)):
        rng = random.Random(seed)
        words = WORDS if name != "ood" else [w.upper() for w in WORDS]
        (root / f"{name}.txt").write_text("\n".join(" ".join(rng.choice(words) for _ in range(10))
                                                    for _ in range(150)))
    return root


def tiny_grid(llama_dir, texts, **kw):
    base = dict(backbone=llama_dir, prelude=1, recurrent=2, coda=1, controller=("mlp",),
                modulation=("diagonal", "static"), gate=("sigmoid",), normalizer=("rmsnorm",), depth=(1, 2),
                rank=(4,), lr=(1e-3, 1e-2), steps=4, batch=2, seq_len=16, eval_windows=4,
                data=str(texts / "train.txt"), val=str(texts / "val.txt"), heldout=str(texts / "heldout.txt"),
                ood=str(texts / "ood.txt"))
    return Grid(**{**base, **kw})


def test_expansion_rules(llama_dir, texts):
    grid = tiny_grid(llama_dir, texts, controller=("mlp", "none"), gate=("sigmoid", "none"), depth=(2,),
                     lr=(1e-3,), options={"controller.pooling": ("causal_mean", "token")})
    arms, skipped = expand(grid)
    families = sorted(a.family for a in arms)
    # static ignores the controller: it runs with controller none, once (options of mlp do not apply to it)
    assert families == ["mlp/diagonal/none/rmsnorm+pooling=causal_mean", "mlp/diagonal/none/rmsnorm+pooling=token",
                        "mlp/diagonal/sigmoid/rmsnorm+pooling=causal_mean",
                        "mlp/diagonal/sigmoid/rmsnorm+pooling=token", "none/static/none/rmsnorm",
                        "none/static/sigmoid/rmsnorm"]
    assert len(skipped) == 4 and all("reads the controller's output" in reason for _, reason in skipped)


def test_grid_errors(llama_dir, texts):
    with pytest.raises(ConfigError, match="--gate is an empty list"):
        tiny_grid(llama_dir, texts, gate=())
    with pytest.raises(ConfigError, match=r"the grid has no valid arm \(4 combinations skipped: .*reads the"):
        expand(tiny_grid(llama_dir, texts, controller=("none",), modulation=("diagonal",), depth=(2,),
                         lr=(1e-3, 1e-2), gate=("sigmoid", "none")))  # the check is memoised across LRs
    with pytest.raises(ConfigError, match="unknown gate 'tanh'"):
        expand(tiny_grid(llama_dir, texts, gate=("tanh",)))
    with pytest.raises(ConfigError, match=r"unknown grid keys \['depths'\]; known: backbone, batch"):
        Grid.from_dict({"depths": [1, 2]})


def test_grid_files(tmp_path):
    from ouroboros.core.presets import load_grid_file

    (tmp_path / "g.toml").write_text('gate = ["sigmoid", "none"]\nsteps = 7\n[set]\n"controller.pooling" = "token"\n')
    grid = Grid.from_dict(load_grid_file(tmp_path / "g.toml"))
    assert grid.gate == ("sigmoid", "none") and grid.steps == 7 and grid.options == {"controller.pooling": ("token",)}
    (tmp_path / "bad.toml").write_text("gate = [")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_grid_file(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_grid_file(tmp_path / "missing.toml")


def test_paper_preset_expands_to_the_papers_study():
    arms, skipped = expand(Grid(**{k: tuple(v) if isinstance(v, list) else v for k, v in PRESETS["paper"].items()}))
    assert len(arms) == 2 * 2 * 4 * 3 * 3  # {controller, static} x gate x depth x rank x lr
    assert {a.family for a in arms} == {"mlp/diagonal/sigmoid/rmsnorm", "mlp/diagonal/none/rmsnorm",
                                        "none/static/sigmoid/rmsnorm", "none/static/none/rmsnorm"}
    assert {a.depth for a in arms} == {1, 4, 8, 16} and {a.rank for a in arms} == {8, 32, 64}


def test_study_end_to_end_and_resume(llama_dir, texts, tmp_path, monkeypatch):
    grid = tiny_grid(llama_dir, texts)
    out = tmp_path / "study"
    result = study.run_study(grid, out)
    rows = result["rows"]
    assert len(rows) == 8 and {r["family"] for r in rows} == {"mlp/diagonal/sigmoid/rmsnorm",
                                                            "none/static/sigmoid/rmsnorm"}
    refs = json.loads((out / "references.json").read_text())
    assert refs["full"]["heldout"] < refs["pruned"]["heldout"] or refs["full"]["heldout"] != refs["pruned"]["heldout"]
    for group in {(r["family"], r["depth"]) for r in rows}:
        members = [r for r in rows if (r["family"], r["depth"]) == group]
        best = [r for r in members if r["best_lr"]]
        assert len(best) == 1 and best[0]["loss"]["val"] == min(r["loss"]["val"] for r in members)
    for r in rows:
        expected = (refs["pruned"]["ood"] - r["loss"]["ood"]) / (refs["pruned"]["ood"] - refs["full"]["ood"])
        assert r["recovered"]["ood"] == pytest.approx(expected)
        assert r["trainable"] > 0 and r["steps"] == 4
    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [t["arm"] for t in table[:2]] == ["full backbone", "pruned backbone"] and len(table) == 10
    for png in ("loss_vs_depth.png", "loss_curves.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    env = json.loads((out / "environment.json").read_text())
    assert len(env["backbone_hash"]) == 64 and env["seed"] == 0 and "torch" in env["versions"]
    assert json.loads((out / "grid.json").read_text()) == grid.to_dict()

    # rerun: every arm is finished, nothing is trained again
    monkeypatch.setattr("ouroboros.core.train.Trainer.train", lambda self: pytest.fail("retrained"))
    again = study.run_study(grid, out)
    assert [r["arm"] for r in again["rows"]] == [r["arm"] for r in rows]


def test_interrupted_arm_resumes_to_the_same_weights(llama_dir, texts, tmp_path, monkeypatch):
    grid = tiny_grid(llama_dir, texts, modulation=("diagonal",), depth=(2,), lr=(1e-2,), steps=6)
    study.run_study(grid, tmp_path / "whole")
    real_save, saves = study_trainer_save(), []

    def crash_after_first_save(self, step):
        real_save(self, step)
        saves.append(step)
        if len(saves) == 1:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr("ouroboros.core.train.Trainer.save", crash_after_first_save)
    with pytest.raises(KeyboardInterrupt):
        study.run_study(grid, tmp_path / "broken")
    monkeypatch.undo()
    study.run_study(grid, tmp_path / "broken")
    arm = next((tmp_path / "whole" / "arms").iterdir()).name
    a = load_file(tmp_path / "whole" / "arms" / arm / "model.safetensors")
    b = load_file(tmp_path / "broken" / "arms" / arm / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def study_trainer_save():
    from ouroboros.core.train import Trainer

    return Trainer.save


def test_a_different_grid_is_refused(llama_dir, texts, tmp_path):
    grid = tiny_grid(llama_dir, texts, modulation=("static",), depth=(1,), lr=(1e-3,), steps=2)
    study.run_study(grid, tmp_path / "s")
    with pytest.raises(ConfigError, match=r"holds a different grid \(differs in: steps\)"):
        study.run_study(tiny_grid(llama_dir, texts, modulation=("static",), depth=(1,), lr=(1e-3,), steps=3),
                        tmp_path / "s")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not an ablation of this grid"):
        study.run_study(grid, tmp_path / "other")


def test_cli_from_grid_file_and_bad_input(llama_dir, texts, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "grid.toml").write_text(f'''
backbone = "{llama_dir}"
prelude = 1
recurrent = 2
coda = 1
controller = ["mlp"]
modulation = ["diagonal", "static"]
gate = ["sigmoid"]
depth = [2]
rank = [4]
lr = [1e-3]
steps = 2
batch = 2
seq_len = 16
eval_windows = 2
data = "{texts / 'train.txt'}"
val = "{texts / 'val.txt'}"
heldout = "{texts / 'heldout.txt'}"
ood = "{texts / 'ood.txt'}"
''')
    app, runner = make_app(), CliRunner()

    def ouro(*args):
        r = runner.invoke(app, [str(a) for a in args])
        return r.exit_code, " ".join(r.output.split())

    code, out = ouro("ablate", "--from", "grid.toml", "-o", "out")
    assert code == 0, out
    for text in ("full backbone", "pruned backbone", "mlp/diagonal/sigmoid/rmsnorm", "none/static/sigmoid/rmsnorm",
                 "2 steps x batch 2 x 16 tokens", "results.csv"):
        assert text in out
    assert (tmp_path / "out" / "results.json").exists()
    for args, message in [
        (["--gate", "tanh"], "unknown gate 'tanh'"),
        (["--gate", ","], "--gate is an empty list"),
        (["--depth", "1,y"], "--depth: 'y' is not an integer"),
        (["--lr", "-1"], "must list positive learning rates"),
        (["--preset", "huge"], "unknown preset 'huge'; valid presets: quick, paper"),
        (["--controller", "none", "--modulation", "diagonal"], "the grid has no valid arm"),
        (["--steps", "3"], "holds a different grid (differs in: steps)"),
        (["--workers", "0"], "--workers 0 must be at least 1"),
    ]:
        code, out = ouro("ablate", "--from", "grid.toml", "-o", "out", *args)
        assert code == 2 and message in out and "Traceback" not in out, (args, out)


def test_workers_run_arms_in_parallel_processes_with_the_same_results(llama_dir, texts, tmp_path):
    grid = tiny_grid(llama_dir, texts, depth=(2,), lr=(1e-2,), steps=3)
    serial = study.run_study(grid, tmp_path / "serial")
    parallel = study.run_study(grid, tmp_path / "parallel", workers=2)
    assert [r["arm"] for r in serial["rows"]] == [r["arm"] for r in parallel["rows"]]
    for a, b in zip(serial["rows"], parallel["rows"]):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-4)
