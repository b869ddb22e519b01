"""The staff console: find an owner, see everything the library knows about it, and act
through the library's use cases as the authenticated staff member.

Every action passes the actor the host's authenticator returned, so the library's
authorizer decides and its audit trail records who did what and why. A refused or invalid
action re-shows the page with the library's own message beside the form.
"""

from __future__ import annotations

import inspect
import secrets
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
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
from entitlements.domain.subscription import SubscriptionStatus
from entitlements.domain.usage import OverQuotaPolicy
from entitlements.errors import EntitlementsError, InvalidInput
from entitlements.service.entitlements import Entitlements
from entitlements.web.auth import Authenticator, authenticate
from entitlements.web.csrf import FIELD
from entitlements.web.forms import Fields
from entitlements.web.pages import Pages, status_for
from entitlements.web.settings import Settings

__all__ = ["Console"]

MAX_SIGNER_ROWS = 5


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
        trial_days=f.whole("trial_days", minimum=1),
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


def _issue(ents: Entitlements, owner: Owner, actor: Actor, f: Fields) -> Links:
    specs = []
    for n in range(1, MAX_SIGNER_ROWS + 1):
        name, email = f.text(f"signer_name_{n}"), f.text(f"signer_email_{n}")
        if name or email:
            specs.append(SignerSpec(name, email, f.text(f"signer_role_{n}"), order=n))
    if not specs:
        raise InvalidInput("signers", "add at least one signer with a name and an email")
    if not f.checked("sequential"):
        specs = [attrs.evolve(s, order=1) for s in specs]
    valid_days = f.whole("valid_days", minimum=1) or 30
    link_days = f.whole("link_days", minimum=1) or 7
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
        if contract.status is ContractStatus.CREATED:
            tokens = ents.contracts.send(
                owner,
                contract.id,
                actor=actor,
                link_valid_for=timedelta(days=link_days),
                **_evidence(ents.contracts.send, f),
            )
        elif contract.status is ContractStatus.SENT:
            # the form was submitted twice: the first reply, with the links, never showed
            tokens = {
                signer.id: ents.contracts.resend(
                    owner,
                    contract.id,
                    signer.id,
                    actor=actor,
                    link_valid_for=timedelta(days=link_days),
                    **_evidence(ents.contracts.resend, f),
                )
                for signer in contract.signers
            }
        else:
            raise InvalidInput(
                "request",
                f"this form was sent already: contract {contract.title!r} is {contract.status}; "
                "resend a signer's link from the contract's row",
            )
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


ACTIONS: dict[str, Action] = {
    "start-trial": _start_trial,
    "change-plan": _change_plan,
    "change-seats": _change_seats,
    "suspend": _suspend,
    "resume": _resume,
    "cancel": _cancel,
    "undo-cancel": _undo_cancel,
    "set-override": _set_override,
    "remove-override": _remove_override,
    "issue-contract": _issue,
    "resend": _resend,
    "void": _void,
    "convert": _convert,
}


def _owner_page(ents: Entitlements, owner: Owner, actor: Actor) -> dict[str, Any]:
    """Everything the owner page shows, read in the request's worker thread."""
    subscription = ents.subscriptions.find(owner, actor=actor)
    snapshot = ents.snapshot(owner)
    usage = []
    for name, limit in sorted(snapshot.limits.items()):
        try:
            used: int | None = ents.usage.total(owner, name)
        except EntitlementsError:
            used = None
        usage.append({"name": name, "limit": limit, "used": used})
    contracts = []
    for contract in reversed(list(ents.contracts.list(owner))):
        evidence = ents.contracts.evidence(owner, contract.id)
        people = evidence["personal_data"]
        contracts.append(
            {
                "contract": contract,
                "signers": [
                    {
                        "signer": s,
                        "name": (people.get(s.name) or {}).get("value") or "(erased)",
                        "email": (people.get(s.email) or {}).get("value") or "(erased)",
                    }
                    for s in contract.signers
                ],
                "events": ents.contracts.events(owner, contract.id),
            }
        )
    return {
        "owner": owner,
        "subscription": subscription,
        "history": ents.subscriptions.history(owner, actor=actor),
        "snapshot": snapshot,
        "decisions": snapshot.explain_all(),
        "overrides": ents.overrides.list(owner),
        "usage": usage,
        "seats": ents.seats.list(owner),
        "contracts": contracts,
        "audit": list(reversed(list(ents.audit.for_owner(owner))))[:50],
        "plans": [p for p in ents.plans.list() if p.status.value == "active"],
    }


