"""The Ouroboros model: frozen prelude, one looped recurrent layer with trainable per-step parts, frozen coda."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn
from transformers.modeling_outputs import CausalLMOutput

from .backbone import Layout, get_path
from .bases import Bases, BasisReport
from .components import Controller, Gate, Modulation, Normalizer
from .config import OuroborosConfig
from .errors import ConfigError
from .lowrank import LowRankLinear, modulated
from .split import Split

OWNED = ("bases", "controller", "modulation", "gate", "normalizer")


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """Mean next-token cross-entropy. THE one place where labels are shifted: logits[:, i] predicts labels[:, i+1].

    ``labels == input_ids`` (the Hugging Face convention); -100 and padding positions are ignored.
    """
    targets = labels[:, 1:]  # (B, T-1)
    if attention_mask is not None:
        targets = targets.masked_fill(attention_mask[:, 1:] == 0, -100)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=-100)


def chunked_lm_loss(h: torch.Tensor, head: nn.Module, labels: torch.Tensor,
                    attention_mask: torch.Tensor | None = None, chunk: int = 256) -> torch.Tensor:
    """:func:`causal_lm_loss` of ``head(h)`` without ever holding all the logits: ``chunk`` tokens at a time,
    each chunk's logits recomputed in the backward pass (activation checkpointing)."""
    from torch.utils.checkpoint import checkpoint

    targets = labels[:, 1:]  # the same single shift as causal_lm_loss
    if attention_mask is not None:
        targets = targets.masked_fill(attention_mask[:, 1:] == 0, -100)
    hs, ts = h[:, :-1].flatten(0, 1), targets.flatten()  # (N, D), (N,)

    def piece(x, t):
        return F.cross_entropy(head(x).float(), t, ignore_index=-100, reduction="sum")

    total = sum(checkpoint(piece, hs[i:i + chunk], ts[i:i + chunk], use_reentrant=False)
                for i in range(0, hs.shape[0], chunk))
    return total / (ts != -100).sum().clamp(min=1)


