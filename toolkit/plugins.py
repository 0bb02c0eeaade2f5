"""The plugin manager: loads `toolkit.plugins` entry points one by one, records failures, fills the registries.

TOOLKIT_LOAD_PLUGINS=a,b loads only those entry points (an allowlist; empty loads none);
TOOLKIT_BLOCK_PLUGINS=a,b blocks those (pm.set_blocked). A plugin that fails to import, to validate or to
register is recorded with its error and never stops the others.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable

import pluggy

from . import hookspecs
from .errors import first_line
from .registry import KINDS, Registries, register_into

ENTRY_POINT_GROUP = "toolkit.plugins"


@dataclass
class PluginRecord:
    name: str
    version: str | None = None
    module: str | None = None
    status: str = "ok"  # ok | failed | blocked | duplicate
    error: str | None = None
    registers: dict[str, list[str]] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)  # names taken back when a later hook failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "module": self.module,
            "status": self.status,
            "error": self.error,
            "registers": self.registers,
        }


@dataclass
class LoadedPlugins:
    pm: pluggy.PluginManager
    registries: Registries
    records: list[PluginRecord]


def _env_list(var: str) -> list[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _own_version() -> str:
    from . import __version__

    return __version__


def make_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("toolkit")
    pm.add_hookspecs(hookspecs)
    return pm


def _error_text(exc: BaseException) -> str:
    text = first_line(exc)
    return type(exc).__name__ if text == type(exc).__name__ else f"{type(exc).__name__}: {text}"


def _register_one(pm: pluggy.PluginManager, plugin: object, record: PluginRecord) -> None:
    """Register and validate one plugin; on failure leave it unregistered and mark the record."""
    if pm.is_registered(plugin):  # e.g. a test registering an installed plugin's module again
        record.status, record.error = "duplicate", f"already loaded as {pm.get_name(plugin)}"
        return
    try:
        pm.register(plugin, name=record.name)
        pm.check_pending()
    except Exception as exc:  # a plugin author's mistake must not stop the others
        if pm.is_registered(plugin):
            pm.unregister(plugin)
        record.status, record.error = "failed", _error_text(exc)


def load_plugins(extra_plugins: list[tuple[str, object]] | None = None) -> LoadedPlugins:
    """Load every entry-point plugin (honouring the allow/deny lists) plus `extra_plugins`, then register."""
    pm = make_plugin_manager()
    allow = _env_list("TOOLKIT_LOAD_PLUGINS")
    deny = set(_env_list("TOOLKIT_BLOCK_PLUGINS") or [])
    records: list[PluginRecord] = []

    # The core's own items (the local runner) come through the same hooks, whatever the allow and deny lists say.
    from .benchmark import local

    core = PluginRecord("core", version=_own_version(), module=local.__name__)
    records.append(core)
    _register_one(pm, local, core)

    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if allow is not None and ep.name not in allow:
            continue
        record = PluginRecord(ep.name, version=ep.dist.version if ep.dist else None, module=ep.value)
        records.append(record)
        if ep.name in deny:
            pm.set_blocked(ep.name)
            record.status, record.error = "blocked", "listed in TOOLKIT_BLOCK_PLUGINS"
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # ImportError, SyntaxError, anything a broken plugin raises at import
            record.status, record.error = "failed", _error_text(exc)
            continue
        _register_one(pm, plugin, record)

    # Modules named in TOOLKIT_PLUGIN_MODULES load as plugins too: a plugin under development, or a test's.
    for modname in _env_list("TOOLKIT_PLUGIN_MODULES") or []:
        record = PluginRecord(modname, module=modname)
        records.append(record)
        try:
            _register_one(pm, importlib.import_module(modname), record)
        except Exception as exc:
            record.status, record.error = "failed", _error_text(exc)

    for name, plugin in extra_plugins or []:
        taken = {r.name for r in records}
        record = PluginRecord(name if name not in taken else f"{name} (again)",
                              module=getattr(plugin, "__name__", type(plugin).__module__))
        records.append(record)
        _register_one(pm, plugin, record)

    registries = Registries()
    by_name: dict[str, PluginRecord] = {}
    for r in records:  # the first record of a name is the plugin pluggy knows by it
        by_name.setdefault(r.name, r)
    for kind in KINDS:
        registry = registries.kinds()[kind.name]
        for impl in getattr(pm.hook, kind.hook).get_hookimpls():
            record = by_name.get(impl.plugin_name)
            if record is None or record.status != "ok":
                continue
            added: list[str] = []
            try:
                impl.function(register=register_into(registry, impl.plugin_name, added))
            except Exception as exc:
                record.status, record.error = "failed", f"{kind.hook}: {_error_text(exc)}"
                # A half-registered plugin is worse than none: take back what its earlier hooks added too.
                taken_back = [n for reg in registries.kinds().values() for n in reg.remove_owned_by(impl.plugin_name)]
                record.registers = {}
                record.lost = sorted(set(taken_back) | set(added))
                continue
            if added:
                record.registers.setdefault(kind.name, []).extend(added)

    # A name that a failed or blocked plugin would have provided is reported as such, not as "unknown".
    for record in records:
        if record.status in ("failed", "blocked"):
            why = f"plugin {record.name} {'is blocked' if record.status == 'blocked' else 'failed to load'}"
            why += f" ({record.error})" if record.error and record.status == "failed" else ""
            for registry in registries.kinds().values():
                for name in [record.name, *record.lost]:
                    if name not in registry:
                        registry.unavailable.setdefault(name, why)
    return LoadedPlugins(pm, registries, records)


_loaded: LoadedPlugins | None = None
_extra: list[tuple[str, object]] = []


def loaded() -> LoadedPlugins:
    """The process-wide plugins, loaded once on first use."""
    global _loaded
    if _loaded is None:
        _loaded = load_plugins(list(_extra))
    return _loaded


def registries() -> Registries:
    return loaded().registries


def reset(extra_plugins: list[tuple[str, object]] | None = None) -> None:
    """Forget the loaded plugins (tests; after installing a plugin). `extra_plugins` are registered next time."""
    global _loaded, _extra
    _loaded = None
    _extra = list(extra_plugins or [])


def register_for_tests(name: str, plugin: object) -> Callable[[], None]:
    """Add an in-process plugin; returns a function that removes it again."""
    reset(_extra + [(name, plugin)])

    def undo() -> None:
        reset([(n, p) for n, p in _extra if n != name])

    return undo
