"""A Flask host with entitlements.web mounted beside its own routes.

    pip install -e '.[web]' flask && python examples/webapp.py   # http://127.0.0.1:5000

- ``/reports`` is the host's own page, guarded by the request-path check: ``ents.allows``
  is a dict lookup on the cached snapshot; a plan that does not allow it answers 402.
- ``/login`` stands in for the host's sign-in: it puts a staff name in Flask's session.
- ``/billing/`` is the staff console and ``/billing/sign/<token>`` the public signing
  page, served by entitlements.web through the WSGI adapter. The console's
  authenticator reads the same signed session cookie, so only signed-in staff get in.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask, jsonify, redirect, request, session
from itsdangerous import BadSignature
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from entitlements import Action, Actor, Entitlements, Feature, Limit, MemoryStore, Owner, Plan
from entitlements.service.authorization import PermissionRules
from entitlements.web import as_wsgi, create_app

SECRET = "change-me: a long random secret from the host's configuration"
LOCAL = ["127.0.0.1", "localhost"]


def create_host(ents: Entitlements) -> Flask:
    app = Flask(__name__)
    app.secret_key = SECRET

    def staff_from_session(web_request: Any) -> Actor | None:
        """The console's authenticator: the staff member signed in to this Flask app."""
        cookie = web_request.cookies.get(app.config["SESSION_COOKIE_NAME"])
        serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
        if not cookie or serializer is None:
            return None
        try:
            name = serializer.loads(cookie).get("staff")
        except BadSignature:
            return None
        return Actor(name, "staff", {"subscriptions.manage"}) if name else None

    web = create_app(  # in production: base_url="https://<your host>/billing"
        ents, authenticator=staff_from_session, secret_key=SECRET, trusted_hosts=LOCAL
    )
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/billing": as_wsgi(web)})  # type: ignore[method-assign]

    def requires(feature: str, action: Action | None = None) -> Callable[..., Any]:
        def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
            @wraps(view)
            def guarded(*args: Any, **kwargs: Any) -> Any:
                owner = Owner("organization", request.headers.get("X-Organization", "anonymous"))
                if not ents.allows(owner, feature, action):
                    decision = ents.explain(owner, feature, action)
                    reason, detail = decision.reason.value, decision.detail
                    return jsonify(error="upgrade required", reason=reason, detail=detail), 402
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

    @app.get("/login")
    def login() -> Any:
        session["staff"] = request.args.get("as", "ann")  # the host's real sign-in goes here
        return redirect("/billing/")

    return app


def demo() -> Entitlements:
    ents = Entitlements(MemoryStore(), authorizer=PermissionRules())
    setup = Actor("setup", "staff", {"subscriptions.manage"})
    reads_only = {"reports": Feature(actions={Action.READ})}
    ents.plans.define(
        Plan("free", "Free", limits={"projects": Limit(3)}, features=reads_only, status="active"),
        actor=setup,
    )
    ents.plans.define(
        Plan(
            "team",
            "Team",
            limits={"projects": Limit.unlimited()},
            features={"reports": True},
            status="active",
        ),
        actor=setup,
    )
    ents.subscriptions.subscribe(Owner("organization", "small"), "free", actor=setup)
    ents.subscriptions.subscribe(Owner("organization", "big"), "team", actor=setup)
    return ents


if __name__ == "__main__":
    print("sign in at http://127.0.0.1:5000/login, then use the console at /billing/")
    create_host(demo()).run()