class Console:
    def __init__(
        self,
        ents: Entitlements,
        pages: Pages,
        authenticator: Authenticator,
        settings: Settings,
    ) -> None:
        self.ents = ents
        self.pages = pages
        self.authenticator = authenticator
        self.settings = settings

    def routes(self) -> list[Route]:
        return [
            Route("/", self.owners, methods=["GET"], name="owners"),
            Route("/owner", self.owner, methods=["GET"], name="owner"),
            Route("/owner/preview", self.preview, methods=["GET"], name="preview"),
            Route("/owner/{action}", self.act, methods=["POST"], name="act"),
            Route("/plans", self.plans, methods=["GET"], name="plans"),
        ]

    # -- plumbing ------------------------------------------------------------------------

    async def _actor(self, request: Request) -> Actor | Response:
        actor = await authenticate(self.authenticator, request)
        if actor is None:
            return self.pages.render(
                request, "console/refused.html", {"actor": None}, bound_to="anonymous", status=401
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
            request, template, {"actor": actor, **context}, bound_to=f"staff:{actor}", status=status
        )

    def _error(self, request: Request, actor: Actor, error: EntitlementsError) -> Response:
        return self._render(
            request, actor, "console/error.html", {"error": error}, status_for(error)
        )

    @staticmethod
    def _owner_of(ref: str) -> Owner:
        return Owner.parse(ref)

    def owner_url(self, request: Request, owner: Owner, **extra: str) -> str:
        query = urlencode({"ref": str(owner), **extra})
        return f"{self.pages.path(request, 'owner')}?{query}"

    # -- pages ---------------------------------------------------------------------------

    async def owners(self, request: Request) -> Response:
        actor = await self._actor(request)
        if isinstance(actor, Response):
            return actor
        query = request.query_params.get("q", "")[:255]
        status = request.query_params.get("status", "")
        tenant = request.query_params.get("tenant") or None
        try:
            statuses = [status] if status else None
            found = await run_in_threadpool(
                lambda: self.ents.subscriptions.search(
                    query or None, statuses=statuses, tenant=tenant, actor=actor
                )
            )
        except EntitlementsError as error:
            return self._error(request, actor, error)
        return self._render(
            request,
            actor,
            "console/owners.html",
            {
                "found": found,
                "query": query,
                "status": status,
                "tenant": tenant or "",
                "statuses": [s.value for s in SubscriptionStatus],
                "owner_url": lambda owner: self.owner_url(request, owner),
            },
        )

    async def owner(self, request: Request) -> Response:
        actor = await self._actor(request)
        if isinstance(actor, Response):
            return actor
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
        status: int = 200,
    ) -> Response:
        try:
            owner = self._owner_of(ref)
            data = await run_in_threadpool(_owner_page, self.ents, owner, actor)
        except EntitlementsError as failure:
            return self._error(request, actor, failure)
        return self._render(
            request,
            actor,
            "console/owner.html",
            {
                **data,
                "ref": str(owner),
                "request_key": secrets.token_urlsafe(16),
                "done": self.pages.unseal(
                    request.query_params.get("done", "")[:500],
                    request.query_params.get("seal", ""),
                )
                if error is None
                else "",
                "error": error,
                "error_form": form,
                "values": values or {},
                "signer_rows": range(1, MAX_SIGNER_ROWS + 1),
            },
            status,
        )

    async def preview(self, request: Request) -> Response:
        actor = await self._actor(request)
        if isinstance(actor, Response):
            return actor
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
            return await self._owner_response(
                request, actor, ref, error=error, form="change-plan", status=status_for(error)
            )
        return self._render(
            request,
            actor,
            "console/preview.html",
            {"owner": owner, "ref": ref, "plan": plan, "version": version, "preview": preview},
        )

    async def plans(self, request: Request) -> Response:
        actor = await self._actor(request)
        if isinstance(actor, Response):
            return actor

        def read() -> dict[str, Any]:
            catalog = []
            on: Counter[tuple[str, int]] = Counter()
            for sub in self.ents.subscriptions.search(limit=1000, actor=actor):
                if not sub.is_terminal:
                    on[(sub.plan_key, sub.plan_version)] += 1
            for plan in self.ents.plans.list():
                catalog.append(
                    {
                        "plan": plan,
                        "versions": [
                            {"plan": v, "owners": on[(v.key, v.version)]}
                            for v in self.ents.plans.versions(plan.key)
                        ],
                    }
                )
            return {"catalog": catalog}

        try:
            data = await run_in_threadpool(read)
        except EntitlementsError as error:
            return self._error(request, actor, error)
        return self._render(request, actor, "console/plans.html", data)

    # -- actions -------------------------------------------------------------------------

    async def act(self, request: Request) -> Response:
        actor = await self._actor(request)
        if isinstance(actor, Response):
            return actor
        try:
            form = await request.form()
        except Exception:
            form = FormData()
        if not self.pages.csrf.valid(request, form.get(FIELD), f"staff:{actor}"):
            return self._render(request, actor, "console/forged.html", {}, 403)
        name = request.path_params["action"]
        agent = request.headers.get("user-agent")
        fields = Fields(form, self.settings.client_ip(request), agent and agent[:1000])
        ref = fields.text("owner")
        action = ACTIONS.get(name)
        if action is None:
            return self._error(
                request, actor, InvalidInput("action", "is not a console action", name)
            )
        try:
            owner = self._owner_of(ref)
            result = await run_in_threadpool(action, self.ents, owner, actor, fields)
        except EntitlementsError as error:
            return await self._owner_response(
                request,
                actor,
                ref,
                error=error,
                form=name,
                values=fields.values(),
                status=status_for(error),
            )
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
        return RedirectResponse(
            self.owner_url(request, owner, done=result, seal=self.pages.seal(result)),
            status_code=303,
        )

    def signing_url(self, request: Request, token: str) -> str:
        path = self.pages.route_path("sign", token=token)
        return self.settings.url(request, path, signing=True)
