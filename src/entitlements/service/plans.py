"""Use cases for the plan catalog: define, revise (new version), rename, change status."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from entitlements.catalog import Catalog
from entitlements.domain.actor import Actor, as_actor
from entitlements.domain.charges import Charge
from entitlements.domain.checks import (
    check_instance,
    check_key,
    check_reason,
    check_version,
    parse_enum,
)
from entitlements.domain.plan import ByContract, Feature, Limit, Plan, PlanStatus, Price
from entitlements.errors import InvalidInput
from entitlements.service.retry import retries_lost_races
from entitlements.service.runtime import Runtime

__all__ = ["CatalogSync", "Plans"]


@attrs.frozen
class CatalogSync:
    """What ``Plans.sync`` did: plans defined, plans changed, stored plans not in the file."""

    defined: tuple[str, ...]
    """Plans the file added."""
    changed: tuple[str, ...]
    """Plans whose stored version or name the file changed."""
    not_in_catalog: tuple[str, ...]
    """Stored plans the file does not mention; left alone, since owners may hold them."""


UNSET: Any = attrs.NOTHING

_TERMS = ("limits", "features", "price", "trial_days", "charges", "net_days")
"""What `Plans.revise` changes: a plan's terms, versioned (a catalog applies them all)."""


def _terms(plan: Plan) -> dict[str, Any]:
    """Every term of ``plan``, as `Plans.revise` takes them."""
    return {name: getattr(plan, name) for name in _TERMS}


def _key(value: object) -> str:
    return check_key(value, "plan.key")


