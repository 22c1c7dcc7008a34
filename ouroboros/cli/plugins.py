"""``ouro plugins``: the plugin distributions in use, their versions and the hooks they implement."""

from __future__ import annotations

import typer
from rich.table import Table

from .common import console


def register(app: typer.Typer) -> None:
    app.command("plugins")(plugins)


def plugins() -> None:
    """List the plugins (built-in and installed through the `ouroboros` entry-point group)."""
    from ouroboros.core.registry import get_plugin_manager, plugin_origins

    pm = get_plugin_manager()
    origins = plugin_origins(pm)
    table = Table(title="ouroboros plugins")
    for col in ("plugin", "distribution", "hooks"):
        table.add_column(col)
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda kv: kv[0]):
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        table.add_row(name, origins.get(id(plugin), _builtin_version()), ", ".join(hooks))
    console.print(table)


def _builtin_version() -> str:
    from ouroboros import __version__

    return f"ouroboros {__version__} (built-in)"
