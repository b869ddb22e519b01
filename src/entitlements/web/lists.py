"""The console's lists: owners found by id, name or e-mail across tenants, and the queues
staff work from (past due, trials ending, contracts awaiting signature, provider commands
that gave up). Every list reads as the signed-in actor: an owner the authorizer does not
let the actor read is not listed and not counted.

Names and e-mail addresses are the host's, not the library's: the host passes how an
owner is shown (`OwnerCard`: a name, an e-mail, a link to its own admin page) and,
optionally, how to find owners by such words (``find_owners``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from entitlements.domain.actor import Actor
from entitlements.domain.contracts.contract import Contract
from entitlements.domain.owner import Owner
from entitlements.domain.page import decode_cursor, encode_cursor
from entitlements.domain.provider_commands import ProviderCommand
from entitlements.domain.subscription import Subscription, SubscriptionStatus
from entitlements.errors import EntitlementsError, InvalidInput
from entitlements.service.authorization import AllowAll
from entitlements.service.due import status_counts
from entitlements.service.entitlements import Entitlements

__all__ = ["PAGE_SIZE", "Filters", "OwnerCard", "OwnerLists", "Row", "as_csv", "pending_instant"]

log = logging.getLogger(__name__)

PAGE_SIZE = 50
PER_TENANT = 1000
"""Owners read per tenant and list: lists beyond it are cut (and say so)."""


@attrs.frozen
class OwnerCard:
    """How the host shows an owner: its name, e-mail and its own admin page."""

    name: str | None = None
    """The owner's name (a company, a person)."""
    email: str | None = None
    """Where staff reach the owner."""
    url: str | None = None
    """The owner's page in the host's own admin."""


OwnerCards = Callable[[Owner], OwnerCard | None]
FindOwners = Callable[[str], Iterable[Owner]]


@attrs.frozen
class Row:
    """One line of a list: the owner as the host shows it, its subscription, and what
    the line is about (a contract, a provider command) when it is a queue's."""

    owner: Owner
    card: OwnerCard
    subscription: Subscription | None = None
    contract: Contract | None = None
    command: ProviderCommand | None = None


def _whole(params: Mapping[str, str], name: str, default: int, top: int) -> int:
    text = params.get(name, "")
    return min(int(text), top) if text.isdigit() and int(text) >= 1 else default


@attrs.frozen
class Filters:
    """What a list is narrowed to, read from the query string."""

    text: str = ""
    status: str = ""
    plan: str = ""
    tenant: str = ""
    after: str = ""
    """Where the owner list's page starts: the cursor the page before it handed out."""
    days: int = 7

    @classmethod
    def of(cls, params: Mapping[str, str]) -> Filters:
        return cls(
            params.get("q", "").strip()[:255],
            params.get("status", "")[:32],
            params.get("plan", "").strip()[:128],
            params.get("tenant", "").strip()[:255],
            params.get("after", "")[:2000],
            _whole(params, "days", 7, 366),
        )

    def statuses(self) -> list[str] | None:
        if not self.status:
            return None
        if self.status not in {s.value for s in SubscriptionStatus}:
            raise InvalidInput("status", "is not a subscription status", self.status)
        return [self.status]

    def on_plan(self, subscription: Subscription) -> bool:
        """Whether ``subscription`` passes the plan filter (every list narrows by it after
        the search, which does not know plans)."""
        return not self.plan or subscription.plan_key == self.plan

    def query(self, **changes: Any) -> dict[str, str]:
        """The query string that shows these filters (with ``changes``)."""
        values = {
            "q": self.text,
            "status": self.status,
            "plan": self.plan,
            "tenant": self.tenant,
            "after": self.after,
            "days": str(self.days),
            **{k: str(v) for k, v in changes.items()},
        }
        return {k: v for k, v in values.items() if v and (k, v) not in {("days", "7")}}


