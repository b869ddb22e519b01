"""Read-only mappings for the fields of public values.

The values are ``attrs.frozen``, but a frozen object holding a plain ``dict`` is mutable
inside: a host writing to ``snapshot.limits["seats"]`` would change the answer for every
later request served from the cache. `FrozenDict` is a ``dict`` (so lookups stay as fast
as a dict's, ``json`` and ``isinstance(x, dict)`` keep working, and it compares equal to
a dict with the same items) whose every mutating method raises ``TypeError``, as
``types.MappingProxyType`` does; unlike a proxy it can be copied and pickled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn, TypeVar

__all__ = ["FrozenDict", "FrozenList", "freeze"]

K = TypeVar("K")
V = TypeVar("V")


class FrozenDict(dict[K, V]):
    __slots__ = ()

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(f"{type(self).__name__} is read-only; build a new value instead")

    __setitem__ = _refuse
    __delitem__ = _refuse
    __ior__ = _refuse
    clear = _refuse
    pop = _refuse
    popitem = _refuse
    setdefault = _refuse
    update = _refuse

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self),))

    def __copy__(self) -> FrozenDict[K, V]:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenDict[K, V]:
        return self

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"


class FrozenList(tuple[V, ...]):
    """A tuple that compares equal to a list with the same items, for JSON arrays in
    documents (metadata), so ``sub.metadata == {"tags": ["a"]}`` still holds."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list):
            return list(self) == other
        return tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = tuple.__hash__

    def __repr__(self) -> str:
        return repr(list(self))


def freeze(value: Any) -> Any:
    """``value`` with every mapping inside made a `FrozenDict`, every list or tuple a
    `FrozenList` and every set a frozenset (for JSON-like documents such as metadata)."""
    if isinstance(value, FrozenDict):
        return value
    if isinstance(value, Mapping):
        return FrozenDict({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return FrozenList(freeze(v) for v in value)
    if isinstance(value, set | frozenset):
        return frozenset(freeze(v) for v in value)
    return value
