"""Why a signing link opens nothing: the rule behind the page a signer sees when the link
they hold is used up (they signed, they declined), withdrawn (staff voided the contract,
sent a new link) or out of time.

The signing page asks this once opening the link has failed; it only chooses the words and
the HTTP status. The checks run in order and the first that holds is the answer: what the
signer did outranks what became of the contract, which outranks the link itself.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import datetime

from entitlements.domain.contracts.contract import (
    Contract,
    ContractStatus,
    Signer,
    SignerStatus,
)
from entitlements.domain.contracts.tokens import hash_token

__all__ = ["LinkClosed", "why_link_closed"]


class LinkClosed(enum.StrEnum):
    """Why a signing link opens nothing."""

    SIGNED = "signed"
    """The signer signed: the link did its work."""
    DECLINED = "declined"
    """The signer declined."""
    VOIDED = "voided"
    """Staff voided the contract."""
    DECLINED_BY_OTHER = "declined_by_other"
    """Another signer declined, which ends the contract for everyone."""
    EXPIRED = "expired"
    """The contract's signing window, or this link's, ran out."""
    REPLACED = "replaced"
    """A newer link was sent to the signer; this one was retired."""
    UNKNOWN = "unknown"
    """Nothing on record explains it (or the link was never one of ours)."""

    @property
    def done_by_signer(self) -> bool:
        """Whether the signer closed it themselves (signed or declined): not an error."""
        return self in (LinkClosed.SIGNED, LinkClosed.DECLINED)


_Check = Callable[[Contract, Signer, str, datetime], bool]

_CHECKS: tuple[tuple[_Check, LinkClosed], ...] = (
    (lambda c, s, token, now: s.status is SignerStatus.SIGNED, LinkClosed.SIGNED),
    (lambda c, s, token, now: s.status is SignerStatus.DECLINED, LinkClosed.DECLINED),
    (lambda c, s, token, now: c.status is ContractStatus.VOIDED, LinkClosed.VOIDED),
    (
        lambda c, s, token, now: c.status is ContractStatus.DECLINED,
        LinkClosed.DECLINED_BY_OTHER,
    ),
    (
        lambda c, s, token, now: c.status is ContractStatus.EXPIRED or c.expires_at <= now,
        LinkClosed.EXPIRED,
    ),
    (
        lambda c, s, token, now: s.token_hash is not None and s.token_hash != hash_token(token),
        LinkClosed.REPLACED,
    ),
    (
        lambda c, s, token, now: s.token_expires_at is not None and s.token_expires_at <= now,
        LinkClosed.EXPIRED,
    ),
)


def why_link_closed(contract: Contract, signer: Signer, token: str, now: datetime) -> LinkClosed:
    """Why ``token``, a link once sent to ``signer`` of ``contract``, opens nothing at
    ``now``."""
    for holds, case in _CHECKS:
        if holds(contract, signer, token, now):
            return case
    return LinkClosed.UNKNOWN
