"""Typed registries: what plugins register, by name, with the plugin that registered each entry.

KINDS is the one table of what a plugin can register: the hook, the interface an item must implement, and the
registry it lands in. Adding a kind is one line here plus its hookspec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, TypeVar

import click

from .errors import UnknownNameError, UsageError
from .interfaces import TASKS, Backend, Converter, Dataset, Model, ModelFormat, Quantizer, Runner, Target

T = TypeVar("T")


@dataclass(frozen=True)
class Kind:
    """One kind of registrable item."""

    name: str  # the registry's name, plural: "backends"
    singular: str  # for messages: "backend"
    hook: str  # the pluggy hook that registers it
    interface: type
    required: tuple[str, ...] = ("name",)  # attributes an item must have, not None or empty


KINDS: tuple[Kind, ...] = (
    Kind("formats", "format", "register_formats", ModelFormat, ("name", "suffixes")),
    Kind("models", "model", "register_models", Model, ("name", "format")),
    Kind("datasets", "dataset", "register_datasets", Dataset, ("name", "task")),
    Kind("converters", "converter", "register_converters", Converter, ("name", "source_format", "target_format")),
    Kind("quantizers", "quantizer", "register_quantizers", Quantizer, ("name", "source_formats", "target_format",
                                                                       "schemes")),
    Kind("backends", "backend", "register_backends", Backend, ("name", "formats")),
    Kind("targets", "target", "register_targets", Target),
    Kind("runners", "runner", "register_runners", Runner),
    Kind("commands", "command", "register_commands", click.Command),
)
KINDS_BY_HOOK = {k.hook: k for k in KINDS}


def check_item(kind: Kind, item: Any) -> None:
    """Raise TypeError naming the hook and what it got, for an item that is not a `kind`."""
    if isinstance(item, type):
        raise TypeError(f"{kind.hook} got the class {item.__name__}, not an instance: call register({item.__name__}())")
    if not isinstance(item, kind.interface):
        where = "click" if kind.interface.__module__.startswith("click") else "toolkit.api"
        raise TypeError(f"{kind.hook} got {_describe(item)}, not a {where}.{kind.interface.__qualname__}")
    for attr in kind.required:
        value = getattr(item, attr, None)
        if value is None or (isinstance(value, (str, tuple, list, set, frozenset)) and len(value) == 0):
            raise TypeError(f"{kind.hook} got a {type(item).__name__} without `{attr}`")
    task = getattr(item, "task", None)
    if isinstance(item, (Model, Dataset)) and task not in TASKS:
        raise TypeError(f"{kind.hook} got a {type(item).__name__} whose task {task!r} is not one of {', '.join(TASKS)}")
    name = item.name
    if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name):
        raise TypeError(f"{kind.hook} got a {type(item).__name__} whose name {name!r} is not a word")


def _describe(item: Any) -> str:
    text = repr(item)
    return f"a {type(item).__name__} ({text[:60]}{'...' if len(text) > 60 else ''})"


class Registry(Generic[T]):
    """Name -> item, for one kind of thing."""

    def __init__(self, kind: Kind):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._owners: dict[str, str] = {}
        # Names a failed or blocked plugin would have registered: "plugin X failed to load", not "unknown".
        self.unavailable: dict[str, str] = {}

    def add(self, item: T, owner: str = "?") -> None:
        check_item(self.kind, item)
        name = item.name  # type: ignore[attr-defined]
        if name in self._items:
            raise UsageError(f"{self.kind.singular} '{name}' is registered twice (by {self._owners[name]} and {owner})",
                             "Uninstall or block one of the two plugins")
        self._items[name] = item
        self._owners[name] = owner

    def remove_owned_by(self, owner: str) -> list[str]:
        names = [n for n, o in self._owners.items() if o == owner]
        for name in names:
            del self._items[name], self._owners[name]
        return names

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            if name in self.unavailable:
                raise UsageError(f"{self.kind.singular} '{name}' is not loaded: {self.unavailable[name]}",
                                 "See `toolkit plugins` for why") from None
            raise UnknownNameError(self.kind.singular, name, self._items) from None

    def owner(self, name: str) -> str:
        return self._owners[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._items)


class DatasetRegistry(Registry[Dataset]):
    """Datasets by name; a name ending in .csv or .npz is the user's own data file (toolkit.userdata)."""

    def get(self, name: str) -> Dataset:
        from . import userdata

        if name not in self._items and userdata.is_data_file(name):
            return userdata.file_dataset(name)
        return super().get(name)


class TargetRegistry(Registry[Target]):
    """Targets by name: the plugins' profiles, then the user's (TOOLKIT_TARGETS_PATH, read when first asked for,
    so a bad user profile stops only the commands that use targets), and `scheme://...` URLs, made into a target
    for the runner of that name (ssh://pi@raspberrypi.local:22)."""

    def __init__(self, kind: Kind):
        super().__init__(kind)
        self._user_loaded = False
        self._problem: UsageError | None = None

    def _load_user(self) -> None:
        if self._user_loaded:
            return
        from . import profiles

        self._user_loaded = True
        try:
            found = profiles.user_profiles()
        except profiles.ProfileError as e:  # kept for the commands that use targets (check_user_profiles)
            self._problem = e
            return
        for target in found:
            self._items[target.name] = target  # a user's profile replaces a shipped one of the same name
            self._owners[target.name] = f"{profiles.PATH_ENV} ({target.source})"

    def check_user_profiles(self) -> None:
        """Raise the ProfileError of a bad profile in TOOLKIT_TARGETS_PATH, naming its file and field."""
        self._load_user()
        if self._problem is not None:
            raise self._problem

    def get(self, name: str) -> Target:
        self._load_user()
        if name in self._items:
            return self._items[name]
        self.check_user_profiles()  # the name may be the bad profile's: say what is wrong with it
        if "://" in name:
            from . import profiles

            return profiles.target_from_url(name)
        return super().get(name)

    def names(self) -> list[str]:
        self._load_user()
        return super().names()

    def __contains__(self, name: object) -> bool:
        self._load_user()
        return super().__contains__(name)


class Registries:
    """Everything the loaded plugins registered: one typed Registry per kind, as attributes (`.backends`)."""

    formats: Registry[ModelFormat]
    models: Registry[Model]
    datasets: Registry[Dataset]
    converters: Registry[Converter]
    quantizers: Registry[Quantizer]
    backends: Registry[Backend]
    targets: Registry[Target]
    runners: Registry[Runner]
    commands: Registry[click.Command]

    def __init__(self) -> None:
        for kind in KINDS:
            special = {"datasets": DatasetRegistry, "targets": TargetRegistry}.get(kind.name, Registry)
            setattr(self, kind.name, special(kind))

    def kinds(self) -> dict[str, Registry[Any]]:
        return {kind.name: getattr(self, kind.name) for kind in KINDS}

    def by_hook(self, hook: str) -> Registry[Any]:
        return getattr(self, KINDS_BY_HOOK[hook].name)


def register_into(registry: Registry[Any], owner: str, added: list[str]) -> Callable[[Any], None]:
    """The `register` callable a hook receives: adds to `registry` in the name of `owner`."""

    def register(item: Any) -> None:
        registry.add(item, owner=owner)
        added.append(item.name)

    return register
