"""Frozen SVD bases from the mean residual of the removed layers (DESIGN §2)."""

import pytest
import torch
from transformers import AutoModelForCausalLM

import ouroboros
from ouroboros.core.errors import ConfigError


def test_bases_are_the_truncated_svd_of_the_mean_residual(llama_dir):
    model = ouroboros.build(llama_dir, prelude=1, recurrent=2, coda=1, rank=4)
    full = AutoModelForCausalLM.from_pretrained(llama_dir).requires_grad_(False)
    layers = full.model.layers
    for target, path in model.layout.targets.items():
        w = lambda i: layers[i].get_submodule(path).weight.float()
        residual = ((w(1) - w(2)) + (w(3) - w(2))) / 2  # removed layers 1 and 3 around recurrent 2
        A, B = model.bases.pair(target)
        assert A.shape == (4, residual.shape[1]) and B.shape == (residual.shape[0], 4)
        assert torch.allclose(A @ A.T, torch.eye(4), atol=1e-5)  # orthonormal rows: V_r^T
        u, s, vh = torch.linalg.svd(residual)
        best = u[:, :4] @ torch.diag(s[:4]) @ vh[:4]
        assert torch.allclose(B @ A, best, atol=1e-5)  # B A is the best rank-4 approximation
        report = next(r for r in model.basis_reports if r.target == target)
        assert report.energy == pytest.approx(float(s[:4].pow(2).sum() / s.pow(2).sum()), rel=1e-5)
        assert not A.requires_grad and not B.requires_grad


def test_no_removed_layer_means_zero_residual_and_no_energy(llama_dir):
    model = ouroboros.build(llama_dir, prelude=2, recurrent=2, coda=2, rank=4)
    assert all(r.energy is None and r.residual_norm == 0.0 for r in model.basis_reports)
    assert all(model.bases.pair(t)[1].abs().sum() == 0 for t in model.config.targets)


def test_rank_beyond_smallest_target_is_refused(llama_dir):
    with pytest.raises(ConfigError, match=r"--rank 17 is out of range: valid 1\.\.16"):
        ouroboros.build(llama_dir, prelude=1, recurrent=2, coda=1, rank=17)  # k/v are 16 wide


def test_target_subset(llama_dir):
    model = ouroboros.build(llama_dir, prelude=1, recurrent=2, coda=1, rank=4, targets=("q", "down"))
    assert model.bases.targets == ("q", "down") and model.modulation.heads.out_features == 8
    with pytest.raises(ConfigError, match="unknown target"):
        ouroboros.build(llama_dir, prelude=1, recurrent=2, coda=1, rank=4, targets=("q", "qkv"))
