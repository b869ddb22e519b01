"""Who performs a change: staff, the owner's own members, the system, a payment provider."""

from __future__ import annotations

import enum

import attrs

from entitlements.domain.checks import parse_enum
from entitlements.errors import InvalidInput

__all__ = ["Actor", "ActorKind"]


class ActorKind(enum.StrEnum):
    """Who is acting: ``staff`` of the host, a ``member`` of the owner, the ``system`` (the
    sweep), or the payment ``provider``."""

    STAFF = "staff"
    MEMBER = "member"
    SYSTEM = "system"
    PROVIDER = "provider"


def _kind(value: object) -> ActorKind:
    return parse_enum(ActorKind, value, "actor.kind")


def _id(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        raise InvalidInput(
            "actor", "must name who acts (a non-empty id of at most 255 characters)", value
        )
    return value


@attrs.frozen
class Actor:
    """``permissions`` are the host's permission names (seed 002: ``subscriptions.manage``);
    the library never invents them, the Authorizer reads them."""

    id: str = attrs.field(converter=_id)
    """The name audit events record (``ann`` in ``staff:ann``)."""
    kind: ActorKind = attrs.field(default=ActorKind.STAFF, converter=_kind)
    """Staff, a member of the owner, the system itself or the payment provider; authorizers
    decide by it."""
    permissions: frozenset[str] = attrs.field(factory=frozenset, converter=frozenset)
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
    (``"member:42"``, ``"staff:ann"``): convenient in scripts and consoles."""
    if isinstance(value, Actor):
        return value
    if not isinstance(value, str):
        raise InvalidInput("actor", "must be an Actor or a string naming one", value)
    kind, sep, rest = value.partition(":")
    if sep and rest and kind in ActorKind.__members__.values():
        return Actor(rest, kind)
    return Actor(value)
