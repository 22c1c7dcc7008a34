"""Turn a backbone and a component choice into an :class:`OuroborosModel`.

Everything that can be checked without weights (component names and options, composition, split, layout, rank) is
checked first, on the config and a meta-device skeleton; only then are the weights read.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from .backbone import Layout, detect_layout, get_path, load_backbone, load_config, state_hash
from .bases import Bases, check_rank, compute_bases
from .components import KINDS, BuildContext, make_config
from .config import OuroborosConfig
from .errors import BackboneError, ConfigError
from .model import OuroborosModel
from .registry import Registry, default_registry
from .split import Split

DTYPE = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_components(cfg: OuroborosConfig, registry: Registry) -> dict[str, tuple[type, Any]]:
    """kind -> (class, validated Config instance); unknown names and options fail here."""
    out = {}
    for kind in KINDS:
        name, options = cfg.component(kind)
        cls = registry.get(kind, name)
        out[kind] = (cls, make_config(cls, options))
    return out


def context_from_skeleton(cfg: OuroborosConfig, skeleton: torch.nn.Module, layout: Layout, split: Split
                          ) -> BuildContext:
    layer = get_path(skeleton, layout.layers)[split.recurrent]
    modules = layout.target_modules(layer)
    unknown = [t for t in cfg.targets if t not in modules]
    if unknown:
        raise ConfigError(f"unknown target(s) {unknown}; the {layout.name} layout has: {', '.join(modules)}")
    shapes = {t: tuple(modules[t].weight.shape) for t in cfg.targets}
    check_rank(cfg.rank, shapes)
    hf = skeleton.config
    eps = getattr(hf, "rms_norm_eps", None) or getattr(hf, "layer_norm_eps", None) or 1e-6
    return BuildContext(d_model=hf.hidden_size, targets=tuple(cfg.targets), target_shapes=shapes, rank=cfg.rank,
                        max_steps=cfg.max_steps, norm_eps=float(eps))


def build_components(cfg: OuroborosConfig, ctx: BuildContext, resolved: dict[str, tuple[type, Any]]
                     ) -> dict[str, torch.nn.Module]:
    """Construct the four components (fp32, seeded) and refuse incompatible compositions."""
    with torch.random.fork_rng(devices=[]), torch.device("cpu"):  # seeded, without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        ctl_cls, ctl_cfg = resolved["controller"]
        controller = ctl_cls(ctl_cfg, ctx)
        mod_cls, mod_cfg = resolved["modulation"]
        produces, consumes = controller.output_dim > 0, mod_cls.uses_conditioning
        if consumes and not produces:
            raise ConfigError(
                f"modulation '{mod_cls.name}' reads the controller's output, but controller '{ctl_cls.name}' "
                f"produces none; use a conditioning controller (e.g. --controller mlp) or a modulation that "
                f"needs no input (static, none)")
        if produces and not consumes:
            raise ConfigError(
                f"controller '{ctl_cls.name}' would be trained for nothing: modulation '{mod_cls.name}' ignores "
                f"its output; use --controller none with it, or a conditioned modulation (e.g. diagonal)")
        mod_ctx = dataclasses.replace(ctx, cond_dim=controller.output_dim)
        components = {"controller": controller, "modulation": mod_cls(mod_cfg, mod_ctx)}
        for kind in ("gate", "normalizer"):
            cls, kcfg = resolved[kind]
            components[kind] = cls(kcfg, ctx)
    return components


def skeleton_of(hf_config) -> torch.nn.Module:
    """A weightless (meta-device) instance of the backbone, to check its layout and shapes."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(hf_config)


def plan(cfg: OuroborosConfig, registry: Registry | None = None):
    """Check everything that needs no weights; returns (cfg with the split filled in, split, layout, ctx, parts)."""
    registry = registry or default_registry()
    resolved = resolve_components(cfg, registry)
    hf_config = load_config(cfg.backbone)
    L = hf_config.num_hidden_layers
    if cfg.prelude is None and cfg.recurrent is None and cfg.coda is None:
        default = Split.default(L)
        cfg = OuroborosConfig.from_dict({**cfg.to_dict(), "prelude": default.prelude,
                                         "recurrent": default.recurrent, "coda": default.coda})
    elif None in (cfg.prelude, cfg.recurrent, cfg.coda):
        raise ConfigError("give all of --prelude, --recurrent and --coda, or none of them for the default split "
                          f"({Split.default(L).describe(L)} for this {L}-layer backbone)")
    split = Split(cfg.prelude, cfg.recurrent, cfg.coda)
    split.validate(L)
    skeleton = skeleton_of(hf_config)
    layout = detect_layout(skeleton)
    ctx = context_from_skeleton(cfg, skeleton, layout, split)
    components = build_components(cfg, ctx, resolved)
    return cfg, split, layout, ctx, components


def build(backbone: str = "smollm2-135m", *, registry: Registry | None = None, **options: Any) -> OuroborosModel:
    """Build an Ouroboros model: ``build("smollm2-135m", prelude=7, recurrent=15, coda=7, rank=32)``.

    ``options`` are the fields of :class:`OuroborosConfig` (controller, modulation, gate, normalizer, options,
    rank, alpha, targets, max_steps, depth, dtype, seed).
    """
    return build_from_config(OuroborosConfig(backbone=backbone, **options), registry=registry)


def build_from_config(cfg: OuroborosConfig, registry: Registry | None = None,
                      state: dict[str, torch.Tensor] | None = None, expected_hash: str | None = None,
                      parts: tuple[str, ...] | None = None) -> OuroborosModel:
    """Build from a recipe. With ``state`` (a checkpoint's tensors) the bases and components are loaded from it
    instead of recomputed, and the backbone must match ``expected_hash``."""
    cfg, split, layout, ctx, components = plan(cfg, registry)
    hf = load_backbone(cfg.backbone, dtype=DTYPE[cfg.dtype])
    digest = state_hash(hf)
    if expected_hash is not None and digest != expected_hash:
        raise BackboneError(f"backbone {cfg.backbone!r} has content hash {digest[:16]}..., but the checkpoint was "
                            f"built on {expected_hash[:16]}...: its weights changed; rebuild on this backbone")
    layers = get_path(hf, layout.layers)
    if state is None:
        def targets(i):
            return {t: m for t, m in layout.target_modules(layers[i]).items() if t in cfg.targets}

        bases, reports = compute_bases(targets(split.recurrent), [targets(j) for j in split.removed(len(layers))],
                                       cfg.rank)
    else:
        bases, reports = Bases(dict(ctx.target_shapes), cfg.rank), []
    model = OuroborosModel(cfg, hf, layout, split, components, bases, reports, digest)
    if state is not None:
        load_owned(model, state, parts)
    return model


def load_owned(model: OuroborosModel, state: dict[str, torch.Tensor], parts: tuple[str, ...] | None = None
               ) -> None:
    """Load a checkpoint's tensors into the owned modules (all, or ``parts``); a missing or unexpected key is an
    error."""
    from .errors import CheckpointError

    for name, module in model.owned_modules().items():
        if parts is not None and name not in parts:
            continue
        part = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")}
        try:
            module.load_state_dict(part, strict=True)
        except RuntimeError as err:
            raise CheckpointError(f"checkpoint weights do not fit {name}: {str(err).splitlines()[0]} "
                                  f"{str(err).splitlines()[1:2]}") from None
    owned = {f"{n}." for n in model.owned_modules()}
    extra = sorted(k for k in state if not any(k.startswith(p) for p in owned))
    if extra:
        raise CheckpointError(f"checkpoint holds tensors no part of this model owns: {extra[:5]}")
