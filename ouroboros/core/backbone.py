"""Backbones: where they come from (embedded name, local folder, Hub id), their layout, and their content hash.

A layout adapter names where a decoder keeps its embeddings, layers, final norm, rotary embedding and head, and
which linear maps of a layer are modulation targets. The Llama layout covers Llama, Qwen2/2.5/3, Mistral, SmolLM.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from .assets import EMBEDDED_BACKBONES, embedded_backbone_dir
from .errors import BackboneError


@dataclass(frozen=True)
class Layout:
    """Where a decoder-only causal LM keeps its parts (attribute paths from the ``*ForCausalLM`` object)."""

    name: str
    embed: str
    layers: str
    norm: str
    rotary: str
    head: str
    targets: Mapping[str, str]  # target name -> attribute path inside one layer

    def missing(self, model: nn.Module) -> list[str]:
        """Attribute paths this layout needs that ``model`` lacks (empty when the layout fits)."""
        paths = [self.embed, self.layers, self.norm, self.rotary, self.head]
        missing = [p for p in paths if get_path(model, p) is None]
        layers = get_path(model, self.layers)
        if layers is not None and len(layers) > 0:
            missing += [f"{self.layers}[0].{p}" for p in self.targets.values() if get_path(layers[0], p) is None]
        return missing

    def target_modules(self, layer: nn.Module) -> dict[str, nn.Linear]:
        return {name: get_path(layer, path) for name, path in self.targets.items()}


LLAMA = Layout(
    name="llama",
    embed="model.embed_tokens",
    layers="model.layers",
    norm="model.norm",
    rotary="model.rotary_emb",
    head="lm_head",
    targets={
        "q": "self_attn.q_proj",
        "k": "self_attn.k_proj",
        "v": "self_attn.v_proj",
        "o": "self_attn.o_proj",
        "gate": "mlp.gate_proj",
        "up": "mlp.up_proj",
        "down": "mlp.down_proj",
    },
)
LAYOUTS = {"llama": LLAMA}


def get_path(obj: nn.Module, path: str):
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def detect_layout(model: nn.Module) -> Layout:
    for layout in LAYOUTS.values():
        if not layout.missing(model):
            return layout
    model_type = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
    gaps = "; ".join(f"{name}: missing {', '.join(layout.missing(model))}" for name, layout in LAYOUTS.items())
    raise BackboneError(
        f"backbone of type {model_type!r} does not have the modules of a supported layout ({gaps}). "
        f"Supported: llama (Llama, Qwen2/2.5/3, Mistral, SmolLM); other layouts need a backbone adapter"
    )


def resolve_source(source: str) -> str:
    """An embedded name becomes its cached folder; a local folder stays; anything else is taken as a Hub id."""
    if source in EMBEDDED_BACKBONES:
        return str(embedded_backbone_dir(source))
    return source


def load_config(source: str):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(resolve_source(source))
    except (OSError, ValueError) as err:
        raise BackboneError(_not_found(source, err)) from None


def load_backbone(source: str, dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa"):
    """Load a causal LM (weights on CPU, eval mode, every parameter frozen)."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            resolve_source(source), dtype=dtype, attn_implementation=attn_implementation
        )
    except (OSError, ValueError) as err:
        raise BackboneError(_not_found(source, err)) from None
    model.eval().requires_grad_(False)
    return model


def load_tokenizer(source: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_source(source))


def _not_found(source: str, err: Exception) -> str:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    local = "exists but could not be loaded" if Path(source).exists() else "is not an existing folder"
    return (f"cannot load backbone {source!r}: it is not an embedded name ({', '.join(EMBEDDED_BACKBONES)}), "
            f"{local}, and could not be read as a Hugging Face Hub id ({first})")


def state_hash(model: nn.Module) -> str:
    """SHA-256 over every tensor of the state dict (name, dtype, shape and bytes), in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
