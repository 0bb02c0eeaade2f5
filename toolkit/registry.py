"""Typed registries: what plugins register, by name, with the plugin that registered each entry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import UnknownNameError, UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> item, for one kind of thing ("backend", "dataset", ...)."""

    def __init__(self, kind: str, name_of: Callable[[T], str] = lambda item: item.name):
        self.kind = kind
        self._name_of = name_of
        self._items: dict[str, T] = {}
        self._owners: dict[str, str] = {}

    def add(self, item: T, owner: str = "?") -> None:
        name = self._name_of(item)
        if name in self._items:
            raise UsageError(f"{self.kind} '{name}' is registered twice (by {self._owners[name]} and {owner})",
                             "Uninstall or block one of the two plugins")
        self._items[name] = item
        self._owners[name] = owner

    def name_of(self, item: T) -> str:
        return self._name_of(item)

    def remove_owned_by(self, owner: str) -> None:
        for name in [n for n, o in self._owners.items() if o == owner]:
            del self._items[name], self._owners[name]

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._items) from None

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


@dataclass
class Registries:
    """Everything the loaded plugins registered."""

    models: Registry[Any] = field(default_factory=lambda: Registry("model"))
    datasets: Registry[Any] = field(default_factory=lambda: Registry("dataset"))
    converters: Registry[Any] = field(default_factory=lambda: Registry("converter"))
    quantizers: Registry[Any] = field(default_factory=lambda: Registry("quantizer"))
    backends: Registry[Any] = field(default_factory=lambda: Registry("backend"))
    targets: Registry[Any] = field(default_factory=lambda: Registry("target"))
    commands: Registry[Any] = field(default_factory=lambda: Registry("command"))

    def kinds(self) -> dict[str, Registry[Any]]:
        return {
            "models": self.models,
            "datasets": self.datasets,
            "converters": self.converters,
            "quantizers": self.quantizers,
            "backends": self.backends,
            "targets": self.targets,
            "commands": self.commands,
        }
