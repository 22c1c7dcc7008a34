"""The invariants of DESIGN §1, on tiny Llama and Qwen2 backbones."""

import pytest
import torch
from transformers import AutoModelForCausalLM

import ouroboros
from ouroboros.core.reference import prune_backbone
from ouroboros.testing import randomise_trainable

IDENTITY = dict(controller="none", modulation="none", gate="none", normalizer="none")
PAPER = dict(controller="mlp", modulation="diagonal", gate="sigmoid", normalizer="rmsnorm")


def test_identity_config_equals_pruned_backbone(backbone_dir, ids):
    model = ouroboros.build(backbone_dir, prelude=1, recurrent=2, coda=1, rank=4, **IDENTITY)
    pruned = prune_backbone(AutoModelForCausalLM.from_pretrained(backbone_dir), model.layout, model.split)
    assert len(pruned.model.layers) == 3
    expected = pruned(ids, use_cache=False).logits
    assert torch.allclose(model(ids, depth=1).logits, expected, atol=1e-5, rtol=0)
    # the plain switch gives the same model whatever the components are
    paper = ouroboros.build(backbone_dir, prelude=1, recurrent=2, coda=1, rank=4, **PAPER)
    randomise_trainable(paper)
    assert torch.allclose(paper(ids, depth=1, plain=True).logits, expected, atol=1e-5, rtol=0)


def test_identity_with_no_layer_removed_equals_full_backbone(backbone_dir, ids):
    model = ouroboros.build(backbone_dir, prelude=2, recurrent=2, coda=2, rank=4, **IDENTITY)
    full = AutoModelForCausalLM.from_pretrained(backbone_dir)
    out, ref = model(ids, depth=1, labels=ids), full(ids, labels=ids)
    assert torch.allclose(out.logits, ref.logits, atol=1e-5, rtol=0)
    # invariant 4: the loss is the backbone's own loss (one label shift, not two)
    assert abs(out.loss.item() - ref.loss.item()) < 1e-5


def test_loss_shifts_labels_exactly_once(llama_dir, ids):
    model = ouroboros.build(llama_dir, prelude=1, recurrent=2, coda=1, rank=4, **IDENTITY)
    logits = model(ids, depth=2).logits
    manual = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 97), ids[:, 1:].reshape(-1))
    twice = torch.nn.functional.cross_entropy(logits[:, :-2].reshape(-1, 97), ids[:, 2:].reshape(-1))
    loss = model(ids, depth=2, labels=ids).loss
    assert torch.allclose(loss, manual) and not torch.allclose(loss, twice)


def test_padding_positions_are_ignored_by_the_loss(llama_dir, ids):
    model = ouroboros.build(llama_dir, prelude=1, recurrent=2, coda=1, rank=4, **PAPER)
    mask = torch.ones_like(ids)
    mask[:, 8:] = 0
    labels = ids.clone()
    labels[:, 8:] = -100
    a = model(ids, attention_mask=mask, labels=ids).loss
    b = model(ids, attention_mask=mask, labels=labels).loss
    assert torch.allclose(a, b)


@pytest.mark.parametrize("modulation,controller", [("diagonal", "mlp"), ("static", "none")])
def test_low_rank_path_is_exactly_zero_at_init(backbone_dir, ids, modulation, controller):
    plain = ouroboros.build(backbone_dir, prelude=1, recurrent=2, coda=1, rank=4, **IDENTITY)
    model = ouroboros.build(backbone_dir, prelude=1, recurrent=2, coda=1, rank=4, controller=controller,
                            modulation=modulation, gate="none", normalizer="none")
    for depth in (1, 3):
        assert torch.equal(model(ids, depth=depth).logits, plain(ids, depth=depth).logits)


def test_low_rank_path_matches_materialised_weights(llama_dir, ids):
    """y = W x + s B((A x) * d) equals x @ (W + s B diag(d) A)^T, computed the slow way here only."""
    model = ouroboros.build(llama_dir, prelude=1, recurrent=2, coda=1, rank=4, alpha=8.0, controller="none",
                            modulation="static", gate="none", normalizer="none")
    randomise_trainable(model, scale=0.5)
    out = model(ids, depth=1).logits
    plain = ouroboros.build(llama_dir, prelude=1, recurrent=2, coda=1, rank=4, **IDENTITY)
    with torch.no_grad():
        for k, target in enumerate(model.config.targets):
            A, B = model.bases.pair(target)
            d = model.modulation.table[0, k]
            plain._wrappers[target].base.weight += 2.0 * B @ torch.diag(d) @ A
    assert torch.allclose(out, plain(ids, depth=1).logits, atol=1e-5)
    assert not torch.allclose(out, model(ids, depth=1, plain=True).logits, atol=1e-3)


