"""The public signing page: a signer with a link and no account consents, then signs
(typed or drawn) or declines.

Every step is safe to repeat. Posts answer with a redirect to the page (post, redirect,
get), so refresh and back re-show where the signer is; a step already taken (a second
"I agree", a double-clicked "Sign") is not an error but simply shows the current step;
a used-up link shows what became of it. Nothing a signer can send yields a 500.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from entitlements.domain.contracts.closed import why_link_closed
from entitlements.domain.contracts.contract import SignerStatus
from entitlements.errors import EntitlementsError, IllegalTransition, InvalidInput, InvalidToken
from entitlements.service.entitlements import Entitlements
from entitlements.web.csrf import FIELD
from entitlements.web.flash import Flash
from entitlements.web.links import LinkMemory, RememberedLink
from entitlements.web.pages import Pages, status_for
from entitlements.web.ratelimit import BadTokenLimiter
from entitlements.web.settings import Settings

__all__ = ["SigningPages"]

MAX_DRAWING_BYTES = 2 * 1024 * 1024
_DATA_URL_PREFIXES = ("data:image/png;base64,", "data:image/jpeg;base64,")


def drawing_bytes(value: str) -> bytes:
    """The image inside the canvas's data URL."""
    prefix = next((p for p in _DATA_URL_PREFIXES if value.startswith(p)), None)
    if prefix is None:
        raise InvalidInput("drawing", "the drawing could not be read; clear it and draw again")
    try:
        data = base64.b64decode(value[len(prefix) :], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(
            "drawing", "the drawing could not be read; clear it and draw again"
        ) from None
    if len(data) > MAX_DRAWING_BYTES:
        raise InvalidInput("drawing", "the drawing is too large; clear it and draw again")
    return data


def _flashed(flash: dict[str, Any]) -> tuple[str | None, dict[str, Any], int]:
    """The error, the values typed and the status a step carried over to the page (a
    cookie the signer could have edited: anything of the wrong type is ignored)."""
    error = flash.get("error")
    values = flash.get("values")
    status = flash.get("status")
    return (
        error if isinstance(error, str) else None,
        values if isinstance(values, dict) else {},
        status if isinstance(status, int) else 400,
    )


def _step(view: Any) -> str:
    """Where the signer is: to consent, to sign, or waiting for earlier signers."""
    if view.signer_status is SignerStatus.VIEWED:
        return "consent"
    return "sign" if view.may_sign_now else "waiting"


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


class SigningPages:
    def __init__(
        self,
        ents: Entitlements,
        pages: Pages,
        links: LinkMemory,
        limiter: BadTokenLimiter,
        settings: Settings,
        flash: Flash,
    ) -> None:
        self.flash = flash
        self.ents = ents
        self.pages = pages
        self.links = links
        self.limiter = limiter
        self.settings = settings

    def routes(self) -> list[Route]:
        return [
            Route("/sign/{token}", self.show, methods=["GET"], name="sign"),
            Route("/sign/{token}/consent", self.consent, methods=["POST"], name="sign_consent"),
            Route("/sign/{token}/sign", self.sign, methods=["POST"], name="sign_sign"),
            Route("/sign/{token}/decline", self.decline, methods=["POST"], name="sign_decline"),
        ]

    # -- helpers -------------------------------------------------------------------------

    def _evidence(self, request: Request) -> tuple[str | None, str | None]:
        agent = request.headers.get("user-agent")
        return self.settings.client_ip(request), None if agent is None else agent[:1000]

    def _client(self, request: Request) -> str:
        return self.settings.client_ip(request) or "unknown"

    @staticmethod
    def _bound(token: str) -> str:
        return "link:" + hashlib.sha256(token.encode()).hexdigest()

    def _render(
        self, request: Request, token: str, template: str, context: dict[str, Any], status: int
    ) -> Response:
        return self.pages.render(
            request,
            template,
            {"token": token, **context},
            bound_to=self._bound(token),
            status=status,
        )

    def _too_many(self, request: Request, token: str) -> Response:
        response = self._render(request, token, "signing/closed.html", {"case": "busy"}, 429)
        response.headers["retry-after"] = str(self.limiter.retry_after())
        return response

    def _back_to_page(
        self,
        request: Request,
        token: str,
        error: EntitlementsError | None = None,
        values: dict[str, str] | None = None,
    ) -> Response:
        response = RedirectResponse(self.pages.path(request, "sign", token=token), status_code=303)
        if error is not None:
            document = {"error": str(error), "values": values or {}, "status": status_for(error)}
            self.flash.put(request, response, self._bound(token), document)
        return response

    async def _form(self, request: Request, token: str) -> FormData | Response:
        if self.limiter.blocked(self._client(request)):
            return self._too_many(request, token)
        try:
            form = await request.form(max_part_size=MAX_DRAWING_BYTES * 2)
        except Exception:  # a body that is not a form: treat like a forged one
            form = FormData()
        if not self.pages.csrf.valid(request, form.get(FIELD), self._bound(token)):
            return self._render(request, token, "signing/closed.html", {"case": "forged"}, 403)
        return form

    # -- pages ---------------------------------------------------------------------------

    async def show(self, request: Request) -> Response:
        token = request.path_params["token"]
        if self.limiter.blocked(self._client(request)):
            return self._too_many(request, token)
        ip, agent = self._evidence(request)
        try:
            view = await run_in_threadpool(
                lambda: self.ents.contracts.open(token, ip=ip, user_agent=agent)
            )
        except EntitlementsError:  # InvalidToken above all: the link opens nothing now
            return await self._closed(request, token)
        error, values, status = _flashed(self.flash.read(request, self._bound(token)) or {})
        response = self._render(
            request,
            token,
            "signing/page.html",
            {
                "view": view,
                "step": _step(view),
                "consent_text": self.settings.consent_text,
                "error": error,
                "values": values,
            },
            200 if error is None else status,
        )
        self.flash.clear(request, response)
        owner = getattr(view, "owner", None)
        if owner is not None:
            self.links.remember(
                request, response, token, RememberedLink(owner, view.contract_id, view.signer_id)
            )
        return response

    async def _closed(self, request: Request, token: str) -> Response:
        link = self.links.recall(request, token)
        if link is None:
            self.limiter.failed(self._client(request))
            return self._render(request, token, "signing/closed.html", {"case": "unknown"}, 404)
        try:
            contract = await run_in_threadpool(
                self.ents.contracts.get, link.owner, link.contract_id
            )
            signer = contract.signer(link.signer_id)
        except EntitlementsError:
            return self._render(request, token, "signing/closed.html", {"case": "unknown"}, 404)
        case = why_link_closed(contract, signer, token, self.ents.runtime.now())
        status = 200 if case.done_by_signer else 410
        return self._render(
            request,
            token,
            "signing/closed.html",
            {"case": case.value, "contract": contract, "signer": signer},
            status,
        )

    # -- steps ---------------------------------------------------------------------------

    async def consent(self, request: Request) -> Response:
        token = request.path_params["token"]
        form = await self._form(request, token)
        if isinstance(form, Response):
            return form
        if _text(form, "agree") != "yes":
            error = InvalidInput("consent", "tick the box to agree before continuing")
            return self._back_to_page(request, token, error)
        ip, agent = self._evidence(request)
        try:
            await run_in_threadpool(
                lambda: self.ents.contracts.consent(
                    token,
                    consent_text=self.settings.consent_text,
                    consent_version=self.settings.consent_version,
                    ip=ip,
                    user_agent=agent,
                )
            )
        except (InvalidToken, IllegalTransition):
            pass  # already consented, or the link is used up: the page says which
        except EntitlementsError as error:
            return self._back_to_page(request, token, error)
        return self._back_to_page(request, token)

    async def sign(self, request: Request) -> Response:
        token = request.path_params["token"]
        form = await self._form(request, token)
        if isinstance(form, Response):
            return form
        method = _text(form, "method") or "typed"
        values = {"method": method, "typed_name": _text(form, "typed_name")[:300]}
        try:
            if method == "drawn":
                drawing = _text(form, "drawing")
                if not drawing:
                    raise InvalidInput("drawing", "draw your signature in the box first")
                image: bytes | None = drawing_bytes(drawing)
                typed: str | None = None
            else:
                image, typed = None, _text(form, "typed_name")
            ip, agent = self._evidence(request)
            await run_in_threadpool(
                lambda: self.ents.contracts.sign(
                    token, typed_name=typed, drawing=image, ip=ip, user_agent=agent
                )
            )
        except (InvalidToken, IllegalTransition):
            pass  # signed already (a double submit), or not yet allowed: the page says which
        except EntitlementsError as error:
            return self._back_to_page(request, token, error, values)
        return self._back_to_page(request, token)

    async def decline(self, request: Request) -> Response:
        token = request.path_params["token"]
        form = await self._form(request, token)
        if isinstance(form, Response):
            return form
        reason = _text(form, "reason").strip() or None
        ip, agent = self._evidence(request)
        try:
            await run_in_threadpool(
                lambda: self.ents.contracts.decline(token, reason=reason, ip=ip, user_agent=agent)
            )
        except (InvalidToken, IllegalTransition):
            pass
        except EntitlementsError as error:
            return self._back_to_page(request, token, error, {"reason": reason or ""})
        return self._back_to_page(request, token)
