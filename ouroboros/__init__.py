"""ouroboros: input-conditioned recursive transformers from pretrained Hugging Face decoders.

``import ouroboros`` is cheap; torch and transformers load on first use of :func:`build` or
:class:`OuroborosModel`.
"""

from ouroboros.core.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["build", "OuroborosModel", "OuroborosConfig", "hookimpl", "__version__"]


def __getattr__(name):
    if name == "build":
        from ouroboros.core.builder import build

        return build
    if name == "OuroborosModel":
        from ouroboros.core.model import OuroborosModel

        return OuroborosModel
    if name == "OuroborosConfig":
        from ouroboros.core.config import OuroborosConfig

        return OuroborosConfig
    raise AttributeError(f"module 'ouroboros' has no attribute {name!r}")