def test_trainable_parameters_are_fp32_on_a_bf16_backbone(llama_dir, ids):
    model = ouroboros.build(llama_dir, prelude=1, recurrent=2, coda=1, rank=4, dtype="bfloat16", **PAPER)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable)
    assert model.embed.weight.dtype == torch.bfloat16
    randomise_trainable(model)
    model(ids, depth=2, labels=ids).loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in trainable)
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
    # a small update survives (it would round away in a bf16 master weight)
    w = model.gate.proj.bias
    before = w.detach().clone()
    with torch.no_grad():
        w.add_(1e-4)
    assert (w - before).abs().min() > 5e-5
    assert torch.equal(before.bfloat16() + 1e-4, before.bfloat16())  # what bf16 would have done


def test_bf16_autocast_runs_and_stays_close(llama_dir, ids):
    model = ouroboros.build(llama_dir, prelude=1, recurrent=2, coda=1, rank=4, **PAPER)
    randomise_trainable(model)
    ref = model(ids, depth=2, labels=ids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids, depth=2, labels=ids)
    assert out.loss.dtype == torch.float32 and abs(out.loss.item() - ref.loss.item()) < 0.05


def test_tied_embeddings_stay_tied(backbone_dir):
    model = ouroboros.build(backbone_dir, prelude=1, recurrent=2, coda=1, rank=4, **PAPER)
    assert model.lm_head.weight is model.embed.weight


def test_depth_is_a_call_argument(llama_dir, ids):
    model = ouroboros.build(llama_dir, prelude=1, recurrent=2, coda=1, rank=4, max_steps=8, **PAPER)
    randomise_trainable(model)
    a, b = model(ids, depth=2).logits, model(ids, depth=5).logits
    assert not torch.allclose(a, b)
    assert torch.equal(model(ids).logits, model(ids, depth=model.config.depth).logits)
    for bad in (0, 9, -1):
        with pytest.raises(ouroboros.core.errors.ConfigError, match=r"valid 1\.\.8"):
            model(ids, depth=bad)


def test_mean_pooling_is_flagged_and_really_leaks_the_future(llama_dir, ids):
    model = ouroboros.build(llama_dir, prelude=1, recurrent=2, coda=1, rank=4, options={"controller": {
        "pooling": "mean"}}, **PAPER)
    randomise_trainable(model)
    assert model.is_causal is False
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 97
    delta = (model(changed, depth=2).logits - model(ids, depth=2).logits).abs()
    assert delta[:, :-1].max() > 0  # earlier positions saw the last token: the reference code's bug


def _grads(model, **kw):
    model.zero_grad()
    ids = torch.randint(3, 97, (2, 13), generator=torch.Generator().manual_seed(7))
    loss = model(ids, depth=3, labels=ids, **kw).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_chunked_loss_and_step_checkpointing_change_nothing(llama_dir):
    from ouroboros.core import model as model_module

    model = ouroboros.build(llama_dir, prelude=1, recurrent=2, coda=1, rank=4, **PAPER)
    randomise_trainable(model)
    loss, grads = _grads(model)
    chunked_loss, chunked = _grads(model, return_logits=False)
    assert model(torch.zeros(1, 4, dtype=torch.long), labels=torch.zeros(1, 4, dtype=torch.long),
                 return_logits=False).logits is None
    assert torch.allclose(loss, chunked_loss, atol=1e-6)
    assert all(torch.allclose(grads[n], chunked[n], atol=1e-6) for n in grads)
    model.checkpoint_steps = True
    ckpt_loss, ckpt = _grads(model, return_logits=False)
    assert torch.allclose(loss, ckpt_loss, atol=1e-6) and all(torch.allclose(grads[n], ckpt[n], atol=1e-6)
                                                              for n in grads)
    # several chunks: force a chunk size smaller than the 2 x 12 predicted tokens
    ids = torch.randint(3, 97, (2, 13), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        h = torch.randn(2, 13, model.hf_config.hidden_size)
        small = model_module.chunked_lm_loss(h, model.lm_head, ids, chunk=5)
        whole = model_module.causal_lm_loss(model.lm_head(h), ids)
    assert torch.allclose(small, whole, atol=1e-6)
