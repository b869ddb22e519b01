"""A small web application (Flask, the ``web`` extra): the request-path entitlement check
and the public contract signing page.

    pip install -e '.[web]' && python examples/webapp.py      # http://127.0.0.1:5000

Each request names its organization (a session would, in a real app; here the
``X-Organization`` header). The decorator asks ``ents.allows`` — a dict lookup on the
cached snapshot — and answers 402 with the explanation when the plan does not allow it.

``/sign/<token>`` is the public signing page: no account, the token is the key. It shows
the agreement, records consent (with the consent text's version), and takes a typed
signature or a decline; IP and user agent go into the evidence.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask, jsonify, render_template_string, request

from entitlements import (
    Action,
    Entitlements,
    Feature,
    InvalidToken,
    Limit,
    MemoryStore,
    Owner,
    Plan,
)
from entitlements.domain.contracts.contract import SignerSpec

CONSENT = (
    "I agree to do business electronically: to receive this agreement and sign it "
    "with an electronic signature, which is as binding as a handwritten one."
)
CONSENT_VERSION = "esign-consent-v1"
PAGE = """<!doctype html>
<title>{{ view.title }}</title>
<h1>{{ view.title }}</h1>
<pre>{{ view.body }}</pre>
<p>Contract {{ view.contract_status.value }}; you are {{ view.signer_status.value }}.</p>
{% if view.signer_status.value == "viewed" %}
<form method="post" action="/sign/{{ token }}/consent">
  <p>{{ consent }}</p><button>I agree</button></form>
{% elif view.signer_status.value == "consented" and view.may_sign_now %}
<form method="post" action="/sign/{{ token }}/sign">
  <label>Type your full name <input name="typed_name" required></label><button>Sign</button></form>
{% endif %}
{% if view.signer_status.value in ("viewed", "consented") %}
<form method="post" action="/sign/{{ token }}/decline">
  <input name="reason" placeholder="Reason (optional)"><button>Decline</button></form>
{% endif %}
"""


def create_app(ents: Entitlements) -> Flask:
    app = Flask(__name__)

    def current_owner() -> Owner:
        return Owner("organization", request.headers.get("X-Organization", "anonymous"))

    def requires(feature: str, action: Action | None = None) -> Callable[..., Any]:
        def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
            @wraps(view)
            def guarded(*args: Any, **kwargs: Any) -> Any:
                owner = current_owner()
                if not ents.allows(owner, feature, action):
                    decision = ents.explain(owner, feature, action)
                    body = {
                        "error": "upgrade required",
                        "feature": feature,
                        "reason": decision.reason.value,
                        "detail": decision.detail,
                    }
                    return jsonify(body), 402
                return view(*args, **kwargs)

            return guarded

        return decorate

    @app.get("/reports")
    @requires("reports", Action.READ)
    def reports() -> Any:
        return jsonify(reports=["q3-revenue"])

    @app.post("/reports")
    @requires("reports", Action.CREATE)
    def create_report() -> Any:
        return jsonify(created=True), 201

    def evidence() -> dict[str, str | None]:
        return {"ip": request.remote_addr, "user_agent": request.headers.get("User-Agent")}

    def page(token: str) -> Any:
        return render_template_string(
            PAGE, view=ents.contracts.open(token, **evidence()), token=token, consent=CONSENT
        )

    @app.errorhandler(InvalidToken)
    def invalid_link(error: InvalidToken) -> Any:
        return str(error), 404

    @app.get("/sign/<token>")
    def signing_page(token: str) -> Any:
        return page(token)

    @app.post("/sign/<token>/consent")
    def consent(token: str) -> Any:
        ents.contracts.consent(
            token, consent_text=CONSENT, consent_version=CONSENT_VERSION, **evidence()
        )
        return page(token)

    @app.post("/sign/<token>/sign")
    def sign(token: str) -> Any:
        contract = ents.contracts.sign(token, typed_name=request.form["typed_name"], **evidence())
        return f"Signed. The contract is {contract.status.value}."

    @app.post("/sign/<token>/decline")
    def decline(token: str) -> Any:
        ents.contracts.decline(token, reason=request.form.get("reason") or None, **evidence())
        return "Declined. Thank you for letting us know."

    @app.get("/limits/<name>")
    def limit(name: str) -> Any:
        value = ents.limit(current_owner(), name)
        return jsonify(name=name, limit="unlimited" if value is None else value)

    return app


def demo() -> Entitlements:
    ents = Entitlements(MemoryStore())
    ents.plans.define(
        Plan(
            "free",
            "Free",
            limits={"projects": Limit(3)},
            features={"reports": Feature(actions={Action.READ})},
            status="active",
        ),
        actor="staff:demo",
    )
    ents.plans.define(
        Plan(
            "team",
            "Team",
            limits={"projects": Limit.unlimited()},
            features={"reports": True},
            status="active",
        ),
        actor="staff:demo",
    )
    ents.subscriptions.subscribe(Owner("organization", "small"), "free", actor="staff:demo")
    ents.subscriptions.subscribe(Owner("organization", "big"), "team", actor="staff:demo")
    return ents


def demo_contract(ents: Entitlements) -> str:
    """Issue and send a contract to a trialing organization; returns its signing token."""
    trial = Owner("organization", "trial")
    ents.subscriptions.start_trial(trial, "team", actor="staff:demo")
    contract = ents.contracts.issue(
        trial,
        title="Team plan agreement",
        body="The customer subscribes to Team for 12 months.\n",
        signers=[SignerSpec("Ada Lovelace", "ada@trial.test", "CEO")],
        plan_key="team",
        actor="staff:demo",
    )
    return ents.contracts.send(trial, contract.id, actor="staff:demo")["s1"]


if __name__ == "__main__":
    ents = demo()
    print(f"signing page: http://127.0.0.1:5000/sign/{demo_contract(ents)}")
    create_app(ents).run()
