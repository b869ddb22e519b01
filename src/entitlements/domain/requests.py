"""Requests remembered by their idempotency key, for the mutations a repeat would apply
twice (issuing a contract, opening a checkout, lowering a gauge).

A caller whose acknowledgement was lost calls again with the same key; the unit of work
that finds the key answers from what the first one did instead of doing it again. The
key is scoped to its owner, like a usage key. What is kept is the operation, a digest of
the request's arguments (so a key reused for another request is told apart from a retry)
and the few ids a repeat rebuilds its answer from — never the arguments themselves.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from entitlements.domain.frozen import FrozenDict, freeze
from entitlements.domain.instant import as_utc, aware
from entitlements.domain.owner import Owner
from entitlements.domain.usage import check_idempotency_key
from entitlements.errors import IdempotencyKeyReused, InvalidInput

__all__ = ["KeyedRequest", "check_repeat", "request_digest"]


def request_digest(operation: str, arguments: Mapping[str, object]) -> str:
    """A digest of what was asked: the same request always gives the same one. Values
    are turned into text first (dates, decimals, enums), so a retry built anew from the
    same inputs matches."""
    text = json.dumps(
        {"operation": operation, "arguments": arguments},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
        ensure_ascii=False,
    )
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _key(value: object) -> str:
    key = check_idempotency_key(value)
    if key is None:
        raise InvalidInput("key", "a remembered request needs its idempotency key", value)
    return key


@attrs.frozen
class KeyedRequest:
    """A mutation done under an idempotency key, kept until the key retention passes."""

    owner: Owner
    """Whose request it was; keys are scoped to their owner."""
    key: str = attrs.field(converter=_key)
    """The caller's idempotency key."""
    operation: str
    """The mutation (``contracts.issue``, ``billing.assign_plan``, ``usage.decrease``)."""
    digest: str
    """`request_digest` of the operation and its arguments."""
    at: datetime = attrs.field(converter=as_utc, validator=aware)
    """When the first request was made."""
    outcome: FrozenDict[str, Any] = attrs.field(factory=FrozenDict, converter=freeze)
    """What a repeat rebuilds its answer from (ids, not arguments)."""


def check_repeat(found: KeyedRequest, operation: str, digest: str) -> KeyedRequest:
    """``found`` when the request is the same one again; `IdempotencyKeyReused` when the
    key was used for another request (nothing is done)."""
    if (found.operation, found.digest) != (operation, digest):
        same = found.operation == operation
        raise IdempotencyKeyReused(
            found.key,
            f"another {operation} request" if same else f"a {found.operation} request",
            f"this {operation} request",
        )
    return found
