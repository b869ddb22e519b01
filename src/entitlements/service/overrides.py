"""Use cases for per-owner overrides (seed 000: "use sparingly and document the reason")."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial

from entitlements.domain.actor import Actor, as_actor
from entitlements.domain.checks import check_key, parse_enum
from entitlements.domain.override import Override, OverrideKind, require_reason
from entitlements.domain.owner import Owner, as_owner
from entitlements.domain.plan import Action
from entitlements.service.runtime import Runtime

__all__ = ["Overrides"]


def target(owner: Owner, kind: OverrideKind, key: str) -> str:
    return f"override:{owner}:{kind.value}:{key}"


class Overrides:
    """``ents.overrides``: per-owner exceptions staff grant or withhold, with a reason and
    optionally an end."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    def set_feature(
        self,
        owner: Owner,
        key: str,
        *,
        enabled: bool,
        actor: Actor | str,
        reason: str,
        expires_at: datetime | None = None,
        actions: frozenset[Action] | None = None,
        now: datetime | None = None,
    ) -> Override:
        """Turn ``key`` on or off for this owner, whatever its plan says."""
        grant = partial(Override.feature, enabled=enabled, actions=actions)
        return self._put(grant, owner, key, actor, reason, expires_at, now)

    def set_limit(
        self,
        owner: Owner,
        key: str,
        value: int | None,
        *,
        actor: Actor | str,
        reason: str,
        expires_at: datetime | None = None,
        now: datetime | None = None,
        alerts: tuple[int, ...] | None = None,
    ) -> Override:
        """Replace limit ``key`` for this owner (``None``: unlimited); with ``alerts``,
        its alert thresholds too (percent; empty: none for this owner)."""
        grant = partial(Override.limit, value=value, alerts=alerts)
        return self._put(grant, owner, key, actor, reason, expires_at, now)

    def _put(
        self,
        grant: Callable[..., Override],
        owner: Owner,
        key: str,
        actor: Actor | str,
        reason: str,
        expires_at: datetime | None,
        now: datetime | None,
    ) -> Override:
        """Store the override ``grant`` (`Override.feature` or `Override.limit` with its
        own terms bound) makes of what every override says: who, why, when, until."""
        owner, who = as_owner(owner), as_actor(actor)
        with self._rt.transaction(owner.tenant, now) as tx:
            override = grant(
                owner, key, reason=reason, actor=str(who), at=tx.now, expires_at=expires_at
            )
            tx.authorize(who, "override.set", override.owner, override)
            replaced = tx.uow.overrides.put(override)
            tx.record(
                who,
                "override.set",
                target(owner, override.kind, override.key),
                owner=owner,
                before=replaced,
                after=override,
                reason=override.reason,
            )
            return override

    def remove(
        self,
        owner: Owner,
        kind: OverrideKind | str,
        key: str,
        *,
        actor: Actor | str,
        reason: str,
        now: datetime | None = None,
    ) -> Override:
        """Take an override away; the plan decides again from the next answer."""
        owner, who = as_owner(owner), as_actor(actor)
        reason, key = require_reason(reason), check_key(key, "override.key")
        which = parse_enum(OverrideKind, kind, "kind")
        with self._rt.transaction(owner.tenant, now) as tx:
            tx.authorize(who, "override.remove", owner, key)
            removed = tx.uow.overrides.remove(owner, which, key)
            tx.record(
                who,
                "override.remove",
                target(owner, which, key),
                owner=owner,
                before=removed,
                reason=reason,
            )
            return removed

    def list(self, owner: Owner) -> Sequence[Override]:
        """The owner's overrides, expired ones included until the sweep removes them."""
        owner = as_owner(owner)
        with self._rt.read(owner.tenant) as uow:
            return uow.overrides.for_owner(owner)
