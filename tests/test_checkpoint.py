"""Checkpoint folders: contents, bit-exact round trip, atomic writes, and clear errors."""

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import ouroboros
from ouroboros.core import checkpoint
from ouroboros.core.errors import BackboneError, CheckpointError
from ouroboros.core.model import OuroborosModel
from ouroboros.testing import randomise_trainable, tiny_backbone


@pytest.fixture
def trained(llama_dir):
    model = ouroboros.build(llama_dir, prelude=1, recurrent=2, coda=1, rank=4, seed=3)
    randomise_trainable(model)
    return model


def logits(model, ids, depth=3):
    with torch.no_grad():
        return model(ids, depth=depth).logits


def test_checkpoint_holds_only_owned_parts_and_the_recipe(trained, tmp_path, llama_dir):
    trained.save_pretrained(tmp_path / "ck")
    assert sorted(os.listdir(tmp_path / "ck")) == ["model.safetensors", "ouroboros.json"]
    tensors = load_file(tmp_path / "ck" / "model.safetensors")
    assert {k.split(".")[0] for k in tensors} == {"bases", "controller", "modulation", "gate", "normalizer"}
    assert sum(v.numel() for k, v in tensors.items() if not k.startswith("bases")) == \
        trained.num_trainable_parameters()
    meta = json.loads((tmp_path / "ck" / "ouroboros.json").read_text())
    assert meta["config"]["backbone"] == llama_dir and meta["config"]["seed"] == 3
    assert (meta["config"]["prelude"], meta["config"]["recurrent"], meta["config"]["coda"]) == (1, 2, 1)
    assert meta["backbone_hash"] == trained.backbone_hash and len(meta["backbone_hash"]) == 64
    assert meta["components"]["controller"] == {"name": "mlp", "config": {"style_dim": 128, "hidden_dim": 256,
                                                "pooling": "causal_mean"}, "distribution": "ouroboros",
                                                "version": meta["versions"]["ouroboros"]}
    assert {"torch", "transformers", "ouroboros"} <= set(meta["versions"])
    assert len(meta["bases"]) == 7 and 0 < meta["bases"][0]["energy"] <= 1


def test_round_trip_is_bit_exact(trained, tmp_path, ids):
    trained.save_pretrained(tmp_path / "ck")
    loaded = OuroborosModel.from_pretrained(tmp_path / "ck")
    for depth in (1, 4):
        assert torch.equal(logits(trained, ids, depth), logits(loaded, ids, depth))
    assert loaded.basis_reports == trained.basis_reports


def test_crash_while_writing_leaves_previous_checkpoint(trained, tmp_path, ids, monkeypatch, llama_dir):
    trained.save_pretrained(tmp_path / "ck")
    before = logits(trained, ids)
    other = ouroboros.build(llama_dir, prelude=1, recurrent=2, coda=1, rank=4, seed=9)
    randomise_trainable(other, seed=9)

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr("safetensors.torch.save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        other.save_pretrained(tmp_path / "ck")
    assert sorted(os.listdir(tmp_path)) == ["ck"]  # no temporary left behind
    assert torch.equal(logits(OuroborosModel.from_pretrained(tmp_path / "ck"), ids), before)


def test_crash_during_the_swap_is_recovered(trained, tmp_path, ids, monkeypatch):
    trained.save_pretrained(tmp_path / "ck")
    before = logits(trained, ids)
    real_rename, calls = os.rename, []

    def rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # target moved aside, new folder not yet in place
            raise KeyboardInterrupt("killed between renames")
        real_rename(src, dst)

    monkeypatch.setattr(checkpoint.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        trained.save_pretrained(tmp_path / "ck")
    assert not (tmp_path / "ck").exists() and (tmp_path / ".ck.previous").is_dir()
    monkeypatch.undo()
    assert torch.equal(logits(OuroborosModel.from_pretrained(tmp_path / "ck"), ids), before)


def test_resave_keeps_foreign_files(trained, tmp_path):
    trained.save_pretrained(tmp_path / "ck")
    (tmp_path / "ck" / "metrics.jsonl").write_text('{"step": 1}\n')
    (tmp_path / "ck" / "state").mkdir()
    (tmp_path / "ck" / "state" / "opt.pt").write_text("x")
    trained.save_pretrained(tmp_path / "ck")
    assert (tmp_path / "ck" / "metrics.jsonl").read_text() == '{"step": 1}\n'
    assert (tmp_path / "ck" / "state" / "opt.pt").read_text() == "x"


def test_missing_and_corrupt_files(trained, tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint folder at"):
        OuroborosModel.from_pretrained(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="is not an ouroboros checkpoint: it has no ouroboros.json"):
        OuroborosModel.from_pretrained(tmp_path / "empty")
    ck = tmp_path / "ck"
    trained.save_pretrained(ck)
    weights = (ck / "model.safetensors").read_bytes()
    (ck / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors is corrupt"):
        OuroborosModel.from_pretrained(ck)
    (ck / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        OuroborosModel.from_pretrained(ck)
    (ck / "ouroboros.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="ouroboros.json is corrupt"):
        OuroborosModel.from_pretrained(ck)


def test_missing_tensor_is_an_error(trained, tmp_path):
    trained.save_pretrained(tmp_path / "ck")
    tensors = load_file(tmp_path / "ck" / "model.safetensors")
    del tensors["gate.proj.bias"]
    save_file(tensors, tmp_path / "ck" / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"do not fit gate.*proj\.bias"):
        OuroborosModel.from_pretrained(tmp_path / "ck")


def test_changed_backbone_is_refused(tmp_path):
    backbone = tiny_backbone(tmp_path / "bb", seed=1)
    model = ouroboros.build(backbone, prelude=1, recurrent=2, coda=1, rank=4)
    model.save_pretrained(tmp_path / "ck")
    shutil.rmtree(backbone)
    tiny_backbone(tmp_path / "bb", seed=2)  # same path, other weights
    with pytest.raises(BackboneError, match=r"content hash .* but the checkpoint was built on"):
        OuroborosModel.from_pretrained(tmp_path / "ck")


def test_unknown_component_names_its_plugin(trained, tmp_path):
    trained.save_pretrained(tmp_path / "ck")
    meta = json.loads((tmp_path / "ck" / "ouroboros.json").read_text())
    meta["config"]["gate"] = "fancy"
    meta["components"]["gate"] = {"name": "fancy", "config": {}, "distribution": "ouroboros-fancy",
                                  "version": "1.2.0"}
    (tmp_path / "ck" / "ouroboros.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"gate 'fancy', which is not registered here \(registered: none, "
                                              r"sigmoid\).*'ouroboros-fancy' \(version 1\.2\.0\): pip install "
                                              r"ouroboros-fancy"):
        OuroborosModel.from_pretrained(tmp_path / "ck")
