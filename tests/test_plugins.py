"""Plugin discovery through the `ouroboros` entry-point group, registration rules, and meta-tests."""

import inspect
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pluggy
import pytest
from typer.testing import CliRunner

from ouroboros.core import hookspecs
from ouroboros.core.components import Gate
from ouroboros.core.errors import ConfigError
from ouroboros.core.registry import BUILTIN_ORIGIN, build_registry, get_plugin_manager
from ouroboros.testing import CHECKS, check_roundtrip

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent


@pytest.fixture
def fakeplugin(monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES / "fakeplugin"))
    monkeypatch.delenv("OUROBOROS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("OUROBOROS_PLUGINS", raising=False)
    yield
    sys.modules.pop("ouroboros_fakeplugin", None)


def test_entry_point_plugin_is_found_with_its_origin(fakeplugin):
    registry = build_registry(get_plugin_manager())
    assert "half" in registry.names("gate")
    assert registry.origin("gate", "half") == "ouroboros-fakeplugin 0.3.0"
    assert registry.origin("gate", "sigmoid") == BUILTIN_ORIGIN


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_third_party_component_passes_the_conformance_checks(check, fakeplugin, llama_dir, tmp_path, monkeypatch):
    from ouroboros.core import registry as reg

    monkeypatch.setattr(reg, "default_registry", lambda: build_registry(get_plugin_manager()))
    import ouroboros.core.builder as builder
    import ouroboros.core.checkpoint as checkpoint

    monkeypatch.setattr(builder, "default_registry", reg.default_registry)
    monkeypatch.setattr(checkpoint, "default_registry", reg.default_registry)
    composition = {"controller": "mlp", "modulation": "diagonal", "gate": "half", "normalizer": "rmsnorm"}
    check(llama_dir, composition, tmp_path / "ck") if check is check_roundtrip else check(llama_dir, composition)


def test_autoload_can_be_disabled_or_restricted(fakeplugin, monkeypatch):
    monkeypatch.setenv("OUROBOROS_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "half" not in build_registry(get_plugin_manager()).names("gate")
    monkeypatch.delenv("OUROBOROS_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("OUROBOROS_PLUGINS", "someotherplugin")
    assert "half" not in build_registry(get_plugin_manager()).names("gate")
    monkeypatch.setenv("OUROBOROS_PLUGINS", "fakeplugin")
    assert "half" in build_registry(get_plugin_manager()).names("gate")


def test_misspelt_hook_is_caught(monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES / "badplugin"))
    monkeypatch.setenv("OUROBOROS_PLUGINS", "badplugin")
    with pytest.raises(pluggy.PluginValidationError, match="ouroboros_register_gatez"):
        get_plugin_manager()
    sys.modules.pop("ouroboros_badplugin", None)


def _registry_with(register_fn):
    class Plugin:
        @hookspecs.hookimpl
        def ouroboros_register_gates(self, register):
            register_fn(register)

    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(Plugin(), name="test-plugin")
    return build_registry(pm)


@pytest.mark.parametrize("hook,base_path", [
    ("ouroboros_register_controllers", "ouroboros.plugins.controllers.NoController"),
    ("ouroboros_register_modulations", "ouroboros.plugins.modulations.NoModulation"),
    ("ouroboros_register_gates", "ouroboros.plugins.gates.NoGate"),
    ("ouroboros_register_normalizers", "ouroboros.plugins.normalizers.NoNormalizer"),
])
def test_each_component_hook_registers_a_new_component(hook, base_path):
    import importlib

    module, _, cls_name = base_path.rpartition(".")
    base = getattr(importlib.import_module(module), cls_name)
    custom = type("Custom", (base,), {"name": "custom", "__doc__": "a test component"})
    plugin = type("Plugin", (), {hook: staticmethod(hookspecs.hookimpl(lambda register: register(custom)))})
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(plugin, name="test-plugin")
    registry = build_registry(pm)
    kind = custom.kind
    assert registry.get(kind, "custom") is custom and registry.origin(kind, "custom") == "test-plugin"
    assert "none" in registry.names(kind)


def test_duplicate_name_names_both_origins():
    from ouroboros.plugins.gates import SigmoidGate

    class Clash(SigmoidGate):
        pass

    with pytest.raises(ConfigError, match=r"gate 'sigmoid' is registered twice: by ouroboros \(built-in\) and by "
                                          r"test-plugin"):
        _registry_with(lambda register: register(Clash))


def test_registration_is_validated():
    @dataclass
    class Mutable:
        pass

    class NotAGate:
        name = "x"

    class BadName(Gate):
        name = "Bad Name"
        Config = dataclass(frozen=True)(type("C", (), {}))

    class NotFrozen(Gate):
        name = "notfrozen"
        Config = Mutable

    with pytest.raises(ConfigError, match="not a subclass of Gate"):
        _registry_with(lambda r: r(NotAGate))
    with pytest.raises(ConfigError, match="needs a lowercase `name`, got 'Bad Name'"):
        _registry_with(lambda r: r(BadName))
    with pytest.raises(ConfigError, match="`Config` must be a frozen dataclass"):
        _registry_with(lambda r: r(NotFrozen))


def test_registry_is_immutable():
    registry = build_registry(get_plugin_manager(load_entrypoints=False))
    with pytest.raises(TypeError):
        registry.entries["gate"]["x"] = None
    with pytest.raises(TypeError):
        registry.entries["extra"] = {}


def test_plugin_command_is_added_to_the_cli(fakeplugin):
    from ouroboros.cli.app import make_app

    result = CliRunner().invoke(make_app(), ["hello"])
    assert result.exit_code == 0 and "hello from fakeplugin" in result.output
    result = CliRunner().invoke(make_app(), ["plugins"])
    assert "ouroboros-fakeplugin 0.3.0" in result.output and "fakeplugin" in result.output


def test_every_hook_is_documented_and_tested():
    hooks = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("ouroboros_")]
    assert len(hooks) == 5
    tests = "".join(p.read_text() for p in Path(__file__).parent.rglob("*.py"))
    for name in hooks:
        doc = inspect.getdoc(getattr(hookspecs, name))
        assert doc and ("register(" in doc or "app" in doc), name
        assert tests.count(name) >= 1, f"hook {name} has no test"
    assert "Example" in inspect.getdoc(hookspecs)


def test_example_package_installed_by_pip_end_to_end(tmp_path, llama_dir):
    """pip-install examples/ouroboros-scalenorm, then build and train a step with it in a fresh process."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT / "examples" / "ouroboros-scalenorm")], check=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)])}
    env.pop("OUROBOROS_DISABLE_PLUGIN_AUTOLOAD", None)
    env.pop("OUROBOROS_PLUGINS", None)
    code = (
        "import torch, ouroboros\n"
        "from ouroboros.core.registry import default_registry\n"
        "print(default_registry().origin('normalizer', 'scalenorm'))\n"
        f"m = ouroboros.build({llama_dir!r}, prelude=1, recurrent=2, coda=1, rank=4, normalizer='scalenorm')\n"
        "ids = torch.randint(0, 97, (1, 8))\n"
        "m(ids, depth=2, labels=ids).loss.backward()\n"
        "print('gain grad', float(m.normalizer.gain.grad.abs().sum()) > 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert "ouroboros-scalenorm 0.1.0" in out and "gain grad True" in out
