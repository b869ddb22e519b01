"""What a subscription keeps of the signed contract it came from.

The contract itself stays the record (hashed, chained, verifiable); the subscription
carries its id and the commercial terms it was converted on, so that a read of the
subscription answers "on what terms?" without the evidence, and no staff edit of the
subscription's free-form metadata can change them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from entitlements.domain.contracts.contract import Terms
from entitlements.errors import InvalidInput

if TYPE_CHECKING:
    from entitlements.domain.contracts.contract import Contract

__all__ = ["ContractLink"]


def _id(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 64:
        raise InvalidInput("contract_id", "must be a contract id (1 to 64 characters)", value)
    return value


@attrs.frozen
class ContractLink:
    """The signed contract a subscription was converted from, and the terms it was converted on."""

    contract_id: str = attrs.field(converter=_id)
    """The contract's id."""
    amount: Decimal | None = None
    """The agreed price, if the contract named one."""
    currency: str | None = None
    """The ISO 4217 code of ``amount``."""
    term: str | None = None
    """The commitment length in words, if the contract named one."""

    def __attrs_post_init__(self) -> None:
        Terms(None, self.term, self.amount, self.currency)  # the same rules as the contract's

    @classmethod
    def of(cls, contract: Contract) -> ContractLink:
        """The link to ``contract``, with its signed terms."""
        terms = contract.terms
        return cls(contract.id, terms.amount, terms.currency, terms.term)

    def document(self) -> dict[str, Any]:
        """The JSON document the stores keep."""
        return {
            "contract_id": self.contract_id,
            "amount": None if self.amount is None else str(self.amount),
            "currency": self.currency,
            "term": self.term,
        }

    @classmethod
    def from_document(cls, document: Any) -> ContractLink | None:
        """The link a store kept (``None`` when there is none)."""
        if document is None:
            return None
        amount = document.get("amount")
        return cls(
            document["contract_id"],
            None if amount is None else Decimal(amount),
            document.get("currency"),
            document.get("term"),
        )
