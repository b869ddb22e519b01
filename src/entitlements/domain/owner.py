"""Who holds a subscription: an organization, customer, workspace or app.

Hosts build an `Owner` on every request (``Owner("organization", org_id)``), so building
one is on the request path: an owner already seen is handed back from a bounded table of
validated owners (no validation, no allocation), and equality and hashing go through one
string made once per owner, which the warm cache also uses as its key.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import attrs

from entitlements.domain.checks import check_id, check_optional_id
from entitlements.errors import InvalidInput

__all__ = ["Owner"]

# what an owner kind looks like, wherever one is named (an owner, a plan's owner_kinds)
OWNER_KIND = re.compile(r"^[a-z][a-z0-9_\-]{0,63}$")
_MAX_ID = 255
_SEEN_MAX = 65_536


def _kind(value: object) -> str:
    if not isinstance(value, str) or not OWNER_KIND.match(value):
        raise InvalidInput(
            "owner.kind",
            "must be a short lowercase word such as 'organization' or 'app'",
            value,
        )
    return value


def _id(value: object) -> str:
    return check_id(value, "owner.id", max_length=_MAX_ID)


def _tenant(value: object) -> str | None:
    return check_optional_id(value, "owner.tenant", max_length=_MAX_ID)


# tenant -> kind -> id -> the owner: three lookups on strings whose hashes Python keeps,
# where a (kind, id, tenant) tuple would be built and hashed on every call.
_seen: dict[str | None, dict[str, dict[str, Owner]]] = {}
_seen_count = 0


class _OwnerType(type):
    """Builds owners: an owner seen before comes back from the table without being
    validated again (its parts were valid then, and an owner is immutable)."""

    def __call__(cls, kind: object, id: object, tenant: object = None) -> Owner:
        try:
            return _seen[tenant][kind][id]  # type: ignore[index]
        except (KeyError, TypeError):  # new, or not even hashable: validation says which
            return _new_owner(cls, kind, id, tenant)  # type: ignore[arg-type]


def _new_owner(cls: type[Owner], kind: object, id: object, tenant: object) -> Owner:
    global _seen_count
    owner: Owner = object.__new__(cls)
    parts = (_kind(kind), _id(id), _tenant(tenant))
    for name, value in zip(("kind", "id", "tenant"), parts, strict=True):
        object.__setattr__(owner, name, value)
    # control characters are refused in every part, so NUL separates them unambiguously
    object.__setattr__(owner, "_key", f"{parts[2] or ''}\0{parts[0]}\0{parts[1]}")
    if cls is Owner and type(kind) is str and type(id) is str:
        if _seen_count >= _SEEN_MAX:  # a bound, not a cache policy: start over
            _seen.clear()
            _seen_count = 0
        _seen.setdefault(parts[2], {}).setdefault(parts[0], {})[parts[1]] = owner
        _seen_count += 1
    return owner


@attrs.frozen(init=False, eq=False, repr=False)
class Owner(metaclass=_OwnerType):
    """An owner is identified by its kind and the host's own id for it.

    ``tenant`` places the owner inside one of the host's tenants (seed 004: the apps of a
    tenant). Everything stored about an owner is scoped by that tenant, so an owner with
    the same kind and id in another tenant is a different owner.

    Owners compare and hash by value; building one with a kind, id and tenant seen
    before returns that same (immutable) object.
    """

    kind: str
    """The kind of thing that holds the subscription (``organization``, ``user``,
    ``app``...); plans may restrict kinds."""
    id: str
    """The host's own id for the owner; the library never makes one up."""
    tenant: str | None = None
    """The host's tenant the owner belongs to (``None``: the host has one)."""
    _key: str = attrs.field(init=False)

    if TYPE_CHECKING:  # built by the type's __call__; this is the signature it takes

        def __init__(self, kind: object, id: object, tenant: object = None) -> None: ...

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key == other._key

    def __ne__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key != other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __reduce__(self) -> tuple[type[Owner], tuple[str, str, str | None]]:
        return (self.__class__, (self.kind, self.id, self.tenant))

    def __copy__(self) -> Owner:
        return self

    def __deepcopy__(self, memo: object) -> Owner:
        return self

    def __repr__(self) -> str:
        where = "" if self.tenant is None else f", tenant={self.tenant!r}"
        return f"Owner({self.kind!r}, {self.id!r}{where})"

    def __str__(self) -> str:
        prefix = "" if self.tenant is None else f"{self.tenant}/"
        return f"{prefix}{self.kind}:{self.id}"

    @classmethod
    def parse(cls, text: str) -> Owner:
        """The inverse of ``str(owner)``: ``"organization:acme"``, ``"tenant-a/app:42"``."""
        if not isinstance(text, str):
            raise InvalidInput("owner", "must be text such as 'organization:acme'", text)
        tenant, slash, rest = (
            text.partition("/") if "/" in text.split(":", 1)[0] else ("", "", text)
        )
        kind, colon, ident = rest.partition(":")
        if not colon:
            raise InvalidInput("owner", "must look like 'kind:id' or 'tenant/kind:id'", text)
        return cls(kind, ident, tenant if slash else None)


def owner_key(owner: Owner) -> str:
    """The string an owner compares and hashes by (a cache key whose hash Python keeps),
    and the order every path that locks several owners takes their locks in: two such
    paths never wait on each other in a cycle."""
    return owner._key


def as_owner(value: object) -> Owner:
    if not isinstance(value, Owner):
        raise InvalidInput("owner", f"must be an Owner, got {type(value).__name__}", value)
    return value


def in_tenant(owner: Owner, tenant: str | None) -> Owner:
    """``owner``, refused unless it belongs to ``tenant``: a unit of work opened for one
    tenant must never read or write another tenant's rows, whatever the store."""
    if owner.tenant != tenant:
        raise InvalidInput(
            "owner.tenant",
            f"{owner} belongs to tenant {owner.tenant!r}, not to this unit of work's tenant {tenant!r}",
        )
    return owner
