"""``ouro list [kind] [--options]``: registered components and their options."""

from __future__ import annotations

import dataclasses
import typing
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from .common import console, handle_errors

PLURAL = {"controllers": "controller", "modulations": "modulation", "gates": "gate", "normalizers": "normalizer"}


def register(app: typer.Typer) -> None:
    app.command("list")(list_components)


@handle_errors
def list_components(
    kind: Annotated[Optional[str], typer.Argument(help="controllers, modulations, gates or normalizers")] = None,
    options: Annotated[bool, typer.Option("--options", help="show each component's options")] = False,
) -> None:
    """List the registered components, optionally with their options (type, default, help)."""
    from ouroboros.core.errors import ConfigError
    from ouroboros.core.registry import default_registry

    registry = default_registry()
    if kind is None:
        kinds = list(PLURAL.values())
    else:
        singular = PLURAL.get(kind, kind if kind in PLURAL.values() else None)
        if singular is None:
            raise ConfigError(f"unknown kind {kind!r}; valid kinds: {', '.join(PLURAL)}")
        kinds = [singular]
    table = Table(title="components")
    for col in ("kind", "name", "origin", "description") + (("options",) if options else ()):
        table.add_column(col)
    for k in kinds:
        for name in registry.names(k):
            cls = registry.get(k, name)
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
            row = [k, name, registry.origin(k, name), escape(doc)]
            if options:
                row.append(escape(describe_options(cls.Config)) or "-")
            table.add_row(*row)
    console.print(table)


def describe_options(config_cls: type) -> str:
    hints = typing.get_type_hints(config_cls)
    lines = []
    for f in dataclasses.fields(config_cls):
        kind = hints[f.name]
        type_name = (" | ".join(map(str, typing.get_args(kind))) if typing.get_origin(kind) is typing.Literal
                     else getattr(kind, "__name__", str(kind)))
        lines.append(f"{f.name}: {type_name} = {f.default!r} - {f.metadata.get('help', '')}")
    return "\n".join(lines)
