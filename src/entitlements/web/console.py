"""The staff console: find owners (by id, or by the name and e-mail the host knows them
by), work the queues, see everything the library knows about an owner, and act through
the library's use cases as the authenticated staff member.

Every page and every action passes the actor the host's authenticator returned, so the
library's authorizer decides — lists included — and its audit trail records who did what
and why. A refused or invalid action re-shows the page it returns to (the owner's, or
the queue it was taken from) with the library's own message at the top.
"""

from __future__ import annotations

import inspect
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import attrs
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from entitlements.domain.actor import Actor
from entitlements.domain.contracts.contract import ContractStatus, SignerSpec
from entitlements.domain.owner import Owner
from entitlements.domain.subscription import Subscription, SubscriptionStatus
from entitlements.domain.usage import OverQuotaPolicy
from entitlements.errors import EntitlementsError, InvalidInput, InvoiceNotFound, NotFound
from entitlements.service.entitlements import Entitlements
from entitlements.web.auth import Authenticator, authenticate
from entitlements.web.csrf import FIELD
from entitlements.web.forms import Fields
from entitlements.web.lists import Filters, OwnerLists, Row, as_csv, pending_instant
from entitlements.web.pages import Pages, status_for
from entitlements.web.settings import Settings

__all__ = ["Console"]

MAX_SIGNER_ROWS = 5
SHOWN = 50
"""Contracts and audit events the owner page shows (the newest audit events first)."""


@attrs.frozen
class Links:
    """Signing links made by an action: shown on the answer to that post, and never again."""

    owner: Owner
    contract_id: str
    title: str
    links: tuple[tuple[str, str], ...]


Action = Callable[[Entitlements, Owner, Actor, Fields], "Links | str"]


def _policy(fields: Fields) -> OverQuotaPolicy:
    return OverQuotaPolicy.ALLOW if fields.checked("allow_over_quota") else OverQuotaPolicy.REFUSE


def _start_trial(ents: Entitlements, owner: Owner, actor: Actor, f: Fields) -> str:
    ents.subscriptions.start_trial(
        owner,
        f.required("plan", "choose a plan"),
        actor=actor,
        trial_days=f.whole("trial_days"),
        seats=f.whole("seats", minimum=1),
        reason=f.optional("reason"),
    )
    return "Trial started."


def _change_plan(ents: Entitlements, owner: Owner, actor: Actor, f: Fields) -> str:
    change = ents.subscriptions.change_plan(
        owner,
        f.required("plan", "choose a plan"),
        actor=actor,
        version=f.whole("version", minimum=1),
        reason=f.optional("reason"),
        if_over_quota=_policy(f),
    )
    return "Plan changed." + _over_quota_note(change.over_quota)


def _change_seats(ents: Entitlements, owner: Owner, actor: Actor, f: Fields) -> str:
    seats = f.whole("seats", minimum=0)
    if seats is None:
        raise InvalidInput("seats", "enter the number of seats")
    change = ents.subscriptions.change_seats(
        owner, seats, actor=actor, reason=f.optional("reason"), if_over_quota=_policy(f)
    )
    return "Seats changed." + _over_quota_note(change.over_quota)


def _over_quota_note(over: tuple[Any, ...]) -> str:
    if not over:
        return ""
    listed = ", ".join(f"{o.metric} ({o.used} used, limit {o.limit})" for o in over)
    return f" Now over quota: {listed}."


def _suspend(ents: Entitlements, owner: Owner, actor: Actor, f: Fields) -> str:
    ents.subscriptions.suspend(owner, actor=actor, reason=f.optional("reason"))
    return "Subscription suspended."


def _resume(ents: Entitlements, owner: Owner, actor: Actor, f: Fields) -> str:
    ents.subscriptions.resume(owner, actor=actor, reason=f.optional("reason"))
    return "Subscription resumed."


def _cancel(ents: Entitlements, owner: Owner, actor: Actor, f: Fields) -> str:
    at_end = f.text("when") == "period_end"
    ents.subscriptions.cancel(owner, actor=actor, at_period_end=at_end, reason=f.optional("reason"))
    return "Cancellation scheduled for the period end." if at_end else "Subscription canceled."


def _undo_cancel(ents: Entitlements, owner: Owner, actor: Actor, f: Fields) -> str:
    ents.subscriptions.undo_cancel(owner, actor=actor, reason=f.optional("reason"))
    return "Scheduled cancellation undone."


