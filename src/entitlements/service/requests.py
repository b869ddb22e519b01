"""Idempotency keys for the mutations a repeat would apply twice.

A use case that takes ``key=`` claims it in its own unit of work before it acts: the
claim either stores the request (this is the first time) or hands back the request the
key already made, which the use case answers from. Both happen at the database, inside
the transaction that does the work, so a request that failed leaves no claim behind and
two concurrent repeats cannot both act (the second claim waits for the first one's
commit and then finds it).
"""

from __future__ import annotations

from collections.abc import Mapping

from entitlements.domain.owner import Owner
from entitlements.domain.requests import KeyedRequest, check_repeat, request_digest
from entitlements.service.runtime import Transaction

__all__ = ["claim_key", "settle_key"]


def claim_key(
    tx: Transaction,
    owner: Owner,
    key: str | None,
    operation: str,
    arguments: Mapping[str, object],
    outcome: Mapping[str, object] | None = None,
) -> KeyedRequest | None:
    """The earlier request under ``key`` when this one repeats it, ``None`` when this is
    the first (or no key was given). A key already used for another request raises
    `IdempotencyKeyReused`. ``outcome``: what a repeat answers from, when it is known
    before acting (otherwise `settle_key` records it)."""
    if key is None:
        return None
    digest = request_digest(operation, arguments)
    request = KeyedRequest(owner, key, operation, digest, tx.now, outcome or {})
    found = tx.uow.requests.claim(request)
    return None if found is None else check_repeat(found, operation, digest)


def settle_key(
    tx: Transaction, owner: Owner, key: str | None, outcome: Mapping[str, object]
) -> None:
    """Record what the first request under ``key`` did, for its repeats to answer from."""
    if key is not None:
        tx.uow.requests.settle(owner, key, outcome)
