"""Other systems' words for subscription statuses, mapped onto the canonical set.

The five products this library grew from each named statuses their own way (seed 000:
``past_due``; seed 004: ``OnHold``, ``Cancelled``). Importers and provider adapters call
`canonical_status` instead of keeping their own table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from entitlements.domain.subscription import SubscriptionStatus
from entitlements.errors import InvalidInput

__all__ = ["STATUS_WORDS", "canonical_status"]

_S = SubscriptionStatus

STATUS_WORDS: Mapping[str, tuple[SubscriptionStatus, str]] = {
    "trialing": (_S.TRIALING, "seed 000"),
    "active": (_S.ACTIVE, "seeds 000, 002, 004"),
    "past_due": (_S.PAST_DUE, "seed 000"),
    "canceled": (_S.CANCELED, "seed 000"),
    "suspended": (_S.SUSPENDED, "seed 002"),
    "expired": (_S.EXPIRED, "seeds 002, 004"),
    "pending": (_S.PENDING, "seed 004"),
    "onhold": (_S.PAST_DUE, "seed 004"),
    "failed": (_S.FAILED, "seed 004"),
    "cancelled": (_S.CANCELED, "seed 004"),
}


def canonical_status(word: str) -> SubscriptionStatus:
    """``"OnHold"`` → ``past_due``; case, spaces, dashes and underscores do not matter
    (``"On Hold"``, ``"past-due"``)."""
    if not isinstance(word, str):
        raise InvalidInput("status", "must be a status word", word)
    key = re.sub(r"[\s_\-]+", "", word.strip().lower())
    for known, (status, _) in STATUS_WORDS.items():
        if known.replace("_", "") == key:
            return status
    raise InvalidInput(
        "status", f"unknown status word {word!r}; known: {', '.join(STATUS_WORDS)}", word
    )
