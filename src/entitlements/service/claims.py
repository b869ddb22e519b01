"""Entitlement claims for access tokens (seed 004): what other services may trust
without asking us — the plan, its limits and features — optionally as a signed JWT
(EdDSA / Ed25519) they verify offline with the public key alone.

Seed 004's rules: an owner with no plan gets a claim without limits (``limits`` is
``None``); an owner on a retired plan gets no claim at all (`PlanRetired`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from entitlements.domain.checks import check_id, check_optional_id
from entitlements.domain.owner import Owner, as_owner
from entitlements.errors import InvalidInput
from entitlements.extras import require
from entitlements.service.runtime import Runtime
from entitlements.service.snapshots import load_snapshot

__all__ = ["Claims", "ClaimsIssuer", "verify_claims_token"]

MAX_TTL = timedelta(days=1)


@attrs.frozen
class Claims:
    """What an owner's access token may claim: its plan and limits as numbers, and the
    features granted."""

    owner: str
    """The owner as ``kind:id`` (the token's subject)."""
    plan: str | None
    """The plan key (``None``: no plan)."""
    plan_version: int | None
    """The plan version."""
    status: str | None
    """The subscription status (``None``: no subscription)."""
    limits: Mapping[str, int | None] | None
    """Limits by name (``None`` values: unlimited); ``None`` altogether when the owner has
    no plan."""
    features: tuple[str, ...]
    """The features granted for every action."""

    def document(self) -> dict[str, Any]:
        """The JSON claim: ``limits`` maps names to numbers (``null``: unlimited) and is
        left out entirely when the owner has no plan."""
        document: dict[str, Any] = {
            "sub": self.owner,
            "plan": self.plan,
            "plan_version": self.plan_version,
            "status": self.status,
            "features": list(self.features),
        }
        if self.limits is not None:
            document["limits"] = dict(self.limits)
        return document


class ClaimsIssuer:
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    def claims(self, owner: Owner, now: datetime | None = None) -> Claims:
        owner = as_owner(owner)
        at = self._rt.now(now)
        with self._rt.read(owner.tenant) as uow:
            snapshot = load_snapshot(uow, owner, at, self._rt.policy)
            if snapshot.plan_key is not None:
                uow.plans.get(snapshot.plan_key).check_grants_claims()
        return Claims(
            owner=str(owner),
            plan=snapshot.plan_key,
            plan_version=snapshot.plan_version,
            status=None if snapshot.status is None else snapshot.status.value,
            limits=None if snapshot.plan_key is None else dict(snapshot.limits),
            features=tuple(sorted(snapshot.features)),
        )

    def token(
        self,
        owner: Owner,
        key: Ed25519PrivateKey,
        ttl: timedelta,
        issuer: str,
        audience: str | None,
        now: datetime | None,
    ) -> str:
        """The claims as a compact JWT signed with EdDSA (needs the ``jwt`` extra); the
        defaults are the public ``claims_token``'s, stated there once."""
        jwt = require("jwt", "jwt", "claims tokens")

        if not isinstance(ttl, timedelta) or not timedelta(0) < ttl <= MAX_TTL:
            raise InvalidInput("ttl", "must be a timedelta of at most a day", ttl)
        if not isinstance(key, Ed25519PrivateKey):
            raise InvalidInput("key", "must be an Ed25519 private key", type(key).__name__)
        check_id(issuer, "issuer", padded=True)
        check_optional_id(audience, "audience", padded=True)
        at = self._rt.now(now)
        payload = {
            **self.claims(owner, at).document(),
            "iss": issuer,
            "iat": int(at.timestamp()),
            "exp": int((at + ttl).timestamp()),
        }
        if audience is not None:
            payload["aud"] = audience
        token: str = jwt.encode(payload, key, algorithm="EdDSA")
        return token


def verify_claims_token(
    token: str, public_key: Ed25519PublicKey, *, audience: str | None = None
) -> dict[str, Any]:
    """What another service calls, offline: checks the signature and expiry and returns
    the claims (raises `InvalidInput` for a bad or expired token)."""
    jwt = require("jwt", "jwt", "claims tokens")

    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            public_key,
            algorithms=["EdDSA"],
            audience=audience,
            options={"require": ["exp", "iat", "sub"]},
        )
    except jwt.PyJWTError as error:
        raise InvalidInput("token", f"not a valid claims token: {error}") from None
    return claims
