"""Registers the built-in components through the same hooks a third-party package uses.

Component modules are imported inside the hooks, so making a plugin manager (e.g. for ``ouro --help``) stays cheap.
"""

from ouroboros.core.hookspecs import hookimpl


@hookimpl
def ouroboros_register_controllers(register):
    from .controllers import MLPController, NoController

    register(MLPController)
    register(NoController)


@hookimpl
def ouroboros_register_modulations(register):
    from .modulations import DiagonalModulation, NoModulation, StaticModulation

    register(DiagonalModulation)
    register(StaticModulation)
    register(NoModulation)


@hookimpl
def ouroboros_register_gates(register):
    from .gates import NoGate, SigmoidGate

    register(SigmoidGate)
    register(NoGate)


@hookimpl
def ouroboros_register_normalizers(register):
    from .normalizers import LayerNormalizer, NoNormalizer, RMSNormalizer

    register(RMSNormalizer)
    register(LayerNormalizer)
    register(NoNormalizer)
