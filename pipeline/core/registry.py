"""Plain registries: a dict and a decorator per kind (as in ActionFormer's ``libs/modeling/models.py``), and
:func:`import_object` for entries that name what they register instead of importing it."""
from __future__ import annotations

import importlib
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise KeyError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._entries))}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


def import_object(target: str) -> Any:
    """The object ``target`` names as ``"package.module:attribute"`` (an entry point's spelling), importing the
    module now: an entry that names its object costs no import until it is used."""
    module, sep, attribute = target.partition(":")
    if not (sep and module and attribute):
        raise ValueError(f"expected 'package.module:attribute', got {target!r}")
    return getattr(importlib.import_module(module), attribute)
