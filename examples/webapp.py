"""A small web application (Flask, the ``web`` extra) showing the request-path check.

    pip install -e '.[web]' && python examples/webapp.py      # http://127.0.0.1:5000

Each request names its organization (a session would, in a real app; here the
``X-Organization`` header). The decorator asks ``ents.allows`` — a dict lookup on the
cached snapshot — and answers 402 with the explanation when the plan does not allow it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask, jsonify, request

from entitlements import Action, Entitlements, Feature, Limit, MemoryStore, Owner, Plan


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


if __name__ == "__main__":
    create_app(demo()).run()