class OuroborosModel(nn.Module):
    """Built by :func:`ouroboros.build` or :meth:`from_pretrained`; call with ``depth`` per forward."""

    def __init__(self, config: OuroborosConfig, backbone: nn.Module, layout: Layout, split: Split,
                 components: dict[str, nn.Module], bases: Bases, reports: list[BasisReport], backbone_hash: str):
        super().__init__()
        self.config, self.layout, self.split = config, layout, split
        self.hf_config = backbone.config
        self.num_backbone_layers = len(get_path(backbone, layout.layers))
        self.backbone_hash, self.basis_reports = backbone_hash, reports
        layers = get_path(backbone, layout.layers)
        L = self.num_backbone_layers
        self.embed = get_path(backbone, layout.embed)
        self.prelude = nn.ModuleList(layers[i] for i in range(split.prelude))
        self.recurrent = layers[split.recurrent]
        self.coda = nn.ModuleList(layers[i] for i in range(L - split.coda, L))
        self.norm = get_path(backbone, layout.norm)
        self.rotary = get_path(backbone, layout.rotary)
        self.lm_head = get_path(backbone, layout.head)
        if getattr(self.hf_config, "tie_word_embeddings", False):
            assert self.lm_head.weight is self.embed.weight, "tied embeddings were untied"
        self.checkpoint_steps = False  # recompute each recurrent step in the backward pass (saves memory)
        self.requires_grad_(False)  # the backbone is frozen; owned parts are switched back on below
        self._wrappers = self._wrap_targets()
        self.bases = bases
        self.controller: Controller = components["controller"]
        self.modulation: Modulation = components["modulation"]
        self.gate: Gate = components["gate"]
        self.normalizer: Normalizer = components["normalizer"]
        for kind in ("controller", "modulation", "gate", "normalizer"):
            getattr(self, kind).float().requires_grad_(True)  # fp32 master weights, whatever the backbone dtype
        self.bases.float().requires_grad_(False)
        layer_types = getattr(self.hf_config, "layer_types", None) or ["full_attention"] * L
        self._types = {"prelude": [layer_types[i] for i in range(split.prelude)],
                       "recurrent": layer_types[split.recurrent],
                       "coda": [layer_types[i] for i in range(L - split.coda, L)]}

    def _wrap_targets(self) -> dict[str, LowRankLinear]:
        wrappers = {}
        for name, path in self.layout.targets.items():
            if name not in self.config.targets:
                continue
            parent_path, _, attr = path.rpartition(".")
            parent = get_path(self.recurrent, parent_path)
            wrapper = getattr(parent, attr)
            if not isinstance(wrapper, LowRankLinear):
                wrapper = LowRankLinear(wrapper)
                setattr(parent, attr, wrapper)
            wrappers[name] = wrapper
        return wrappers

    # ---------------------------------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, depth: int | None = None, plain: bool = False,
                return_logits: bool = True) -> CausalLMOutput:
        """Logits (B, T, V) and, with ``labels``, the loss. ``plain=True`` loops the bare recurrent layer (no
        controller, low-rank path, norm or gate): at depth 1 this is the plain pruned backbone.
        ``return_logits=False`` (with labels) computes the loss in chunks and never holds the full logits."""
        depth = self.config.depth if depth is None else depth
        self.check_depth(depth)
        B, T = input_ids.shape
        h = self.embed(input_ids)  # (B, T, D)
        pos = torch.arange(T, device=h.device).unsqueeze(0)  # (1, T)
        masks = self._attention_masks(h, attention_mask, pos)
        kw = {"position_embeddings": self.rotary(h, pos), "position_ids": pos}
        for layer, kind in zip(self.prelude, self._types["prelude"]):
            h = _call(layer, h, masks[kind], kw)
        valid = attention_mask.bool() if attention_mask is not None else None
        for t in range(depth):
            args = (h, t, masks[self._types["recurrent"]], kw, valid, plain)
            if self.checkpoint_steps and torch.is_grad_enabled():
                h = torch.utils.checkpoint.checkpoint(self.step, *args, use_reentrant=False)
            else:
                h = self.step(*args)
        for layer, kind in zip(self.coda, self._types["coda"]):
            h = _call(layer, h, masks[kind], kw)
        h = self.norm(h)
        if not return_logits and labels is not None:
            return CausalLMOutput(loss=chunked_lm_loss(h, self.lm_head, labels, attention_mask), logits=None)
        logits = self.lm_head(h)  # (B, T, V)
        loss = causal_lm_loss(logits, labels, attention_mask) if labels is not None else None
        return CausalLMOutput(loss=loss, logits=logits)

    def step(self, h, t, mask, kw, valid=None, plain=False):
        """One recurrent step t: controller -> modulation -> modulated layer -> per-step norm -> gate."""
        if plain:
            return _call(self.recurrent, h, mask, kw)
        h32 = h.float()  # components compute in fp32 (their master dtype) whatever the backbone dtype
        c = self.controller(h32, t, valid)  # (B, T, S) or None
        ds = self.modulation(c, t)  # {target: (B, T, r) or (r,)}
        paths = {k: (*self.bases.pair(k), d, self.config.scale) for k, d in ds.items()}
        with modulated(self._wrappers, paths):
            h_new = _call(self.recurrent, h, mask, kw)
        h_new = self.normalizer(h_new.float(), t)
        return self.gate(h_new, h32, t).to(h.dtype)

    def _attention_masks(self, h, attention_mask, pos) -> dict[str, torch.Tensor]:
        """Explicit causal (+ padding) masks built with the backbone's own utilities, one per layer type."""
        from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

        kw = dict(config=self.hf_config, inputs_embeds=h, attention_mask=attention_mask, cache=None,
                  position_ids=pos, allow_is_causal_skip=False)
        masks = {"full_attention": create_causal_mask(**kw)}
        if "sliding_attention" in (getattr(self.hf_config, "layer_types", None) or ()):
            masks["sliding_attention"] = create_sliding_window_causal_mask(**kw)
        return masks

    def check_depth(self, depth: int) -> None:
        if not isinstance(depth, int) or not 1 <= depth <= self.config.max_steps:
            raise ConfigError(f"depth {depth!r} is out of range: valid 1..{self.config.max_steps} "
                              f"(the model has {self.config.max_steps} step slots)")

    # ---------------------------------------------------------------------------------------------------------
    @property
    def is_causal(self) -> bool:
        return bool(getattr(self.controller, "causal", True))

    def owned_modules(self) -> dict[str, nn.Module]:
        return {name: getattr(self, name) for name in OWNED}

    def owned_state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint holds: bases and every trainable component, nothing of the frozen backbone."""
        return {f"{name}.{key}": value for name, module in self.owned_modules().items()
                for key, value in module.state_dict().items()}

    def parameter_counts(self) -> dict[str, dict[str, int]]:
        """Per part: trainable and frozen parameter (and buffer) counts."""
        counts = {name: {"trainable": sum(p.numel() for p in m.parameters() if p.requires_grad),
                         "frozen": sum(p.numel() for p in m.parameters() if not p.requires_grad)
                         + sum(b.numel() for b in m.buffers())}
                  for name, m in self.owned_modules().items()}
        seen = {id(p) for m in self.owned_modules().values() for p in m.parameters()}
        counts["backbone"] = {"trainable": 0, "frozen": sum(p.numel() for p in self.parameters()
                                                            if id(p) not in seen)}
        return counts

    def num_trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def save_pretrained(self, path: str | Path) -> Path:
        from .checkpoint import save_checkpoint

        return save_checkpoint(self, Path(path))

    @classmethod
    def from_pretrained(cls, path: str | Path, registry=None) -> "OuroborosModel":
        from .checkpoint import load_checkpoint

        return load_checkpoint(Path(path), registry=registry)


def _call(layer: nn.Module, h: torch.Tensor, mask, kw) -> torch.Tensor:
    """Call a decoder layer exactly as the backbone's own forward does (no cache)."""
    out = layer(h, attention_mask=mask, **kw)
    return out[0] if isinstance(out, tuple) else out