class Plans:
    """The catalog is shared by every tenant of the host product."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    def define(self, plan: Plan, *, actor: Actor | str, reason: str | None = None) -> Plan:
        """Store a new plan as version 1 (in the status it carries; ``draft`` by default)."""
        who, reason = as_actor(actor), check_reason(reason)
        if not isinstance(plan, Plan):
            raise InvalidInput("plan", "must be a Plan", plan)
        with self._rt.transaction(None) as tx:
            tx.authorize(who, "plan.define", subject=plan)
            stored = tx.uow.plans.add(plan)
            tx.record(who, "plan.define", f"plan:{plan.key}", after=stored, reason=reason)
            tx.catalog_changed = True
            return stored

    @retries_lost_races
    def revise(
        self,
        key: str,
        *,
        actor: Actor | str,
        limits: Mapping[str, Limit] = UNSET,
        features: Mapping[str, Feature | bool] = UNSET,
        price: Price | ByContract | None = UNSET,
        trial_days: int = UNSET,
        charges: Sequence[Charge] = UNSET,
        net_days: int | None = UNSET,
        reason: str | None = None,
    ) -> Plan:
        """Change the plan's terms; makes version n+1 when anything differs. Existing
        subscriptions keep the version they hold until migrated."""
        who, key, reason = as_actor(actor), _key(key), check_reason(reason)
        asked = (limits, features, price, trial_days, charges, net_days)
        changes = {n: v for n, v in zip(_TERMS, asked, strict=True) if v is not UNSET}
        return self._revise(who, key, reason, changes)

    def _revise(self, who: Actor, key: str, reason: str | None, changes: dict[str, Any]) -> Plan:
        with self._rt.transaction(None) as tx:
            tx.authorize(who, "plan.revise", subject=key)
            current = tx.uow.plans.get(key)
            revised = attrs.evolve(current, version=current.version + 1, **changes)
            if revised.same_terms(current):
                return current
            stored = tx.uow.plans.update(revised)
            tx.record(
                who, "plan.revise", f"plan:{key}", before=current, after=stored, reason=reason
            )
            return stored

    def rename(self, key: str, name: str, *, actor: Actor | str, reason: str | None = None) -> Plan:
        """Change the name people see; versions and subscriptions are untouched."""
        return self._update(key, actor, "plan.rename", reason, name=name)

    def set_owner_kinds(
        self,
        key: str,
        owner_kinds: frozenset[str],
        *,
        actor: Actor | str,
        reason: str | None = None,
    ) -> Plan:
        """Restrict which kinds of owner may be given the plan (empty: any); owners already
        on it keep it."""
        return self._update(key, actor, "plan.owner_kinds", reason, owner_kinds=owner_kinds)

    def set_status(
        self, key: str, status: PlanStatus | str, *, actor: Actor | str, reason: str | None = None
    ) -> Plan:
        """draft → active → archived ⇄ active, active/archived → retired, retired → archived."""
        target = parse_enum(PlanStatus, status, "status")
        return self._update(key, actor, "plan.status", reason, status=target)

    def activate(self, key: str, *, actor: Actor | str, reason: str | None = None) -> Plan:
        """Offer the plan: it can now be assigned to new owners."""
        return self.set_status(key, PlanStatus.ACTIVE, actor=actor, reason=reason)

    def archive(self, key: str, *, actor: Actor | str, reason: str | None = None) -> Plan:
        """Stop offering the plan; owners on it keep it."""
        return self.set_status(key, PlanStatus.ARCHIVED, actor=actor, reason=reason)

    def retire(self, key: str, *, actor: Actor | str, reason: str | None = None) -> Plan:
        """End the plan: owners still on it get no claims or tokens for it."""
        return self.set_status(key, PlanStatus.RETIRED, actor=actor, reason=reason)

    @retries_lost_races
    def _update(
        self, key: str, actor: Actor | str, action: str, reason: str | None, **changes: Any
    ) -> Plan:
        who, key, reason = as_actor(actor), _key(key), check_reason(reason)
        with self._rt.transaction(None) as tx:
            tx.authorize(who, action, subject=key)
            current = tx.uow.plans.get(key)
            if changes.get("status", current.status) is not current.status:
                current.check_status_change(changes["status"])
            updated = attrs.evolve(current, **changes)
            if updated == current:
                return current
            stored = tx.uow.plans.update(updated)
            tx.record(who, action, f"plan:{key}", before=current, after=stored, reason=reason)
            tx.catalog_changed = True
            return stored

    @retries_lost_races
    def sync(
        self,
        catalog: Catalog,
        *,
        actor: Actor | str,
        reason: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> CatalogSync:
        """Make the stored catalog match ``catalog`` in one unit of work: define new plans,
        revise changed terms (new versions), rename, change owner kinds and statuses.
        Plans missing from the file are left alone and reported. ``progress(done, total)``
        hears each plan as it is applied (a console showing a long load move); a sync
        that lost a race to another writer runs again whole, and reports from 1 again."""
        check_instance(catalog, Catalog, "catalog")
        check_reason(reason)
        defined: list[str] = []
        changed: list[str] = []
        total = len(catalog.plans)
        with self._rt.transaction(None) as tx:
            stored = {p.key: p for p in tx.uow.plans.list()}
            for done, plan in enumerate(catalog.plans, start=1):
                current = stored.get(plan.key)
                if current is None:
                    self.define(plan, actor=actor, reason=reason)
                    defined.append(plan.key)
                    if progress is not None:
                        progress(done, total)
                    continue
                after = self._revise(as_actor(actor), plan.key, reason, _terms(plan))
                after = self.rename(plan.key, plan.name, actor=actor, reason=reason)
                after = self.set_owner_kinds(plan.key, plan.owner_kinds, actor=actor, reason=reason)
                after = self.set_status(plan.key, plan.status, actor=actor, reason=reason)
                if after.revision != current.revision:
                    changed.append(plan.key)
                if progress is not None:
                    progress(done, total)
            listed = {p.key for p in catalog.plans}
            untouched = tuple(sorted(k for k in stored if k not in listed))
        return CatalogSync(tuple(defined), tuple(changed), untouched)

    def get(self, key: str, version: int | None = None) -> Plan:
        """The plan at ``version`` (default: the latest); `UnknownPlan` if there is none."""
        key, version = _key(key), check_version(version)
        with self._rt.read(None) as uow:
            return uow.plans.get(key, version)

    def list(self) -> Sequence[Plan]:
        """The latest version of every plan."""
        with self._rt.read(None) as uow:
            return uow.plans.list()

    def versions(self, key: str) -> Sequence[Plan]:
        """Every version of ``key``, oldest first."""
        key = _key(key)
        with self._rt.read(None) as uow:
            return uow.plans.versions(key)
