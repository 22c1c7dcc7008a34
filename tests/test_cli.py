"""Every `ouro` command through typer's CliRunner: output, exit codes, and no tracebacks on bad input."""

import json

import pytest
from typer.testing import CliRunner

from ouroboros.cli.app import make_app


@pytest.fixture
def ouro(monkeypatch, tmp_path):
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    runner, app = CliRunner(), make_app()

    def run(*args):
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result

    return run


SMALL = ["--prelude", 1, "--recurrent", 2, "--coda", 1, "--rank", 4]


def test_build_prints_summary_and_saves(ouro, llama_dir, tmp_path):
    r = ouro("build", llama_dir, *SMALL, "--set", "gate.init_bias=-3", "-o", "out")
    assert r.exit_code == 0, r.output
    assert "5 layers, prelude [0,1) + recurrent 2 + coda [4,5); removed 2: 1, 3" in r.output
    assert "identity config == pruned backbone: max |Δlogit| = 0" in r.output
    for part in ("controller", "modulation", "gate", "normalizer", "backbone", "energy kept"):
        assert part in r.output
    meta = json.loads((tmp_path / "out" / "ouroboros.json").read_text())
    assert meta["components"]["gate"]["config"] == {"init_bias": -3.0}


def test_build_default_output_is_never_overwritten(ouro, llama_dir, tmp_path):
    assert ouro("build", llama_dir, *SMALL).exit_code == 0
    assert ouro("build", llama_dir, *SMALL).exit_code == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["ouro", "ouro-1"]


def test_build_refuses_an_existing_output_without_overwrite(ouro, llama_dir, tmp_path):
    (tmp_path / "taken").mkdir()
    r = ouro("build", llama_dir, *SMALL, "-o", "taken")
    assert r.exit_code == 2 and "already exists" in r.output and "--overwrite" in r.output
    assert ouro("build", llama_dir, *SMALL, "-o", "taken", "--overwrite").exit_code == 0


@pytest.mark.parametrize("args,message", [
    (["--prelude", 1, "--recurrent", 0, "--coda", 1], "--recurrent 0 is inside the prelude"),
    (["--controller", "nope"], "unknown controller 'nope'; valid controllers: mlp, none"),
    (["--controller", "none"], "modulation 'diagonal' reads the controller's output"),
    (["--set", "gate.init_bias=abc"], "gate.init_bias='abc' is not a valid float"),
    (["--set", "oops"], "not of the form kind.field=value"),
    (["--rank", 99], "--rank 99 is out of range: valid 1..16"),
    (["--dtype", "fp8"], "dtype 'fp8' is not supported"),
    (["--depth", 0], "--depth 0 is out of range"),
])
def test_build_bad_input_exits_2_with_one_message(ouro, llama_dir, args, message):
    r = ouro("build", llama_dir, *([] if "--rank" in args else ["--rank", 4]), *args)
    assert r.exit_code == 2, r.output
    assert message in " ".join(r.output.split()) and "Traceback" not in r.output


def test_build_unknown_backbone_exits_2(ouro, tmp_path):
    r = ouro("build", str(tmp_path / "missing-model"))
    assert r.exit_code == 2 and "cannot load backbone" in r.output


def test_list_and_options(ouro):
    r = ouro("list")
    assert r.exit_code == 0
    for name in ("mlp", "diagonal", "static", "sigmoid", "rmsnorm", "layernorm"):
        assert name in r.output
    r = ouro("list", "gates", "--options")
    assert r.exit_code == 0 and "init_bias: float = -2.0" in r.output and "rmsnorm" not in r.output
    assert "[h_new; h_old]" in r.output  # docstrings are printed literally, not as rich markup
    r = ouro("list", "controllers", "--options")
    assert "pooling: causal_mean | token | mean = 'causal_mean'" in r.output
    r = ouro("list", "widgets")
    assert r.exit_code == 2 and "unknown kind 'widgets'; valid kinds: controllers, modulations" in r.output


def test_plugins_lists_builtin_hooks(ouro):
    r = ouro("plugins")
    assert r.exit_code == 0 and "ouroboros.builtin" in r.output and "ouroboros_register_gates" in r.output


def test_help_lists_every_command(ouro):
    r = ouro("--help")
    for command in ("build", "list", "plugins"):
        assert command in r.output