def _schedule(ents: Entitlements, owner: Owner, actor: Actor, f: Fields) -> str:
    at = f.day_start("at") if f.text("when") == "date" else None
    pending = ents.subscriptions.schedule_change(
        owner,
        actor=actor,
        plan=f.optional("plan"),
        seats=f.whole("seats", minimum=0),
        at=at,
        reason=f.optional("reason"),
        replace=f.checked("replace"),
        if_over_quota=_policy(f),
    )
    if pending is None:
        return "Nothing is pending: that is what will be in force anyway."
    return f"Scheduled {pending.describe()}."


def _cancel_pending(ents: Entitlements, owner: Owner, actor: Actor, f: Fields) -> str:
    ents.subscriptions.cancel_pending_change(owner, actor=actor, reason=f.optional("reason"))
    return "Pending change canceled; nothing in force changed."


def _pause(ents: Entitlements, owner: Owner, actor: Actor, f: Fields) -> str:
    paused = ents.subscriptions.pause(
        owner,
        actor=actor,
        at=f.day_start("at"),
        resume_at=f.day_start("resume_at"),
        restart_period=f.checked("restart_period"),
        reason=f.optional("reason"),
    )
    return "Subscription paused." if paused.pause is not None else "Pause scheduled."


def _unpause(ents: Entitlements, owner: Owner, actor: Actor, f: Fields) -> str:
    ents.subscriptions.unpause(
        owner, actor=actor, at=f.day_start("at"), reason=f.optional("reason")
    )
    return "Pause ended." if f.day_start("at") is None else "Pause end set."


def _set_override(ents: Entitlements, owner: Owner, actor: Actor, f: Fields) -> str:
    key = f.required("key", "name the feature or limit")
    reason = f.text("reason")
    expires = f.date("expires_on")
    if f.text("kind") == "limit":
        value = None if f.checked("unlimited") else f.whole("value", minimum=0)
        if value is None and not f.checked("unlimited"):
            raise InvalidInput("value", "enter the limit, or tick unlimited")
        ents.overrides.set_limit(owner, key, value, actor=actor, reason=reason, expires_at=expires)
    else:
        ents.overrides.set_feature(
            owner,
            key,
            enabled=f.text("enabled") != "off",
            actor=actor,
            reason=reason,
            expires_at=expires,
        )
    return "Override set."


def _remove_override(ents: Entitlements, owner: Owner, actor: Actor, f: Fields) -> str:
    ents.overrides.remove(
        owner,
        f.text("kind"),
        f.required("key", "name the override"),
        actor=actor,
        reason=f.text("reason"),
    )
    return "Override removed."


def _accepted(function: Callable[..., Any], **optional: Any) -> dict[str, Any]:
    """The optional arguments ``function`` takes (and that were given): issuing gained
    pinned seats and the issuer's evidence in a later version of the library."""
    parameters = inspect.signature(function).parameters
    return {k: v for k, v in optional.items() if v is not None and k in parameters}


def _evidence(function: Callable[..., Any], f: Fields) -> dict[str, Any]:
    return _accepted(function, ip=f.ip, user_agent=f.user_agent)


def _signers(f: Fields) -> list[SignerSpec]:
    """The signer rows filled in, in order (all at once unless signed in order)."""
    specs = []
    for n in range(1, MAX_SIGNER_ROWS + 1):
        name, email = f.text(f"signer_name_{n}"), f.text(f"signer_email_{n}")
        if name or email:
            specs.append(SignerSpec(name, email, f.text(f"signer_role_{n}"), order=n))
    if not specs:
        raise InvalidInput("signers", "add at least one signer with a name and an email")
    if not f.checked("sequential"):
        specs = [attrs.evolve(s, order=1) for s in specs]
    return specs


def _send_links(
    ents: Entitlements, owner: Owner, actor: Actor, contract: Any, f: Fields
) -> dict[str, str]:
    """The signers' links for a contract the form just issued: sent now, or — the form
    was submitted twice and the first reply, with the links, never showed — sent again."""
    link_days = timedelta(days=f.whole("link_days", minimum=1) or 7)
    if contract.status is ContractStatus.CREATED:
        return ents.contracts.send(
            owner,
            contract.id,
            actor=actor,
            link_valid_for=link_days,
            **_evidence(ents.contracts.send, f),
        )
    if contract.status is ContractStatus.SENT:
        return {
            signer.id: ents.contracts.resend(
                owner,
                contract.id,
                signer.id,
                actor=actor,
                link_valid_for=link_days,
                **_evidence(ents.contracts.resend, f),
            )
            for signer in contract.signers
        }
    raise InvalidInput(
        "request",
        f"this form was sent already: contract {contract.title!r} is {contract.status}; "
        "resend a signer's link from the contract's row",
    )


