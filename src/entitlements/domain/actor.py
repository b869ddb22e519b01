"""Who performs a change: staff, the owner's own members, the system, a payment provider."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

import attrs

from entitlements.domain.checks import check_id, parse_enum
from entitlements.errors import InvalidInput

__all__ = ["Actor", "ActorKind"]


class ActorKind(enum.StrEnum):
    """Who is acting: ``staff`` of the host, a ``member`` of the owner, the ``system`` (the
    sweep), or the payment ``provider``."""

    STAFF = "staff"
    MEMBER = "member"
    SYSTEM = "system"
    PROVIDER = "provider"


_KINDS = tuple(k.value for k in ActorKind)
_MAX_ID = 200
"""Stored as ``kind:id`` in 255 characters."""


def _kind(value: object) -> ActorKind:
    return parse_enum(ActorKind, value, "actor.kind")


def _id(value: object) -> str:
    return check_id(value, "actor", max_length=_MAX_ID)


def _permissions(value: object) -> frozenset[str]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise InvalidInput("actor.permissions", "must be a set of permission names", value)
    try:
        names = frozenset(value)
    except TypeError:
        raise InvalidInput("actor.permissions", "must be permission names", value) from None
    for name in names:
        check_id(name, "actor.permissions", max_length=_MAX_ID)
    return names


@attrs.frozen
class Actor:
    """``permissions`` are the host's permission names (seed 002: ``subscriptions.manage``);
    the library never invents them, the Authorizer reads them."""

    id: str = attrs.field(converter=_id)
    """The name audit events record (``ann`` in ``staff:ann``)."""
    kind: ActorKind = attrs.field(default=ActorKind.STAFF, converter=_kind)
    """Staff, a member of the owner, the system itself or the payment provider; authorizers
    decide by it."""
    permissions: frozenset[str] = attrs.field(factory=frozenset, converter=_permissions)
    """The host's permission names this actor holds, read by the `Authorizer`."""

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        """The actor for changes the library makes by itself (the sweep, time-driven
        changes)."""
        return cls(name, ActorKind.SYSTEM)

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.id}"


def as_actor(value: Actor | str) -> Actor:
    """A string names a staff actor (``"ann"``), or any kind with a prefix
    (``"member:42"``, ``"staff:ann"``): convenient in scripts and consoles.

    A string whose prefix is not a kind is refused rather than read as a staff id: a
    typo such as ``"membr:bob"`` must not turn a member into staff. An id that contains
    a colon is written with its kind (``"staff:auth0:42"``) or as ``Actor(...)``."""
    if isinstance(value, Actor):
        return value
    if not isinstance(value, str):
        raise InvalidInput("actor", "must be an Actor or a string naming one", value)
    kind, sep, rest = value.partition(":")
    if not sep:
        return Actor(value)
    if kind not in _KINDS:
        raise InvalidInput(
            "actor",
            f"{kind!r} is not a kind of actor (use one of {', '.join(_KINDS)} before the "
            "colon, e.g. 'member:bob', or pass Actor(...))",
            value,
        )
    return Actor(rest, kind)
