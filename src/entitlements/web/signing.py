"""The public signing page: a signer with a link and no account consents, then signs
(typed or drawn) or declines.

The e-mailed link's first load trades the token for a visit cookie and redirects to the
visit's page (see visits.py): the token leaves the URL, ``viewed`` is recorded once per
visit, and the forms are bound to the visit.

Every step is safe to repeat. Posts answer with a redirect to the page (post, redirect,
get), so refresh and back re-show where the signer is; a step already taken (a second
"I agree", a double-clicked "Sign") is not an error but simply shows the current step;
a used-up link shows what became of it. Nothing a signer can send yields a 500.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

import attrs
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from entitlements.domain.contracts.closed import why_link_closed
from entitlements.domain.contracts.contract import SignerStatus
from entitlements.errors import EntitlementsError, IllegalTransition, InvalidInput, InvalidToken
from entitlements.service.contracts import SigningView
from entitlements.service.entitlements import Entitlements
from entitlements.web.csrf import FIELD
from entitlements.web.flash import Flash
from entitlements.web.links import LinkMemory, RememberedLink
from entitlements.web.pages import Pages, status_for
from entitlements.web.ratelimit import BadTokenLimit
from entitlements.web.settings import Settings
from entitlements.web.visits import Visit, Visits

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


def _step(view: SigningView) -> str:
    if view.signer_status in (SignerStatus.SENT, SignerStatus.VIEWED):
        return "consent"
    return "sign" if view.may_sign_now else "waiting"


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


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


class SigningPages:
    def __init__(
        self,
        ents: Entitlements,
        pages: Pages,
        limiter: BadTokenLimit,
        settings: Settings,
        secret: bytes,
    ) -> None:
        self.ents, self.pages, self.limiter, self.settings = ents, pages, limiter, settings
        # what the pages keep in the signer's browser, each sealed with its own key
        self.links = LinkMemory(secret + b"\x1flinks", settings)
        self.flash = Flash(secret + b"\x1fflash", settings)
        self.visits = Visits(secret + b"\x1fvisits", settings)

    def routes(self) -> list[Route]:
        return [
            Route("/sign/v/{visit}", self.show, methods=["GET"], name="sign_visit"),
            Route("/sign/v/{visit}/consent", self.consent, methods=["POST"], name="sign_consent"),
            Route("/sign/v/{visit}/sign", self.sign, methods=["POST"], name="sign_sign"),
            Route("/sign/v/{visit}/decline", self.decline, methods=["POST"], name="sign_decline"),
            Route("/sign/{token}", self.exchange, methods=["GET"], name="sign"),
        ]

    # -- helpers -------------------------------------------------------------------------

    def _evidence(self, request: Request) -> tuple[str | None, str | None]:
        agent = request.headers.get("user-agent")
        return self.settings.client_ip(request), None if agent is None else agent[:1000]

    def _client(self, request: Request) -> str:
        return self.settings.client_ip(request) or "unknown"

    def _render(
        self,
        request: Request,
        visit: Visit | None,
        template: str,
        context: dict[str, Any],
        status: int,
    ) -> Response:
        return self.pages.render(
            request,
            template,
            {"visit": None if visit is None else visit.key, **context},
            bound_to="anonymous" if visit is None else visit.bound_to,
            status=status,
        )

    def _too_many(self, request: Request) -> Response:
        response = self._render(request, None, "signing/closed.html", {"case": "busy"}, 429)
        response.headers["retry-after"] = str(self.limiter.retry_after())
        return response

    def _back_to_page(
        self,
        request: Request,
        visit: Visit,
        error: EntitlementsError | None = None,
        values: dict[str, str] | None = None,
    ) -> Response:
        response = RedirectResponse(
            self.pages.path(request, "sign_visit", visit=visit.key), status_code=303
        )
        if error is not None:
            document = {"error": str(error), "values": values or {}, "status": status_for(error)}
            self.flash.put(request, response, visit.bound_to, document)
        return response

    async def _form(self, request: Request) -> tuple[Visit, FormData] | Response:
        visit = self.visits.find(request, request.path_params["visit"])
        try:
            form = await request.form(max_part_size=MAX_DRAWING_BYTES * 2)
        except Exception:  # a body that is not a form: treat like a forged one
            form = FormData()
        if visit is None or not self.pages.csrf.valid(request, form.get(FIELD), visit.bound_to):
            return self._render(request, visit, "signing/closed.html", {"case": "forged"}, 403)
        return visit, form

    # -- pages ---------------------------------------------------------------------------

    async def exchange(self, request: Request) -> Response:
        """The e-mailed link: trade the token for a visit, and leave the token's URL."""
        token = request.path_params["token"]
        try:
            await run_in_threadpool(lambda: self.ents.contracts.view(token))
        except EntitlementsError:  # InvalidToken above all: the link opens nothing now
            return await self._unopened(request, token)
        visit = self.visits.begin(request, token)
        response = RedirectResponse(
            self.pages.path(request, "sign_visit", visit=visit.key), status_code=303
        )
        self.visits.keep(request, response, visit)
        return response

    async def _unopened(self, request: Request, token: str, visit: Visit | None = None) -> Response:
        link = self.links.recall(request, token)
        if link is not None:
            return await self._closed(request, visit, token, link)
        # only links that open nothing count, so a guesser behind an office's address
        # never stands between a colleague and a real link
        if visit is None and await run_in_threadpool(self.limiter.fail, self._client(request)):
            return self._too_many(request)
        return self._render(request, visit, "signing/closed.html", {"case": "unknown"}, 404)

    def _view(self, visit: Visit, ip: str | None, agent: str | None) -> SigningView:
        if visit.viewed:
            return self.ents.contracts.view(visit.token)
        return self.ents.contracts.open(visit.token, ip=ip, user_agent=agent)

    async def show(self, request: Request) -> Response:
        visit = self.visits.find(request, request.path_params["visit"])
        if visit is None:
            return self._render(request, None, "signing/closed.html", {"case": "ended"}, 410)
        ip, agent = self._evidence(request)
        try:
            view = await run_in_threadpool(self._view, visit, ip, agent)
        except EntitlementsError:
            return await self._unopened(request, visit.token, visit)
        error, values, status = _flashed(self.flash.read(request, visit.bound_to) or {})
        response = self._render(
            request,
            visit,
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
        self.visits.keep(request, response, attrs.evolve(visit, viewed=True))
        if view.owner is not None:
            remembered = RememberedLink(view.owner, view.contract_id, view.signer_id)
            self.links.remember(request, response, visit.token, remembered)
        return response

    async def _closed(
        self, request: Request, visit: Visit | None, token: str, link: RememberedLink
    ) -> Response:
        try:
            contract = await run_in_threadpool(
                self.ents.contracts.get, link.owner, link.contract_id
            )
            signer = contract.signer(link.signer_id)
        except EntitlementsError:
            return self._render(request, visit, "signing/closed.html", {"case": "unknown"}, 404)
        case = why_link_closed(contract, signer, token, self.ents.runtime.now())
        status = 200 if case.done_by_signer else 410
        return self._render(
            request,
            visit,
            "signing/closed.html",
            {"case": case.value, "contract": contract, "signer": signer},
            status,
        )

    # -- steps ---------------------------------------------------------------------------

    async def consent(self, request: Request) -> Response:
        def step(token: str, form: FormData, ip: str | None, agent: str | None) -> None:
            if _text(form, "agree") != "yes":
                raise InvalidInput("consent", "tick the box to agree before continuing")
            self.ents.contracts.consent(
                token,
                consent_text=self.settings.consent_text,
                consent_version=self.settings.consent_version,
                ip=ip,
                user_agent=agent,
            )

        return await self._step(request, step)

    async def sign(self, request: Request) -> Response:
        def step(token: str, form: FormData, ip: str | None, agent: str | None) -> None:
            image, typed = _signature(form, _method(form))
            self.ents.contracts.sign(
                token, typed_name=typed, drawing=image, ip=ip, user_agent=agent
            )

        def kept(form: FormData) -> dict[str, str]:
            return {"method": _method(form), "typed_name": _text(form, "typed_name")[:300]}

        return await self._step(request, step, kept)

    async def decline(self, request: Request) -> Response:
        def step(token: str, form: FormData, ip: str | None, agent: str | None) -> None:
            self.ents.contracts.decline(token, reason=_reason(form), ip=ip, user_agent=agent)

        return await self._step(request, step, lambda form: {"reason": _reason(form) or ""})

    async def _step(
        self,
        request: Request,
        step: Callable[[str, FormData, str | None, str | None], None],
        kept: Callable[[FormData], dict[str, str]] | None = None,
    ) -> Response:
        """One signing step posted: ``step(token, form, ip, user_agent)`` does it; the
        answer is always a redirect back to the page, with the error and what the signer
        had typed (``kept``) when it was refused. A step that is done already (a double
        submit) or not allowed yet is no error: the page says which."""
        posted = await self._form(request)
        if isinstance(posted, Response):
            return posted
        visit, form = posted
        ip, agent = self._evidence(request)
        try:
            await run_in_threadpool(lambda: step(visit.token, form, ip, agent))
        except (InvalidToken, IllegalTransition):
            pass
        except EntitlementsError as error:
            values = None if kept is None else kept(form)
            return self._back_to_page(request, visit, error, values)
        return self._back_to_page(request, visit)


def _method(form: FormData) -> str:
    return _text(form, "method") or "typed"


def _reason(form: FormData) -> str | None:
    return _text(form, "reason").strip() or None


def _signature(form: FormData, method: str) -> tuple[bytes | None, str | None]:
    """The drawing or the typed name the sign form carries."""
    if method != "drawn":
        return None, _text(form, "typed_name")
    drawing = _text(form, "drawing")
    if not drawing:
        raise InvalidInput("drawing", "draw your signature in the box first")
    return drawing_bytes(drawing), None