def _issue(ents: Entitlements, owner: Owner, actor: Actor, f: Fields) -> Links:
    specs = _signers(f)
    valid_days = f.whole("valid_days", minimum=1) or 30
    with ents.atomic(owner.tenant):
        contract = ents.contracts.issue(
            owner,
            key=f.optional("request"),
            title=f.text("title"),
            body=f.text("body"),
            signers=specs,
            actor=actor,
            plan_key=f.optional("plan"),
            term=f.optional("term"),
            amount=f.optional("amount"),
            currency=f.optional("currency"),
            sequential=f.checked("sequential"),
            valid_for=timedelta(days=valid_days),
            **_accepted(ents.contracts.issue, seats=f.whole("seats", minimum=1)),
            **_evidence(ents.contracts.issue, f),
        )
        tokens = _send_links(ents, owner, actor, contract, f)
    return Links(owner, contract.id, contract.title, tuple(sorted(tokens.items())))


def _resend(ents: Entitlements, owner: Owner, actor: Actor, f: Fields) -> Links:
    contract_id = f.required("contract", "choose a contract")
    signer_id = f.required("signer", "choose a signer")
    token = ents.contracts.resend(
        owner, contract_id, signer_id, actor=actor, **_evidence(ents.contracts.resend, f)
    )
    contract = ents.contracts.get(owner, contract_id)
    return Links(owner, contract_id, contract.title, ((signer_id, token),))


def _void(ents: Entitlements, owner: Owner, actor: Actor, f: Fields) -> str:
    ents.contracts.void(
        owner,
        f.required("contract", "choose a contract"),
        actor=actor,
        reason=f.text("reason"),
        **_evidence(ents.contracts.void, f),
    )
    return "Contract voided; its links no longer open."


def _convert(ents: Entitlements, owner: Owner, actor: Actor, f: Fields) -> str:
    seats = f.whole("seats", minimum=1)
    extra: dict[str, Any] = {} if seats is None else {"seats": seats}
    extra.update(_evidence(ents.contracts.convert, f))
    converted = ents.contracts.convert(
        owner, f.required("contract", "choose a contract"), actor=actor, **extra
    )
    return f"Converted: {converted.plan_key} v{converted.plan_version}, {converted.status.value}."


def _settle(ents: Entitlements, owner: Owner, actor: Actor, f: Fields) -> str:
    ents.subscriptions.settle(owner, actor=actor, reason=f.optional("reason"))
    return f"{owner}: marked settled."


def _retry_command(ents: Entitlements, owner: Owner, actor: Actor, f: Fields) -> str:
    command = ents.billing.retry(owner, f.required("command", "choose a command"), actor=actor)
    status = "not sent" if command is None else command.status.value
    return f"{owner}: command sent again ({status})."


def _retry_notification(ents: Entitlements, owner: Owner, actor: Actor, f: Fields) -> str:
    notification_id = f.required("notification", "choose a notification")
    again = ents.notifications.retry(notification_id, tenant=owner.tenant, actor=actor)
    return f"{owner}: notification {again.kind.value} is back in line."


def _mark_invoice_paid(ents: Entitlements, owner: Owner, actor: Actor, f: Fields) -> str:
    invoice_id = f.required("invoice", "choose an invoice")
    invoice = ents.invoices.get(invoice_id, tenant=owner.tenant)
    if invoice.owner != owner:
        raise InvoiceNotFound(invoice_id)
    paid = ents.invoices.mark_paid(invoice_id, actor=actor, reference=f.optional("reference"))
    return f"{owner}: invoice {paid.number} marked paid."


ACTIONS: dict[str, Action] = {
    "settle": _settle,
    "retry-notification": _retry_notification,
    "mark-invoice-paid": _mark_invoice_paid,
    "retry-command": _retry_command,
    "start-trial": _start_trial,
    "change-plan": _change_plan,
    "change-seats": _change_seats,
    "suspend": _suspend,
    "resume": _resume,
    "cancel": _cancel,
    "undo-cancel": _undo_cancel,
    "schedule-change": _schedule,
    "cancel-pending": _cancel_pending,
    "pause": _pause,
    "unpause": _unpause,
    "set-override": _set_override,
    "remove-override": _remove_override,
    "issue-contract": _issue,
    "resend": _resend,
    "void": _void,
    "convert": _convert,
}


