"""The ouroboros plugin contract: hook specifications and nothing else.

A plugin is a module or object with functions marked ``@ouroboros.hookimpl``, found through the entry-point group
``ouroboros`` (or registered by hand). Built-in components register through exactly these hooks.

Example plugin package (``pyproject.toml``: ``[project.entry-points.ouroboros] mygate = "my_gate"``)::

    import torch
    from dataclasses import dataclass
    from ouroboros import hookimpl
    from ouroboros.core.components import Gate

    class HalfGate(Gate):
        name = "half"

        @dataclass(frozen=True)
        class Config:
            pass

        def forward(self, h_new, h_old, step):
            return 0.5 * (h_new + h_old)

    @hookimpl
    def ouroboros_register_gates(register):
        register(HalfGate)

Hooks are called with keyword arguments only; a hookimpl must not declare defaulted arguments.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

PROJECT = "ouroboros"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[type], None]


@hookspec
def ouroboros_register_controllers(register: Register) -> None:
    """Register controller classes: ``register(MyController)``.

    A controller is a :class:`ouroboros.core.components.Controller`: ``(h, step, mask) -> c``, where row ``i`` of
    ``c`` may read ``h[:, :i+1]`` only (set ``causal = False`` on the instance otherwise).
    """


@hookspec
def ouroboros_register_modulations(register: Register) -> None:
    """Register modulation classes: ``register(MyModulation)``.

    A modulation is a :class:`ouroboros.core.components.Modulation`: ``(c, step) -> {target: d}``, the per-step
    diagonal over the frozen bases, each ``d`` of shape ``(B, T, r)`` or broadcastable to it.
    """


@hookspec
def ouroboros_register_gates(register: Register) -> None:
    """Register gate classes: ``register(MyGate)``.

    A gate is a :class:`ouroboros.core.components.Gate`: ``(h_new, h_old, step) -> h``.
    """


@hookspec
def ouroboros_register_normalizers(register: Register) -> None:
    """Register normalizer classes: ``register(MyNormalizer)``.

    A normalizer is a :class:`ouroboros.core.components.Normalizer`: ``(h, step) -> h`` with per-step parameters.
    """


@hookspec
def ouroboros_register_commands(app: Any) -> None:
    """Add commands to the ``ouro`` CLI: ``app`` is the root ``typer.Typer``.

    Example::

        @hookimpl
        def ouroboros_register_commands(app):
            @app.command()
            def hello():
                print("hello from my plugin")
    """
