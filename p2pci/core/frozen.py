"""Fast constructors for frozen slots dataclasses, for the per-reveal hot path.

A frozen dataclass's `__init__` sets each field through `object.__setattr__` (a global lookup
and a generic call per field): for the 8 fields of a `Reveal` that is about as slow as the
checks that precede it. `builder(cls)` returns a function that takes every field positionally,
in declaration order, and sets each slot through its member descriptor: the same object
(equal, hashed and frozen like one from `cls(...)`), about twice as fast. It runs no
`__post_init__` and applies no defaults: callers pass every field, already checked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def builder(cls: type[T]) -> Callable[..., T]:
    """`build(*fields) -> cls` for a frozen `slots=True` dataclass without `__post_init__`."""
    if not dataclasses.is_dataclass(cls) or "__slots__" not in vars(cls):
        raise TypeError(f"{cls.__name__} is not a slots dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__ that a builder would skip")
    names = [f.name for f in dataclasses.fields(cls)]
    if any(not f.init for f in dataclasses.fields(cls)):
        raise TypeError(f"{cls.__name__} has fields outside __init__")
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    lines = [f"def build({', '.join(names)}):", "    o = _new(_cls)"]
    for i, name in enumerate(names):
        scope[f"_s{i}"] = vars(cls)[name].__set__  # the slot's member descriptor
        lines.append(f"    _s{i}(o, {name})")
    lines.append("    return o")
    exec("\n".join(lines), scope)  # noqa: S102 (names are the dataclass's own field names)
    build: Callable[..., T] = scope["build"]
    build.__qualname__ = build.__name__ = f"build_{cls.__name__}"
    return build