def _usage(ents: Entitlements, owner: Owner, snapshot: Any) -> list[dict[str, Any]]:
    usage = []
    for name, limit in sorted(snapshot.limits.items()):
        try:
            used: int | None = ents.usage.total(owner, name)
        except EntitlementsError:
            used = None
        usage.append({"name": name, "limit": limit, "used": used})
    return usage


def _person(people: dict[str, Any], commitment: str) -> str:
    return str((people.get(commitment) or {}).get("value") or "(erased)")


def _contracts(ents: Entitlements, owner: Owner) -> list[dict[str, Any]]:
    contracts = []
    for contract in reversed(ents.contracts.list(owner, limit=SHOWN)):
        people = ents.contracts.evidence(owner, contract.id)["personal_data"]
        signers = [
            {"signer": s, "name": _person(people, s.name), "email": _person(people, s.email)}
            for s in contract.signers
        ]
        events = ents.contracts.events(owner, contract.id)
        contracts.append({"contract": contract, "signers": signers, "events": events})
    return contracts


def _converted(history: Sequence[Subscription]) -> set[str]:
    """Contracts a subscription was already converted from: "Convert" is not offered
    for them again."""
    found = {str(s.metadata.get("contract_id")) for s in history if s.metadata.get("contract_id")}
    return found | {s.contract.contract_id for s in history if s.contract is not None}


def _draft(ents: Entitlements, owner: Owner, subscription: Subscription | None) -> Any:
    """This period's invoice so far, for a subscription billed by period."""
    if subscription is None or subscription.current_period is None:
        return None
    try:
        return ents.invoices.draft(owner)
    except EntitlementsError:
        return None


def _owner_page(ents: Entitlements, owner: Owner, actor: Actor) -> dict[str, Any]:
    """Everything the owner page shows, read in the request's worker thread."""
    subscription = ents.subscriptions.find(owner, actor=actor)
    history = ents.subscriptions.history(owner, actor=actor)
    snapshot = ents.snapshot(owner)
    return {
        "owner": owner,
        "subscription": subscription,
        "history": history,
        "snapshot": snapshot,
        "decisions": snapshot.explain_all(),
        "overrides": ents.overrides.list(owner),
        "usage": _usage(ents, owner, snapshot),
        "seats": ents.seats.list(owner),
        "contracts": _contracts(ents, owner),
        "converted": _converted(history),
        "audit": ents.audit.for_owner(owner, limit=SHOWN, newest_first=True),
        "notifications": ents.notifications.list(owner, limit=20),
        "failed_notifications": ents.notifications.list(owner, failed=True, limit=50),
        "invoices": ents.invoices.list(owner),
        "draft": _draft(ents, owner, subscription),
        "plans": [p for p in ents.plans.list() if p.status.value == "active"],
    }


@attrs.frozen
class Column:
    label: str
    value: Callable[[Row], object]
    link: Callable[[Row], str | None] | None = None


