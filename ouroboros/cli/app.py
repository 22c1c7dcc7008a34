"""Root of the ``ouro`` CLI: composes one module per command, then lets plugins add theirs."""

from __future__ import annotations

import typer

from . import ablate, build, evaluate, listing, plugins, train


def make_app() -> typer.Typer:
    app = typer.Typer(
        name="ouro",
        help="Input-conditioned recursive transformers from pretrained Hugging Face decoders.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for module in (build, train, evaluate, ablate, plugins, listing):
        module.register(app)
    from ouroboros.core.registry import get_plugin_manager

    get_plugin_manager().hook.ouroboros_register_commands(app=app)
    return app
