"""Reference models in the same harness: the full backbone and the plain pruned backbone (Hugging Face's own
forward over the kept layers), and the parity check of invariant 1."""

from __future__ import annotations

import copy

import torch

from .backbone import get_path, load_backbone
from .split import Split


def prune_backbone(hf_model, layout, split: Split):
    """Cut a loaded Hugging Face causal LM down to layers ``[0,P) + [R] + [L-C,L)`` in place, and return it."""
    layers = get_path(hf_model, layout.layers)
    kept = split.kept(len(layers))
    config = copy.deepcopy(hf_model.config)
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[i] for i in kept]
    config.num_hidden_layers = len(kept)
    parent_path, _, attr = layout.layers.rpartition(".")
    setattr(get_path(hf_model, parent_path), attr, torch.nn.ModuleList(layers[i] for i in kept))
    hf_model.config = config
    get_path(hf_model, parent_path).config = config
    return hf_model


@torch.no_grad()
def parity_error(model, input_ids: torch.Tensor | None = None, seed: int = 0) -> float:
    """max |logit difference| between the model's identity configuration (depth 1, bare recurrent layer) and an
    independently loaded pruned backbone run by Hugging Face's own forward."""
    if input_ids is None:
        g = torch.Generator().manual_seed(seed)
        input_ids = torch.randint(0, model.hf_config.vocab_size, (2, 16), generator=g)
    device = next(model.parameters()).device
    input_ids = input_ids.to(device)
    pruned = prune_backbone(load_backbone(model.config.backbone, dtype=model.embed.weight.dtype),
                            model.layout, model.split).to(device)
    ours = model(input_ids, depth=1, plain=True).logits.float()
    theirs = pruned(input_ids, use_cache=False).logits.float()
    return float((ours - theirs).abs().max())