@attrs.frozen
class OwnerLists:
    """The owner lists the console shows, with the host's cards and owner search."""

    ents: Entitlements
    _cards: OwnerCards | None = None
    _find: FindOwners | None = attrs.field(default=None, alias="find_owners")

    # -- the host's side -------------------------------------------------------------

    def card(self, owner: Owner) -> OwnerCard:
        """The host's card for ``owner`` (an empty one if the host has none or fails:
        a list must not break on one owner's display)."""
        if self._cards is None:
            return OwnerCard()
        try:
            found = self._cards(owner)
        except Exception:
            log.exception("owner_card failed for %s", owner)
            return OwnerCard()
        return found if isinstance(found, OwnerCard) else OwnerCard()

    def _found_by_host(self, text: str) -> list[Owner]:
        if self._find is None or not text:
            return []
        try:
            return [o for o in self._find(text) if isinstance(o, Owner)][:PER_TENANT]
        except Exception:
            log.exception("find_owners failed for %r", text)
            return []

    # -- reading ---------------------------------------------------------------------

    def _tenants(self, tenant: str) -> list[str | None]:
        if tenant:
            return [tenant]
        return list(self.ents.runtime.store.tenants()) or [None]

    def subscriptions(
        self, actor: Actor, filters: Filters, statuses: list[str] | None = None
    ) -> list[Subscription]:
        """Each readable owner's subscription across tenants (or in the one asked for),
        narrowed by text and plan."""
        found: list[Subscription] = []
        for tenant in self._tenants(filters.tenant):
            found += self.ents.subscriptions.search(
                filters.text or None,
                statuses=statuses,
                tenant=tenant,
                limit=PER_TENANT,
                actor=actor,
            )
        return [s for s in found if filters.on_plan(s)]

    def _by_host(self, actor: Actor, filters: Filters) -> list[Subscription]:
        found = []
        for owner in self._found_by_host(filters.text):
            if filters.tenant and owner.tenant != filters.tenant:
                continue
            try:
                subscription = self.ents.subscriptions.find(owner, actor=actor)
            except EntitlementsError:  # not readable: not listed
                continue
            if subscription is not None:
                found.append(subscription)
        return found

    def owners(self, actor: Actor, filters: Filters) -> list[Row]:
        """The whole owner list (the CSV export), page after page, in the pages' order;
        cut at `PER_TENANT` owners per tenant like the other lists."""
        rows, after = self.owners_page(actor, attrs.evolve(filters, after=""))
        cut = PER_TENANT * len(self._tenants(filters.tenant))
        while after is not None and len(rows) < cut:
            more, after = self.owners_page(actor, attrs.evolve(filters, after=after))
            rows += more
        return rows[:cut]

    def owners_page(self, actor: Actor, filters: Filters) -> tuple[list[Row], str | None]:
        """One page of the owner list and the cursor of the next (``None``: the last):
        found by id, external id or plan (the library; each tenant read a keyset page,
        newest subscription first) and, on the first page, by name and e-mail (the host's
        ``find_owners``)."""
        statuses = filters.statuses()
        found, after = self._searched_page(actor, filters, statuses)
        by_id = {s.owner: s for s in found}
        if not filters.after:
            for s in self._by_host(actor, filters):
                if (statuses is None or s.status.value in statuses) and filters.on_plan(s):
                    by_id.setdefault(s.owner, s)
        rows = [Row(s.owner, self.card(s.owner), s) for s in by_id.values()]
        return rows, (encode_cursor("console-owners", (json.dumps(after),)) if after else None)

    def _searched_page(
        self, actor: Actor, filters: Filters, statuses: list[str] | None
    ) -> tuple[list[Subscription], list[tuple[str | None, str]]]:
        """The library's part of an owner-list page: a keyset page of each tenant, and the
        tenants with more, each with its next cursor."""
        tenants = self._tenants(filters.tenant)
        each = max(10, PAGE_SIZE // len(tenants))
        found: list[Subscription] = []
        after: list[tuple[str | None, str]] = []
        for tenant, cursor in _tenant_cursors(filters.after, tenants):
            page = self.ents.subscriptions.search(
                filters.text or None,
                statuses=statuses,
                tenant=tenant,
                limit=each,
                actor=actor,
                cursor=cursor,
            )
            found += [s for s in page if filters.on_plan(s)]
            if page.next is not None:
                after.append((tenant, page.next))
        return found, after

    def counts(self, actor: Actor) -> Counter[str]:
        """Readable owners by status, for the front page. When every owner is readable
        (the authorizer is `AllowAll`), the store's counts, exact and at a cost that does
        not grow with owners; otherwise the readable owners listed (`PER_TENANT` of each
        tenant at most), as the other lists are."""
        runtime = self.ents.runtime
        if type(runtime.authorizer) is not AllowAll:
            return Counter(s.status.value for s in self.subscriptions(actor, Filters()))
        found: Counter[str] = Counter()
        for tenant in self._tenants(""):
            with runtime.read(tenant) as uow:
                found += status_counts(uow, runtime.read_now(tenant), runtime.policy)
        return found

    # -- queues ----------------------------------------------------------------------

    def past_due(self, actor: Actor, filters: Filters) -> list[Row]:
        """Past due now — by a failed payment, or by time alone since the last sweep."""
        found = self.subscriptions(actor, attrs.evolve(filters, text=""), ["past_due"])
        found.sort(key=lambda s: s.past_due_since or s.updated_at)
        return [Row(s.owner, self.card(s.owner), s) for s in found]

    def trials_ending(self, actor: Actor, filters: Filters) -> list[Row]:
        """Trials that end within ``filters.days`` days, soonest first."""
        until = self.ents.runtime.now() + timedelta(days=filters.days)
        found = [
            s
            for s in self.subscriptions(actor, attrs.evolve(filters, text=""), ["trialing"])
            if s.trial_ends_at is not None and s.trial_ends_at <= until
        ]
        found.sort(key=lambda s: s.trial_ends_at or until)
        return [Row(s.owner, self.card(s.owner), s) for s in found]

    def changes_due(self, actor: Actor, filters: Filters) -> list[Row]:
        """Pending changes (and pause ends) that take effect within ``filters.days``
        days, soonest first (issue #23's queue of what is about to change)."""
        until = self.ents.runtime.now() + timedelta(days=filters.days)
        found = []
        for s in self.subscriptions(actor, attrs.evolve(filters, text="")):
            at = pending_instant(s)
            if at is not None and at <= until:
                found.append((at, s))
        found.sort(key=lambda pair: pair[0])
        return [Row(s.owner, self.card(s.owner), s) for _, s in found]

    def awaiting_signature(self, actor: Actor, filters: Filters) -> list[Row]:
        """Contracts sent and not yet signed by everyone, nearest deadline first — those
        of owners with no subscription yet too."""
        rows = []
        for tenant in self._tenants(filters.tenant):
            for contract in self.ents.contracts.awaiting_signature(
                tenant, actor=actor, limit=PER_TENANT
            ):
                rows.append(Row(contract.owner, self.card(contract.owner), contract=contract))
        rows.sort(key=lambda r: _deadline(r.contract))
        return rows

    def failed_commands(self, actor: Actor, filters: Filters) -> list[Row]:
        """Provider commands that gave up retrying and need staff."""
        rows = []
        for s in self.subscriptions(actor, attrs.evolve(filters, text="")):
            failed = self.ents.billing.state(s.owner).failed
            card = self.card(s.owner)
            rows += [Row(s.owner, card, s, command=c) for c in failed]
        return rows


def _tenant_cursors(after: str, tenants: list[str | None]) -> list[tuple[str | None, str | None]]:
    """Where each tenant's part of the owner list resumes: every tenant from its start
    on the first page; after it, the tenants the cursor says have more."""
    if not after:
        return [(tenant, None) for tenant in tenants]
    decoded = decode_cursor(after, "console-owners", str)
    assert decoded is not None
    try:
        pairs = json.loads(decoded[0])
        resumed = [(tenant, cursor) for tenant, cursor in pairs]
    except (ValueError, TypeError):
        raise InvalidInput("after", "is not a cursor this list handed out", after) from None
    if not all(
        (t is None or isinstance(t, str)) and isinstance(c, str) and t in tenants
        for t, c in resumed
    ):
        raise InvalidInput("after", "is not a cursor this list handed out", after)
    return resumed


def pending_instant(subscription: Subscription) -> datetime | None:
    """When the subscription's pending change takes effect, or its pause ends."""
    if subscription.pending_change is not None:
        return subscription.pending_change.at
    return None if subscription.pause is None else subscription.pause.until


def _deadline(contract: Contract | None) -> datetime:
    assert contract is not None
    return contract.expires_at


def _cell(value: object) -> str:
    """A CSV cell a spreadsheet will not run: text starting like a formula is quoted."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def as_csv(header: Sequence[str], lines: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for line in lines:
        writer.writerow([_cell(v) for v in line])
    return out.getvalue()
