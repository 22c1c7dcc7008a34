"""Conformance checks every component must pass: built-ins, and third-party plugins through their own tests.

Usage in a plugin's test suite::

    from ouroboros.testing import CHECKS, compositions, tiny_backbone

    @pytest.mark.parametrize("check", CHECKS)
    def test_my_gate(check, tmp_path):
        check(tiny_backbone(tmp_path / "bb"), {"gate": "mygate"})
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ouroboros.core.builder import build
from ouroboros.core.registry import Registry, default_registry

Composition = dict[str, str]


def tiny_backbone(path: Path, family: str = "llama", layers: int = 5, width: int = 32, seed: int = 0) -> str:
    """Write a tiny random decoder (Llama or Qwen2 layout, 97-token vocab) to ``path``; return the folder."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    path = Path(path)
    if (path / "config.json").exists():
        return str(path)
    cls_cfg, cls_model = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[family]
    cfg = cls_cfg(vocab_size=97, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(seed)
    model = cls_model(cfg)
    with torch.no_grad():  # Qwen2 starts with zero q/k/v biases: give them values so they matter in the tests
        for name, p in model.named_parameters():
            if name.endswith("_proj.bias"):
                p.normal_(0, 0.1)
    model.save_pretrained(path)
    char_tokenizer().save_pretrained(path)
    return str(path)


CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 \n.,;:!?'\"-()"


def char_tokenizer():
    """A character-level tokenizer for the tiny backbones: <pad>=0, <unk>=1, <eos>=2, then 79 characters."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "<eos>": 2, **{c: i + 3 for i, c in enumerate(CHARS)}}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>")


def compositions(kind: str, registry: Registry | None = None) -> list[Composition]:
    """One valid composition per registered component of ``kind``, with compatible partners."""
    registry = registry or default_registry()
    out = []
    for name in registry.names(kind):
        comp = {"controller": "mlp", "modulation": "diagonal", "gate": "sigmoid", "normalizer": "rmsnorm",
                kind: name}
        if kind == "controller":
            ctl = registry.get("controller", name)
            comp["modulation"] = "diagonal" if _produces(ctl) else "static"
        if kind == "modulation" and not registry.get("modulation", name).uses_conditioning:
            comp["controller"] = "none"
        out.append(comp)
    return out


def _produces(controller_cls) -> bool:
    from ouroboros.core.components import BuildContext, make_config

    ctx = BuildContext(d_model=8, targets=("q",), target_shapes={"q": (8, 8)}, rank=2, max_steps=4)
    return controller_cls(make_config(controller_cls), ctx).output_dim > 0


def randomise_trainable(model, scale: float = 0.02, seed: int = 0) -> None:
    """Move every trainable parameter off its (often zero) initialisation so each part really acts."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * scale)


def make(backbone: str, composition: Composition, **kw):
    return build(backbone, prelude=1, recurrent=2, coda=1, rank=4, max_steps=8, **composition, **kw)


def check_output(backbone: str, composition: Composition) -> None:
    """Builds from default Configs; logits have the right shape and dtype; trainable parts are fp32."""
    model = make(backbone, composition)
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(0))
    for depth in (1, 3):
        logits = model(ids, depth=depth).logits
        assert logits.shape == (2, 9, 97) and logits.dtype == torch.float32, (logits.shape, logits.dtype)
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)


def check_gradients(backbone: str, composition: Composition) -> None:
    """Every trainable parameter gets a finite, non-zero gradient; no frozen parameter gets one."""
    model = make(backbone, composition)
    randomise_trainable(model)
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(1))
    model(ids, depth=3, labels=ids).loss.backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, f"{name} receives a zero gradient"
        else:
            assert p.grad is None, f"frozen {name} received a gradient"


def check_causal(backbone: str, composition: Composition) -> None:
    """Changing token j changes no logit at positions < j, at depths 1-4, with randomised parameters."""
    model = make(backbone, composition)
    randomise_trainable(model)
    ids = torch.randint(3, 97, (1, 12), generator=torch.Generator().manual_seed(2))
    for depth in (1, 2, 4):
        base = model(ids, depth=depth).logits
        for j in (3, 7, 11):
            changed = ids.clone()
            changed[0, j] = (changed[0, j] + 1) % 97
            delta = (model(changed, depth=depth).logits - base).abs()
            assert delta[:, :j].max() == 0, f"depth {depth}: token {j} changed earlier logits"
            assert delta[:, j:].max() > 0, f"depth {depth}: token {j} changed nothing at all"


def check_roundtrip(backbone: str, composition: Composition, tmp: Path) -> None:
    """save_pretrained then from_pretrained reproduces the logits bit for bit."""
    from ouroboros.core.model import OuroborosModel

    model = make(backbone, composition)
    randomise_trainable(model)
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(3))
    model.save_pretrained(tmp)
    loaded = OuroborosModel.from_pretrained(tmp)
    assert torch.equal(model(ids, depth=3).logits, loaded(ids, depth=3).logits)


def check_stable(backbone: str, composition: Composition) -> None:
    """Finite loss after 30 AdamW steps at a brisk learning rate (3e-3), at the deepest depth."""
    model = make(backbone, composition)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(4))
    for _ in range(30):
        loss = model(ids, depth=model.config.max_steps, labels=ids).loss
        assert torch.isfinite(loss), loss
        opt.zero_grad()
        loss.backward()
        opt.step()


CHECKS: list[Callable] = [check_output, check_gradients, check_causal, check_roundtrip, check_stable]
