"""Who holds a subscription: an organization, customer, workspace or app."""

from __future__ import annotations

import re

import attrs

from entitlements.domain.checks import check_id, check_optional_id
from entitlements.errors import InvalidInput

__all__ = ["Owner"]

# what an owner kind looks like, wherever one is named (an owner, a plan's owner_kinds)
OWNER_KIND = re.compile(r"^[a-z][a-z0-9_\-]{0,63}$")
_MAX_ID = 255


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


@attrs.frozen(cache_hash=True, repr=False)
class Owner:
    """An owner is identified by its kind and the host's own id for it.

    ``tenant`` places the owner inside one of the host's tenants (seed 004: the apps of a
    tenant). Everything stored about an owner is scoped by that tenant, so an owner with
    the same kind and id in another tenant is a different owner.
    """

    kind: str = attrs.field(converter=_kind)
    """The kind of thing that holds the subscription (``organization``, ``user``,
    ``app``...); plans may restrict kinds."""
    id: str = attrs.field(converter=_id)
    """The host's own id for the owner; the library never makes one up."""
    tenant: str | None = attrs.field(default=None, converter=_tenant)
    """The host's tenant the owner belongs to (``None``: the host has one)."""

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
