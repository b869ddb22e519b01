"""Use cases for contracts (seed 000), by audience: staff issue, send and void
(`staff`); signers open, consent, sign or decline through their link — no account needed
(`signer`); staff and auditors read, verify, certify and erase (`evidence`); a completed
contract converts the trial (`conversion`). What they all write — the hash-chained
events, personal data as commitments — is in `records`.

Every transition appends one event to the contract's hash chain in the same unit of work
as the state change, and is audited. Clear signing tokens are returned exactly once (by
``send``/``resend``) and never stored.
"""

from __future__ import annotations

from entitlements.service.assignment import PlanAssignment
from entitlements.service.contracts.conversion import ContractConversion
from entitlements.service.contracts.evidence import ContractEvidence
from entitlements.service.contracts.signer import SignerContracts, SigningView
from entitlements.service.contracts.staff import StaffContracts
from entitlements.service.runtime import Runtime

__all__ = ["Contracts", "SigningView"]


class Contracts(StaffContracts, SignerContracts, ContractEvidence, ContractConversion):
    """``ents.contracts``: issue a contract, collect typed or drawn signatures through
    signing links, verify the evidence, convert the trial."""

    def __init__(self, runtime: Runtime, assignment: PlanAssignment) -> None:
        self._rt = runtime
        self._rules = assignment
