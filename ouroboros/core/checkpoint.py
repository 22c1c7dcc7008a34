"""Checkpoint folders: ``ouroboros.json`` (the recipe) + ``model.safetensors`` (only what ouroboros owns).

Writes are atomic: the new folder is written beside the old one and swapped in with renames, so a crash mid-save
leaves the previous checkpoint readable (at its path, or at ``.<name>.previous`` during the swap itself).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from .components import KINDS, config_to_dict
from .config import OuroborosConfig
from .errors import CheckpointError, ConfigError
from .registry import Registry, default_registry

CONFIG_FILE = "ouroboros.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


def distribution_of(cls: type) -> tuple[str, str]:
    """(distribution name, version) that provides ``cls``, from its top-level module."""
    top = cls.__module__.split(".")[0]
    dists = importlib.metadata.packages_distributions().get(top, [top])
    try:
        return dists[0], importlib.metadata.version(dists[0])
    except importlib.metadata.PackageNotFoundError:
        return top, "unknown"


def checkpoint_meta(model) -> dict[str, Any]:
    import transformers

    components = {}
    for kind in KINDS:
        module = getattr(model, kind)
        dist, version = distribution_of(type(module))
        components[kind] = {"name": module.name, "config": config_to_dict(module.config),
                            "distribution": dist, "version": version}
    return {
        "format": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "backbone_hash": model.backbone_hash,
        "components": components,
        "bases": [r.__dict__ for r in model.basis_reports],
        "versions": {"ouroboros": _version("ouroboros"), "torch": torch.__version__,
                     "transformers": transformers.__version__},
    }


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def atomic_dir(target: Path, write: Callable[[Path], None], keep_others: bool = True) -> Path:
    """Write a folder atomically: ``write(tmp)`` fills a temporary sibling which then replaces ``target``.

    Entries of an existing ``target`` that ``write`` did not produce (metrics, training state) are carried over
    as hard links, so replacing the checkpoint never loses them.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    previous = target.parent / f".{target.name}.previous"
    try:
        write(tmp)
        if keep_others and target.is_dir():
            for entry in target.iterdir():
                dest = tmp / entry.name
                if dest.exists():
                    continue
                if entry.is_dir():
                    shutil.copytree(entry, dest, copy_function=os.link)
                else:
                    os.link(entry, dest)
        _fsync_tree(tmp)
        if target.exists():
            shutil.rmtree(previous, ignore_errors=True)
            os.rename(target, previous)
        os.rename(tmp, target)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def save_checkpoint(model, path: Path, extra: Callable[[Path], None] | None = None) -> Path:
    """Write the checkpoint atomically; ``extra(folder)`` adds files (training state) in the same atomic write."""
    from safetensors.torch import save_file

    meta = checkpoint_meta(model)
    state = {k: v.detach().contiguous().cpu() for k, v in model.owned_state_dict().items()}

    def write(tmp: Path) -> None:
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        if extra is not None:
            extra(tmp)

    return atomic_dir(path, write)


def resolve_checkpoint(path: Path) -> Path:
    """The folder to read: ``path``, or the previous version left by a save that crashed mid-swap."""
    path = Path(path)
    previous = path.parent / f".{path.name}.previous"
    if not path.exists() and previous.is_dir():
        return previous
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint folder at {str(path)!r}")
    return path


def read_meta(path: Path) -> dict[str, Any]:
    path = resolve_checkpoint(path)
    file = path / CONFIG_FILE
    if not file.exists():
        raise CheckpointError(f"{str(path)!r} is not an ouroboros checkpoint: it has no {CONFIG_FILE} "
                              f"(expected {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        meta = json.loads(file.read_text())
        meta["config"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{file} is corrupt ({err}); restore it or rebuild the checkpoint") from None
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{file} has format {meta.get('format')!r}; this ouroboros reads {FORMAT_VERSION}")
    return meta


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    file = resolve_checkpoint(path) / WEIGHTS_FILE
    if not file.exists():
        raise CheckpointError(f"{str(resolve_checkpoint(path))!r} has no {WEIGHTS_FILE}: the checkpoint is incomplete")
    try:
        return load_file(str(file))
    except Exception as err:  # safetensors raises its own error types for truncated or garbled files
        raise CheckpointError(f"{file} is corrupt and cannot be read ({err})") from None


def check_components(meta: dict[str, Any], registry: Registry) -> None:
    for kind in KINDS:
        info = meta.get("components", {}).get(kind, {})
        name = meta["config"].get(kind, info.get("name"))
        if name not in registry.names(kind):
            hint = ""
            if info.get("distribution") and info["distribution"] != "ouroboros":
                hint = (f"; it was provided by the plugin distribution {info['distribution']!r} "
                        f"(version {info.get('version')}): pip install {info['distribution']}")
            raise CheckpointError(f"the checkpoint uses {kind} {name!r}, which is not registered here "
                                  f"(registered: {', '.join(registry.names(kind))}){hint}")


def load_checkpoint(path: Path, registry: Registry | None = None, fresh_components: bool = False,
                    **overrides: Any):
    """Rebuild a saved model. ``fresh_components=True`` keeps the saved bases but re-initialises the trainable
    components from the recipe's seed (the state right after ``ouro build``)."""
    from .builder import build_from_config

    registry = registry or default_registry()
    meta = read_meta(path)
    check_components(meta, registry)
    state = read_weights(path)
    try:
        cfg = OuroborosConfig.from_dict({**meta["config"], **overrides})
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"{resolve_checkpoint(path) / CONFIG_FILE} holds an invalid config: {err}") from None
    if fresh_components:
        state = {k: v for k, v in state.items() if k.startswith("bases.")}
    model = build_from_config(cfg, registry, state=state, expected_hash=meta.get("backbone_hash"),
                              parts=("bases",) if fresh_components else None)
    from .bases import BasisReport

    model.basis_reports = [BasisReport(**{**r, "shape": tuple(r["shape"])}) for r in meta.get("bases", [])]
    return model
