"""Plugin manager factory and the immutable component registry built from it.

Downstream code (build, train, ablate, list) reads a :class:`Registry`, never the plugin manager. Entry-point
plugins (group ``ouroboros``) load unless ``OUROBOROS_DISABLE_PLUGIN_AUTOLOAD`` is set; ``OUROBOROS_PLUGINS``
(comma-separated distribution or entry-point names) loads only those.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

import pluggy

from . import hookspecs
from .kinds import KINDS, NAME_RE
from .errors import ConfigError

ENTRY_POINT_GROUP = "ouroboros"
BUILTIN_ORIGIN = "ouroboros (built-in)"
HOOKS = {
    "controller": "ouroboros_register_controllers",
    "modulation": "ouroboros_register_modulations",
    "gate": "ouroboros_register_gates",
    "normalizer": "ouroboros_register_normalizers",
}


def get_plugin_manager(*, load_entrypoints: bool = True) -> pluggy.PluginManager:
    """A fresh plugin manager with the built-ins and (by default) the installed entry-point plugins."""
    from ouroboros.plugins import builtin

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(builtin, name="ouroboros.builtin")
    if load_entrypoints and not os.environ.get("OUROBOROS_DISABLE_PLUGIN_AUTOLOAD"):
        wanted = os.environ.get("OUROBOROS_PLUGINS")
        if wanted is None:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        else:
            for name in filter(None, (n.strip() for n in wanted.split(","))):
                pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=name)
    pm.check_pending()
    return pm


def plugin_origins(pm: pluggy.PluginManager) -> dict[int, str]:
    """Map id(plugin) -> "distribution version" for entry-point plugins, the built-in label otherwise."""
    origins: dict[int, str] = {}
    for plugin, dist in pm.list_plugin_distinfo():
        origins[id(plugin)] = f"{dist.metadata['name']} {dist.version}"
    return origins


@dataclass(frozen=True)
class Entry:
    cls: type  # a subclass of ouroboros.core.components.Component
    origin: str  # e.g. "ouroboros (built-in)" or "ouroboros-foo 1.2.0"


@dataclass(frozen=True)
class Registry:
    """Immutable ``kind -> name -> Entry`` table."""

    entries: Mapping[str, Mapping[str, Entry]]

    def names(self, kind: str) -> list[str]:
        return sorted(self._kind(kind))

    def get(self, kind: str, name: str) -> type:
        table = self._kind(kind)
        if name not in table:
            raise ConfigError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(sorted(table)) or '(none)'}")
        return table[name].cls

    def origin(self, kind: str, name: str) -> str:
        self.get(kind, name)
        return self._kind(kind)[name].origin

    def _kind(self, kind: str) -> Mapping[str, Entry]:
        if kind not in self.entries:
            raise ConfigError(f"unknown component kind {kind!r}; valid kinds: {', '.join(KINDS)}")
        return self.entries[kind]


def _validate(kind: str, cls: object, origin: str) -> None:
    from .components import BASES

    base = BASES[kind]
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{origin} registered {cls!r} as a {kind}, but it is not a subclass of {base.__name__}")
    if not isinstance(cls.name, str) or not NAME_RE.match(cls.name):
        raise ConfigError(f"{kind} {cls.__name__} from {origin} needs a lowercase `name`, got {cls.name!r}")
    if not (isinstance(cls.Config, type) and dataclasses.is_dataclass(cls.Config)):
        raise ConfigError(f"{kind} '{cls.name}' from {origin}: `Config` must be a dataclass")
    if not cls.Config.__dataclass_params__.frozen:
        raise ConfigError(f"{kind} '{cls.name}' from {origin}: `Config` must be a frozen dataclass")


def build_registry(pm: pluggy.PluginManager) -> Registry:
    """Call every registration hook, validating each class and recording which plugin provided it."""
    origins = plugin_origins(pm)
    entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
    for kind, hook_name in HOOKS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            origin = origins.get(id(impl.plugin), BUILTIN_ORIGIN if impl.plugin_name.startswith("ouroboros.")
                                 else impl.plugin_name)

            def register(cls: type, _kind: str = kind, _origin: str = origin) -> None:
                _validate(_kind, cls, _origin)
                if cls.name in entries[_kind]:
                    first = entries[_kind][cls.name].origin
                    raise ConfigError(f"{_kind} '{cls.name}' is registered twice: by {first} and by {_origin}")
                entries[_kind][cls.name] = Entry(cls, _origin)

            impl.function(register=register)
    return Registry(MappingProxyType({k: MappingProxyType(v) for k, v in entries.items()}))


@functools.lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The registry of the current environment (built once per process, on first use)."""
    return build_registry(get_plugin_manager())
