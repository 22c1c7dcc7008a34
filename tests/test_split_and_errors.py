"""Bad input fails early with a message naming the bad value and the valid choices."""

import pytest
import torch

import ouroboros
from ouroboros.core import builder
from ouroboros.core.components import make_config, parse_set_options
from ouroboros.core.errors import BackboneError, ConfigError
from ouroboros.core.split import Split
from ouroboros.plugins.controllers import MLPController
from ouroboros.plugins.gates import SigmoidGate


@pytest.mark.parametrize("L,expected", [(30, (7, 15, 7)), (36, (8, 18, 8)), (5, (1, 2, 1)), (2, (0, 1, 0)),
                                        (1, (0, 0, 0))])
def test_default_split(L, expected):
    split = Split.default(L)
    assert (split.prelude, split.recurrent, split.coda) == expected
    split.validate(L)


@pytest.mark.parametrize("split,message", [
    ((-1, 2, 1), r"--prelude -1 is out of range: valid 0\.\.4"),
    ((1, 2, -1), r"--coda -1 is out of range: .*valid 0\.\.3"),
    ((5, 2, 0), r"--prelude 5 is out of range: valid 0\.\.4"),
    ((2, 3, 3), r"--coda 3 is out of range: .*valid 0\.\.2"),
    ((2, 1, 1), r"--recurrent 1 is inside the prelude: .*valid 2\.\.3"),
    ((1, 4, 1), r"--recurrent 4 is inside the coda: .*valid 1\.\.3"),
    ((1, 7, 1), r"--recurrent 7 is out of range: .*valid 1\.\.3"),
    ((1, -2, 1), r"--recurrent -2 is out of range"),
])
def test_invalid_splits_fail_before_any_weight_is_read(llama_dir, split, message, monkeypatch):
    def no_weights(*a, **k):
        raise AssertionError("weights were read")

    monkeypatch.setattr(builder, "load_backbone", no_weights)
    p, r, c = split
    with pytest.raises(ConfigError, match=message):
        ouroboros.build(llama_dir, prelude=p, recurrent=r, coda=c)


def test_partial_split_is_refused(llama_dir):
    with pytest.raises(ConfigError, match=r"give all of --prelude, --recurrent and --coda"):
        ouroboros.build(llama_dir, prelude=1)


def test_default_split_is_used_when_none_given(llama_dir):
    model = ouroboros.build(llama_dir, rank=4)
    assert (model.split.prelude, model.split.recurrent, model.split.coda) == (1, 2, 1)


def test_backbone_without_expected_modules(tmp_path, monkeypatch):
    from transformers import GPT2Config

    GPT2Config(n_layer=3, n_embd=32, n_head=4, vocab_size=50).save_pretrained(tmp_path)
    monkeypatch.setattr(builder, "load_backbone", lambda *a, **k: pytest.fail("weights were read"))
    with pytest.raises(BackboneError, match=r"'gpt2' does not have the modules of a supported layout.*model\.layers"):
        ouroboros.build(str(tmp_path), prelude=0, recurrent=1, coda=1)


def test_unknown_backbone(tmp_path):
    with pytest.raises(BackboneError, match=r"cannot load backbone .*smollm2-135m.*not an existing folder"):
        ouroboros.build(str(tmp_path / "nope"))


@pytest.mark.parametrize("kind,name", [("controller", "mpl"), ("modulation", "diag"), ("gate", "tanh"),
                                       ("normalizer", "batchnorm")])
def test_unknown_component_lists_valid_names(llama_dir, kind, name):
    with pytest.raises(ConfigError, match=rf"unknown {kind} '{name}'; valid {kind}s: .*none"):
        ouroboros.build(llama_dir, **{kind: name})


@pytest.mark.parametrize("controller,modulation,message", [
    ("none", "diagonal", r"modulation 'diagonal' reads the controller's output, but controller 'none' produces"),
    ("mlp", "static", r"controller 'mlp' would be trained for nothing: modulation 'static' ignores"),
    ("mlp", "none", r"controller 'mlp' would be trained for nothing"),
])
def test_incompatible_compositions(llama_dir, controller, modulation, message):
    with pytest.raises(ConfigError, match=message):
        ouroboros.build(llama_dir, rank=4, controller=controller, modulation=modulation)


def test_config_options_are_typed_and_validated():
    cfg = make_config(MLPController, {"style_dim": "64", "pooling": "token"})
    assert cfg.style_dim == 64 and cfg.pooling == "token"
    assert make_config(SigmoidGate, {"init_bias": "-3"}).init_bias == -3.0
    with pytest.raises(ConfigError, match=r"controller\.pooling='avg' is not valid; choose one of: causal_mean, "
                                          r"token, mean"):
        make_config(MLPController, {"pooling": "avg"})
    with pytest.raises(ConfigError, match=r"has no option width; known: hidden_dim, pooling, style_dim"):
        make_config(MLPController, {"width": "3"})
    with pytest.raises(ConfigError, match=r"controller\.style_dim='wide' is not a valid int"):
        make_config(MLPController, {"style_dim": "wide"})
    with pytest.raises(ConfigError, match=r"style_dim=0 must be a positive integer"):
        make_config(MLPController, {"style_dim": "0"})
    with pytest.raises(ConfigError, match=r"has no option x; known: \(none"):
        from ouroboros.plugins.gates import NoGate
        make_config(NoGate, {"x": 1})


def test_set_option_parsing():
    assert parse_set_options(["gate.init_bias=-3", "controller.pooling=token"])["gate"] == {"init_bias": "-3"}
    with pytest.raises(ConfigError, match=r"not of the form kind\.field=value"):
        parse_set_options(["gate=3"])
    with pytest.raises(ConfigError, match=r"unknown kind 'gates'; valid kinds: controller, modulation"):
        parse_set_options(["gates.init_bias=3"])


def test_step_beyond_slots_is_refused(llama_dir):
    model = ouroboros.build(llama_dir, rank=4, max_steps=4, depth=2)
    with pytest.raises(ConfigError, match=r"valid 1\.\.4"):
        model(torch.zeros(1, 3, dtype=torch.long), depth=5)


def test_bad_recipe_values():
    from ouroboros.core.config import OuroborosConfig

    with pytest.raises(ConfigError, match="dtype 'fp8' is not supported; choose one of: float32, bfloat16"):
        OuroborosConfig(dtype="fp8")
    with pytest.raises(ConfigError, match="--rank 0 must be a positive integer"):
        OuroborosConfig(rank=0)
    with pytest.raises(ConfigError, match=r"--depth 0 is out of range: valid 1\.\.64"):
        OuroborosConfig(depth=0)