def _day(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d")


def _minute(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M")


def _field(
    of: str, name: str, shown: Callable[[Any], object] = lambda v: v
) -> Callable[[Row], object]:
    """A column reading ``row.<of>.<name>`` (blank when the row has no ``of``)."""

    def value(row: Row) -> object:
        found = getattr(getattr(row, of), name, None)
        return None if found is None else shown(found)

    return value


def _plan(row: Row) -> str:
    s = row.subscription
    return "" if s is None else f"{s.plan_key} v{s.plan_version}"


def _status(row: Row) -> str:
    return "" if row.subscription is None else row.subscription.status.value


def _seats(row: Row) -> object:
    return None if row.subscription is None else row.subscription.seats


def _waiting(row: Row) -> int:
    assert row.contract is not None
    return sum(s.status.value not in ("signed", "declined") for s in row.contract.signers)


def _pending_words(row: Row) -> str:
    s = row.subscription
    if s is None:
        return ""
    if s.pending_change is not None:
        return s.pending_change.describe()
    return "" if s.pause is None else s.pause.describe()


def _pending_at(row: Row) -> datetime | None:
    return None if row.subscription is None else pending_instant(row.subscription)


OWNER = [
    Column("Name", lambda r: r.card.name, lambda r: r.card.url),
    Column("Email", lambda r: r.card.email),
    Column("Tenant", lambda r: r.owner.tenant),
]
SUBSCRIPTION = [Column("Plan", _plan), Column("Status", _status), Column("Seats", _seats)]


@attrs.frozen
class Queue:
    title: str
    read: Callable[[OwnerLists, Actor, Filters], list[Row]]
    columns: tuple[Column, ...]
    actions: tuple[str, ...] = ()
    about: str = ""


QUEUES: dict[str, Queue] = {
    "past-due": Queue(
        "Past due",
        OwnerLists.past_due,
        (
            *OWNER,
            *SUBSCRIPTION,
            Column("Past due since", _field("subscription", "past_due_since", _day)),
        ),
        ("suspend", "settle"),
        "Owners whose payment failed or whose period ran out unpaid, longest first. "
        "Coordinate with the tenant, then suspend or mark the payment settled.",
    ),
    "trials": Queue(
        "Trials ending",
        OwnerLists.trials_ending,
        (
            *OWNER,
            *SUBSCRIPTION,
            Column("Trial ends", _field("subscription", "trial_ends_at", _minute)),
        ),
        about="Trials that end within the number of days asked for, soonest first.",
    ),
    "signatures": Queue(
        "Awaiting signature",
        OwnerLists.awaiting_signature,
        (
            *OWNER,
            Column("Contract", _field("contract", "title")),
            Column("Contract status", _field("contract", "status", lambda v: v.value)),
            Column("Signers waiting", _waiting),
            Column("Expires", _field("contract", "expires_at", _minute)),
        ),
        about="Contracts sent and not signed by everyone yet, nearest deadline first.",
    ),
    "later": Queue(
        "Pending changes and pauses due",
        OwnerLists.changes_due,
        (
            *OWNER,
            *SUBSCRIPTION,
            Column("Pending", _pending_words),
            Column("When", lambda r: _minute(_pending_at(r))),
        ),
        ("cancel-pending",),
        "Scheduled changes, pauses and cancellations at period end that take effect within "
        "the number of days asked for, and pauses that end then, soonest first. Cancel one "
        "here; nothing in force changes.",
    ),
    "provider": Queue(
        "Failed provider commands",
        OwnerLists.failed_commands,
        (
            *OWNER,
            Column("Command", _field("command", "kind", lambda v: v.value)),
            Column("Attempts", _field("command", "attempts")),
            Column("Last error", _field("command", "last_error")),
            Column("Created", _field("command", "created_at", _minute)),
        ),
        ("retry-command",),
        "Commands the payment provider refused until they gave up retrying. Fix the cause "
        "at the provider, then send them again.",
    ),
}
OWNER_COLUMNS = (
    *OWNER,
    *SUBSCRIPTION,
    Column("Updated", _field("subscription", "updated_at", _minute)),
)


def _applies(action: str, row: Row) -> bool:
    """Whether a queue's action still applies to a row (else it is not offered)."""
    status = _status(row)
    if action in ("suspend", "settle"):
        return status == "past_due"
    if action == "cancel-pending":
        return row.subscription is not None and row.subscription.pending_change is not None
    return action == "retry-command" and row.command is not None


StaffPage = Callable[[Request, Actor], Awaitable[Response]]
"""A console page: the request and the staff member it was authenticated as."""


@attrs.frozen
class Console:
    """The staff console's pages over ``ents``, for the staff ``authenticator`` admits."""

    ents: Entitlements
    pages: Pages
    authenticator: Authenticator
    settings: Settings
    lists: OwnerLists
    login_url: str | None = None

    def routes(self) -> list[Route]:
        pages: list[tuple[str, StaffPage, str, str]] = [
            ("/", self.owners, "GET", "owners"),
            ("/owner", self.owner, "GET", "owner"),
            ("/owner/preview", self.preview, "GET", "preview"),
            ("/owner/{action}", self.act, "POST", "act"),
            ("/queues/{queue}", self.queue, "GET", "queue"),
            ("/plans", self.plans, "GET", "plans"),
            ("/migrations", self.migrations, "GET", "migrations"),
            ("/migrations/{id}", self.migration, "GET", "migration"),
            ("/migrations/{id}/{step}", self.migration_step, "POST", "migration_step"),
            ("/invoice", self.invoice, "GET", "invoice"),
        ]
        return [
            Route(path, self._staff_only(page), methods=[method], name=name)
            for path, page, method, name in pages
        ]

    def _staff_only(self, page: StaffPage) -> Callable[[Request], Awaitable[Response]]:
        """Every console page is for staff: one gate authenticates the request and answers
        the refusal page, so a page only ever runs with an actor."""

        async def gated(request: Request) -> Response:
            actor = await self._actor(request)
            if isinstance(actor, Response):
                return actor
            return await page(request, actor)

        return gated

    # -- plumbing ------------------------------------------------------------------------

    async def _actor(self, request: Request) -> Actor | Response:
        actor = await authenticate(self.authenticator, request)
        if actor is None:
            return self.pages.render(
                request,
                "console/refused.html",
                {"actor": None, "login_url": self.login_url, "queues": QUEUES},
                bound_to="anonymous",
                status=401,
            )
        return actor

    def _render(
        self,
        request: Request,
        actor: Actor,
        template: str,
        context: dict[str, Any],
        status: int = 200,
    ) -> Response:
        return self.pages.render(
            request,
            template,
            {"actor": actor, "queues": QUEUES, **context},
            bound_to=f"staff:{actor}",
            status=status,
        )

    def _error(self, request: Request, actor: Actor, error: EntitlementsError) -> Response:
        return self._render(
            request, actor, "console/error.html", {"error": error}, status_for(error)
        )

    async def _form(self, request: Request, actor: Actor) -> FormData | Response:
        """A staff post's form, or the refusal page when it does not carry the actor's
        CSRF token (an unreadable body counts as an empty form)."""
        try:
            form = await request.form()
        except Exception:
            form = FormData()
        if not self.pages.csrf.valid(request, form.get(FIELD), f"staff:{actor}"):
            return self._render(request, actor, "console/forged.html", {}, 403)
        return form

    @staticmethod
    def _owner_of(ref: str) -> Owner:
        return Owner.parse(ref)

    def owner_url(self, request: Request, owner: Owner, **extra: str) -> str:
        query = urlencode({"ref": str(owner), **extra})
        return f"{self.pages.path(request, 'owner')}?{query}"

    def _done(self, request: Request) -> str:
        return self.pages.unseal(
            request.query_params.get("done", "")[:500], request.query_params.get("seal", "")
        )

    def _table(
        self, request: Request, columns: Sequence[Column], rows: list[Row]
    ) -> list[dict[str, Any]]:
        """Rows as the page shows them: the owner (linking to its console page), then
        each column's text and link."""
        return [
            {
                "row": row,
                "owner_url": self.owner_url(request, row.owner),
                "cells": [
                    ("" if (v := c.value(row)) is None else str(v), c.link and c.link(row))
                    for c in columns
                ],
            }
            for row in rows
        ]

    async def _page(
        self,
        request: Request,
        actor: Actor,
        template: str,
        read: Callable[[], dict[str, Any]],
        error: EntitlementsError | None = None,
    ) -> Response:
        """A page whose data ``read`` gathers off the event loop: the error page when the
        read is refused; else ``template`` over that data, with the status of ``error``
        when the page is shown again after a refused action."""
        try:
            context = await run_in_threadpool(read)
        except EntitlementsError as failure:
            return self._error(request, actor, failure)
        status = 200 if error is None else status_for(error)
        return self._render(request, actor, template, context, status)

    def _outcome(self, request: Request, error: EntitlementsError | None) -> dict[str, Any]:
        """What the last action came to, for the page it returns to: its sealed result,
        or the error it was refused with."""
        return {"done": self._done(request) if error is None else "", "error": error}

    async def _csv(
        self,
        request: Request,
        actor: Actor,
        name: str,
        columns: Sequence[Column],
        read: Callable[[], list[Row]],
    ) -> Response:
        """A list as a CSV download, its rows read off the event loop."""
        try:
            rows = await run_in_threadpool(read)
        except EntitlementsError as error:
            return self._error(request, actor, error)
        text = as_csv(
            ["Owner", *(c.label for c in columns)],
            ([str(r.owner), *(c.value(r) for c in columns)] for r in rows),
        )
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{name}.csv"'},
        )

    # -- pages ---------------------------------------------------------------------------

    async def owners(self, request: Request, actor: Actor) -> Response:
        filters = Filters.of(request.query_params)
        if request.query_params.get("format") == "csv":
            return await self._csv(
                request, actor, "owners", OWNER_COLUMNS, lambda: self.lists.owners(actor, filters)
            )

        def read() -> dict[str, Any]:
            page, after = self.lists.owners_page(actor, filters)
            return {
                "filters": filters,
                "columns": OWNER_COLUMNS,
                "table": self._table(request, OWNER_COLUMNS, page),
                "counts": self.lists.counts(actor),
                "statuses": [s.value for s in SubscriptionStatus],
                "plans": sorted({p.key for p in self.ents.plans.list()}),
                "page_query": lambda **changes: urlencode(filters.query(**changes)),
                "next": after,
            }

        return await self._page(request, actor, "console/owners.html", read)

    async def queue(self, request: Request, actor: Actor) -> Response:
        return await self._queue_response(request, actor, request.path_params["queue"])

    async def _queue_response(
        self,
        request: Request,
        actor: Actor,
        name: str,
        *,
        error: EntitlementsError | None = None,
    ) -> Response:
        queue = QUEUES.get(name)
        if queue is None:
            return self._error(request, actor, NotFound(f"there is no queue {name!r}"))
        filters = Filters.of(request.query_params)
        if request.query_params.get("format") == "csv" and error is None:
            return await self._csv(
                request, actor, name, queue.columns, lambda: queue.read(self.lists, actor, filters)
            )

        def read() -> dict[str, Any]:
            rows = queue.read(self.lists, actor, filters)
            return {
                "name": name,
                "queue": queue,
                "filters": filters,
                "columns": queue.columns,
                "table": self._table(request, queue.columns, rows),
                "applies": _applies,
                "csv_query": urlencode({**filters.query(), "format": "csv"}),
                **self._outcome(request, error),
            }

        return await self._page(request, actor, "console/queue.html", read, error)

    async def owner(self, request: Request, actor: Actor) -> Response:
        return await self._owner_response(request, actor, request.query_params.get("ref", ""))

    async def _owner_response(
        self,
        request: Request,
        actor: Actor,
        ref: str,
        *,
        error: EntitlementsError | None = None,
        form: str | None = None,
        values: dict[str, str] | None = None,
    ) -> Response:
        def read() -> dict[str, Any]:
            owner = self._owner_of(ref)
            return {
                **_owner_page(self.ents, owner, actor),
                "card": self.lists.card(owner),
                "ref": str(owner),
                "request_key": secrets.token_urlsafe(16),
                "error_form": form,
                "values": values or {},
                "signer_rows": range(1, MAX_SIGNER_ROWS + 1),
                **self._outcome(request, error),
            }

        return await self._page(request, actor, "console/owner.html", read, error)

    async def preview(self, request: Request, actor: Actor) -> Response:
        ref = request.query_params.get("ref", "")
        plan = request.query_params.get("plan", "")
        version_text = request.query_params.get("version", "")
        try:
            owner = self._owner_of(ref)
            version = int(version_text) if version_text.isdigit() else None
            if not plan:
                raise InvalidInput("plan", "choose a plan")
            preview = await run_in_threadpool(
                lambda: self.ents.subscriptions.preview_change(
                    owner, plan, version=version, actor=actor
                )
            )
        except EntitlementsError as error:
            return await self._owner_response(request, actor, ref, error=error, form="change-plan")
        return self._render(
            request,
            actor,
            "console/preview.html",
            {"owner": owner, "ref": ref, "plan": plan, "version": version, "preview": preview},
        )

    async def invoice(self, request: Request, actor: Actor) -> Response:
        """One invoice, laid out to print."""
        ref = request.query_params.get("ref", "")
        invoice_id = request.query_params.get("id", "")
        try:
            owner = self._owner_of(ref)
            self.ents.subscriptions.find(owner, actor=actor)  # may the actor read the owner?
            invoice = await run_in_threadpool(
                lambda: self.ents.invoices.get(invoice_id, tenant=owner.tenant)
            )
            if invoice.owner != owner:
                raise InvoiceNotFound(invoice_id)
        except EntitlementsError as error:
            return self._error(request, actor, error)
        return self._render(
            request,
            actor,
            "console/invoice.html",
            {
                "invoice": invoice,
                "ref": ref,
                "units": [f"{line.unit_amount.normalize():f}" for line in invoice.lines],
            },
        )

    async def plans(self, request: Request, actor: Actor) -> Response:

        def read() -> dict[str, Any]:
            on: Counter[tuple[str, int]] = Counter(
                (sub.plan_key, sub.plan_version)
                for sub in self.lists.subscriptions(actor, Filters())
                if not sub.is_terminal
            )
            catalog = [
                {
                    "plan": plan,
                    "versions": [
                        {"plan": v, "owners": on[(v.key, v.version)]}
                        for v in self.ents.plans.versions(plan.key)
                    ],
                }
                for plan in self.ents.plans.list()
            ]
            return {"catalog": catalog}

        return await self._page(request, actor, "console/plans.html", read)

    # -- plan-version migrations -----------------------------------------------------------

    async def migrations(self, request: Request, actor: Actor) -> Response:

        def read() -> dict[str, Any]:
            tenants = list(self.ents.runtime.store.tenants()) or [None]
            found = [m for t in tenants for m in self.ents.migrations.list(tenant=t)]
            found.sort(key=lambda p: p.migration.created_at, reverse=True)
            return {"migrations": found}

        return await self._page(request, actor, "console/migrations.html", read)

    async def migration(self, request: Request, actor: Actor) -> Response:
        return await self._migration_response(request, actor, request.path_params["id"])

    async def _migration_response(
        self,
        request: Request,
        actor: Actor,
        migration_id: str,
        *,
        error: EntitlementsError | None = None,
    ) -> Response:
        tenant = _tenant_of(request)

        def read() -> dict[str, Any]:
            progress = self.ents.migrations.get(migration_id, tenant=tenant)
            preview = self.ents.migrations.preview(migration_id, tenant=tenant)
            return {
                "progress": progress,
                "preview": preview,
                "shown": preview.items[:50],
                **self._outcome(request, error),
            }

        return await self._page(request, actor, "console/migration.html", read, error)

    async def migration_step(self, request: Request, actor: Actor) -> Response:
        """Run one batch, or cancel: the two things staff do to a migration here."""
        form = await self._form(request, actor)
        if isinstance(form, Response):
            return form
        migration_id, step = request.path_params["id"], request.path_params["step"]
        fields = Fields(form, self.settings.client_ip(request), None)
        try:
            result = await run_in_threadpool(
                self._migration_step, migration_id, step, actor, fields, _tenant_of(request)
            )
        except EntitlementsError as error:
            return await self._migration_response(request, actor, migration_id, error=error)
        sealed = {"done": result, "seal": self.pages.seal(result)}
        back = self.pages.path(request, "migration", id=migration_id)
        tenant = _tenant_of(request)
        where = {} if tenant is None else {"tenant": tenant}
        return RedirectResponse(f"{back}?{urlencode({**where, **sealed})}", status_code=303)

    def _migration_step(
        self, migration_id: str, step: str, actor: Actor, f: Fields, tenant: str | None
    ) -> str:
        if step == "run":
            batch = f.whole("batch", minimum=1) or 100
            ran = self.ents.migrations.run(migration_id, batch=batch, actor=actor, tenant=tenant)
            return (
                f"Handled {ran.handled:,} items; {ran.pending:,} pending"
                f" ({ran.migration.status.value})."
            )
        if step == "cancel":
            canceled = self.ents.migrations.cancel(
                migration_id, actor=actor, reason=f.optional("reason"), tenant=tenant
            )
            count = canceled.counts["canceled"]
            return f"Canceled: {count:,} pending or scheduled items will not move."
        raise InvalidInput("step", "is not a migration step (run, cancel)", step)

    # -- actions -------------------------------------------------------------------------

    async def act(self, request: Request, actor: Actor) -> Response:
        form = await self._form(request, actor)
        if isinstance(form, Response):
            return form
        name = request.path_params["action"]
        agent = request.headers.get("user-agent")
        fields = Fields(form, self.settings.client_ip(request), agent and agent[:1000])
        action = ACTIONS.get(name)
        if action is None:
            return self._error(
                request, actor, InvalidInput("action", "is not a console action", name)
            )
        try:
            owner = self._owner_of(fields.text("owner"))
            result = await run_in_threadpool(action, self.ents, owner, actor, fields)
        except EntitlementsError as error:
            return await self._refused(request, actor, name, fields, error)
        if isinstance(result, Links):
            return self._render(
                request,
                actor,
                "console/links.html",
                {
                    "result": result,
                    "ref": str(owner),
                    "links": [(s, self.signing_url(request, t)) for s, t in result.links],
                },
            )
        return RedirectResponse(self._after(request, owner, fields, result), status_code=303)

    def _after(self, request: Request, owner: Owner, fields: Fields, result: str) -> str:
        """Where an action returns: the queue it was taken from, or the owner's page."""
        sealed = {"done": result, "seal": self.pages.seal(result)}
        back = fields.text("back")
        if back in QUEUES:
            return f"{self.pages.path(request, 'queue', queue=back)}?{urlencode(sealed)}"
        return self.owner_url(request, owner, **sealed)

    async def _refused(
        self, request: Request, actor: Actor, name: str, fields: Fields, error: EntitlementsError
    ) -> Response:
        """The page the action returns to, with the error at its top."""
        back = fields.text("back")
        if back in QUEUES:
            return await self._queue_response(request, actor, back, error=error)
        return await self._owner_response(
            request, actor, fields.text("owner"), error=error, form=name, values=fields.values()
        )

    def signing_url(self, request: Request, token: str) -> str:
        path = self.pages.route_path("sign", token=token)
        return self.settings.url(request, path, signing=True)


def _tenant_of(request: Request) -> str | None:
    """A migration's tenant, carried in its pages' query string (none: the default one)."""
    return request.query_params.get("tenant") or None
