"""The one exception hierarchy of the library.

Every error a host can see from the public API derives from `EntitlementsError`, so
``except EntitlementsError`` is always enough; the subclasses carry the facts a caller
needs to react (which plan, which status, which limit) as typed attributes, and their
message is written for the staff member who will read it in a console. Where a builtin
has the same meaning they subclass it too, so generic code that catches ``LookupError``
or ``ValueError`` keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "BillingActionRequired",
    "Busy",
    "ChangePending",
    "Conflict",
    "ConnectionLost",
    "ContractAlreadyConverted",
    "ContractNotCompleted",
    "ContractNotFound",
    "ContractPending",
    "ContractTermsMismatch",
    "EntitlementsError",
    "EvidenceBroken",
    "FeedUnavailable",
    "FreePlanTaken",
    "IdempotencyKeyReused",
    "IllegalTransition",
    "InvalidInput",
    "InvalidToken",
    "InvoiceExists",
    "InvoiceNotFound",
    "LimitExceeded",
    "MigrationNotFound",
    "MissingExtra",
    "NaiveDatetime",
    "NotAuthorized",
    "NotFound",
    "OverQuotaRefused",
    "OverrideNotFound",
    "OwnerHasActivePlan",
    "PlanExists",
    "PlanManagerProtected",
    "PlanNotAssignable",
    "PlanRetired",
    "ProviderUnreachable",
    "StaleWrite",
    "StorageError",
    "SubscriptionExists",
    "SubscriptionNotFound",
    "UnknownLimit",
    "UnknownPlan",
    "UsageDenied",
]


class EntitlementsError(Exception):
    """Base of every error raised by the library.

    ``retryable`` says whether repeating the same call unchanged can succeed: true only
    where nothing was stored and the cause was passing (`Busy`, a lost connection before
    anything was sent); bad input, conflicts and missing records fail again."""

    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        """The sentence for the staff member who reads it; ``str(error)`` is the same."""

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class InvalidInput(EntitlementsError, ValueError):
    """A value given to the library is malformed; nothing was stored."""

    def __init__(self, field: str, message: str, value: Any = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        """The argument or field at fault, as the caller named it (``expires_at``,
        ``limits.seats``)."""
        self.value = value
        """The value refused, for logs (``None`` when it is not worth repeating)."""


class NaiveDatetime(InvalidInput):
    """A datetime without a timezone was given; the library only accepts aware UTC times."""

    def __init__(self, field: str, value: Any = None) -> None:
        super().__init__(
            field,
            "a timezone-aware datetime is required (got a naive one); "
            "use datetime.now(timezone.utc) or attach tzinfo",
            value,
        )


class NotFound(EntitlementsError, LookupError):
    """Something the caller named does not exist (in this tenant)."""


class UnknownPlan(NotFound):
    """No plan with that key (or that version) is stored; the CLI and ``sync`` say which
    keys exist."""

    def __init__(self, key: str, version: int | None = None) -> None:
        what = f"plan {key!r}" if version is None else f"plan {key!r} version {version}"
        super().__init__(f"{what} does not exist")
        self.key = key
        """The plan key asked for."""
        self.version = version
        """The version asked for (``None``: the latest)."""


class SubscriptionNotFound(NotFound):
    """The owner has no subscription (or none it could act on); start a trial or subscribe
    first."""

    def __init__(self, owner: object) -> None:
        super().__init__(f"{owner} has no subscription")
        self.owner = owner
        """The owner without a subscription."""


class MigrationNotFound(NotFound):
    """No plan-version migration with that id in this tenant (``ents.migrations.list()``
    shows those there are)."""

    def __init__(self, migration_id: str) -> None:
        super().__init__(f"migration {migration_id!r} does not exist")
        self.migration_id = migration_id
        """The id asked for."""


class UnknownLimit(NotFound):
    """The owner's terms define no limit of this name (a typo, or a plan without it).
    Unlimited is not unknown: ``limit()`` answers ``None`` for that."""

    def __init__(self, owner: object, name: str) -> None:
        super().__init__(
            f"{owner} has no limit {name!r}; pass default=0 to treat a missing limit as zero"
        )
        self.owner = owner
        """The owner asked about."""
        self.name = name
        """The limit name it does not have."""


class OverrideNotFound(NotFound):
    """The owner has no override of that feature or limit to remove."""

    def __init__(self, owner: object, target: str) -> None:
        super().__init__(f"{owner} has no override for {target!r}")
        self.owner = owner
        """The owner asked about."""
        self.target = target
        """Which override was asked for (``feature:sso``, ``limit:seats``)."""


class Conflict(EntitlementsError):
    """The call contradicts what is already stored; nothing was changed."""


class StaleWrite(Conflict):
    """Someone else changed the record since it was read (optimistic concurrency)."""

    def __init__(self, entity: str, key: str, expected_revision: int) -> None:
        super().__init__(
            f"{entity} {key} was changed by someone else (expected revision "
            f"{expected_revision}); reload it and try again"
        )
        self.entity = entity
        """What kind of record changed (``subscription``, ``plan``...)."""
        self.key = key
        """Which one."""
        self.expected_revision = expected_revision
        """The revision the caller read; the stored one is newer."""


class ContractNotFound(NotFound):
    """No contract with that id is stored for the owner (an id from another owner counts as
    missing)."""

    def __init__(self, contract_id: str) -> None:
        super().__init__(f"contract {contract_id} does not exist")
        self.contract_id = contract_id
        """The contract id asked for."""


class InvalidToken(EntitlementsError, PermissionError):
    """A signing link that opens nothing: unknown, expired, replaced, already used, or its
    contract is closed. One error for all, so a probe learns nothing."""

    def __init__(self) -> None:
        super().__init__("this signing link is not valid (it may have expired or been replaced)")


class ContractNotCompleted(Conflict):
    """A conversion from a contract was asked before every signer signed."""

    def __init__(self, contract_id: str, status: str) -> None:
        super().__init__(
            f"contract {contract_id} is {status}, not completed; the trial cannot be converted yet"
        )
        self.contract_id = contract_id
        """The contract that is not completed."""
        self.status = status
        """Where it is instead (``sent``, ``signed``...)."""


class ContractPending(EntitlementsError):
    """The owner has a contract still out for signature: converting its trial now would
    put it on paid terms nobody has signed yet. Convert from the contract once it is
    completed, or say ``without_contract=True`` to convert regardless."""

    def __init__(self, owner: object, contract_ids: Sequence[str]) -> None:
        listed = ", ".join(contract_ids)
        super().__init__(
            f"{owner} has a contract out for signature ({listed}); convert from it once it "
            "is completed, or convert without a contract explicitly"
        )
        self.owner = owner
        """The owner whose trial was to be converted."""
        self.contract_ids = tuple(contract_ids)
        """The contracts still out for signature, oldest first."""


class ChangePending(Conflict):
    """The subscription already has a change waiting for its instant (a plan change, a
    cancellation at period end, a pause) or a pause in force that the request conflicts
    with; ``other`` names it. Cancel it first, or schedule with ``replace=True``."""

    def __init__(self, owner: object, other: str, asked: str) -> None:
        super().__init__(f"{owner} has {other}, which conflicts with {asked}")
        self.owner = owner
        """The owner whose subscription holds the other change."""
        self.other = other
        """The pending change (or pause) in the way, in words."""
        self.asked = asked
        """What was asked for, in words."""


class EvidenceBroken(EntitlementsError):
    """Verification of a contract's evidence failed; ``problems`` names each broken link."""

    def __init__(self, contract_id: str, problems: Sequence[str]) -> None:
        super().__init__(f"contract {contract_id} evidence does not verify: {problems[0]}")
        self.contract_id = contract_id
        """The contract whose evidence fails."""
        self.problems = tuple(problems)
        """Every broken link found, in the order checked."""


class BillingActionRequired(Conflict):
    """The owner's billing needs attention (past due / on hold): owner-initiated changes
    wait until it is resolved (seed 004)."""

    def __init__(self, owner: object, status: str) -> None:
        super().__init__(f"{owner} is {status}: resolve the payment before changing the plan")
        self.owner = owner
        """The owner whose billing needs attention."""
        self.status = status
        """Its subscription status (``past_due``...)."""


class FreePlanTaken(Conflict):
    """The tenant already has an owner on a free plan (seed 004's one-free-plan rule)."""

    def __init__(self, owner: object) -> None:
        super().__init__(
            f"another owner of this tenant is already on a free plan; {owner} cannot take one too"
        )
        self.owner = owner
        """The owner refused a second free plan in its tenant."""


class OwnerHasActivePlan(Conflict):
    """Seed 003: an owner with an active paid plan cannot be deleted until the plan is set
    to cancel at the end of its period."""

    def __init__(self, owner: object, plan_key: str) -> None:
        super().__init__(
            f"{owner} has an active paid plan ({plan_key}); cancel it at period end first"
        )
        self.owner = owner
        """The owner that still holds a plan."""
        self.plan_key = plan_key
        """The plan it holds."""


class PlanManagerProtected(Conflict):
    """Seed 003: the member who subscribed manages the paid plan and cannot be removed or
    lose admin while it is active."""

    def __init__(self, owner: object, member: str) -> None:
        super().__init__(
            f"{member} manages {owner}'s paid plan and cannot be removed or lose admin"
        )
        self.owner = owner
        """The owner whose plan manager it is."""
        self.member = member
        """The member who manages the plan."""


class Busy(Conflict):
    """The database gave up on this call to let a concurrent one through (a deadlock, a
    serialization failure, a lock wait that timed out). Nothing was stored; the call can
    simply be retried."""

    retryable = True


class SubscriptionExists(Conflict):
    """The owner already has a live subscription; change its plan, or end it, instead of
    starting another."""

    def __init__(self, owner: object, status: str) -> None:
        super().__init__(f"{owner} already has a {status} subscription; change or end it instead")
        self.owner = owner
        """The owner that already has one."""
        self.status = status
        """The status of the subscription it has."""


class InvoiceExists(Conflict):
    """The owner already has an invoice for that period: one invoice per owner and
    period, whoever finalizes it and however often."""

    def __init__(self, owner: object, period_start: object) -> None:
        super().__init__(f"{owner} already has an invoice for the period from {period_start}")
        self.owner = owner
        """The owner invoiced."""
        self.period_start = period_start
        """The start of the period it is for."""


class InvoiceNotFound(NotFound):
    """No invoice with that id is stored for this tenant."""

    def __init__(self, invoice_id: str) -> None:
        super().__init__(f"invoice {invoice_id} does not exist")
        self.invoice_id = invoice_id
        """The id asked for."""


class PlanExists(Conflict):
    """``define`` was given a key already stored; ``revise`` makes a new version instead."""

    def __init__(self, key: str) -> None:
        super().__init__(f"plan {key!r} already exists; revise it to make a new version")
        self.key = key
        """The plan key already stored."""


class IllegalTransition(EntitlementsError):
    """The requested event is not allowed from the current state; nothing changed."""

    def __init__(
        self, entity: str, key: str, state: str, event: str, allowed: tuple[str, ...]
    ) -> None:
        allowed_text = ", ".join(allowed) if allowed else "no state"
        super().__init__(
            f"cannot {event.replace('_', ' ')} {entity} {key}: it is {state} "
            f"(allowed from: {allowed_text})"
        )
        self.entity = entity
        """What was asked to change (``subscription``, ``plan``, ``contract``, ``signer``).
        """
        self.key = key
        """Which one."""
        self.state = state
        """Its status now."""
        self.event = event
        """The event asked for."""
        self.allowed = allowed
        """The statuses the event is allowed from."""


class PlanNotAssignable(EntitlementsError):
    """The plan exists but may not be given to this owner (status or owner kind)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"plan {key!r} cannot be assigned: {reason}")
        self.key = key
        """The plan key."""
        self.reason = reason
        """Why not (its status, or the owner's kind)."""


class PlanRetired(EntitlementsError):
    """The owner's plan is retired, so nothing new (claims, tokens) may be issued from it."""

    def __init__(self, key: str) -> None:
        super().__init__(f"plan {key!r} is retired; move the owner to another plan first")
        self.key = key
        """The retired plan's key."""


class UsageDenied(EntitlementsError):
    """The owner may not use more of ``metric`` now (read-only access, no such limit);
    nothing was recorded. ``decision`` is the full `UsageDecision`."""

    def __init__(self, metric: str, message: str, decision: Any = None) -> None:
        super().__init__(f"{metric}: {message}")
        self.metric = metric
        """The limit name."""
        self.decision = decision
        """The full `UsageDecision` behind the refusal, when there is one."""


class LimitExceeded(UsageDenied):
    """A hard limit would be exceeded; nothing was recorded."""

    def __init__(
        self, limit_name: str, limit: int, used: int, requested: int, decision: Any = None
    ) -> None:
        super().__init__(
            limit_name, f"limit {limit} reached (used {used}, requested {requested})", decision
        )
        self.limit_name = limit_name
        """The limit name (also in ``metric``)."""
        self.limit = limit
        """The limit in force."""
        self.used = used
        """What was used and reserved already."""
        self.requested = requested
        """What the call asked for."""


class OverQuotaRefused(Conflict):
    """A change would leave the owner over a limit and the caller chose to refuse such
    changes; ``over_quota`` lists each metric, its new limit and the usage."""

    def __init__(self, owner: object, over_quota: Sequence[Any]) -> None:
        parts = ", ".join(f"{o.metric} {o.used} > {o.limit}" for o in over_quota)
        super().__init__(f"{owner} would be over its new limits: {parts}")
        self.owner = owner
        """The owner the change was refused for."""
        self.over_quota = tuple(over_quota)
        """Each limit the change would leave exceeded, with its new value and the usage."""


class NotAuthorized(EntitlementsError, PermissionError):
    """The actor may not perform this action."""

    def __init__(self, actor: str, action: str, reason: str) -> None:
        super().__init__(f"{actor} may not {action}: {reason}")
        self.actor = actor
        """Who asked."""
        self.action = action
        """What they asked to do (``subscription.cancel``...)."""
        self.reason = reason
        """Why the authorizer said no."""


class StorageError(EntitlementsError):
    """The storage backend failed; the unit of work was rolled back."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        """Whether calling again is safe and may succeed (a read, or a write that never reached the database)."""


class ConnectionLost(StorageError):
    """The database connection broke (the server restarted, the connection was killed or
    timed out). ``retryable`` is true when the call was a read or had not reached its
    commit: nothing was stored and a new connection can try again; a write whose commit
    was under way may or may not have been applied, so it is not marked retryable."""


class FeedUnavailable(StorageError):
    """The change feed could not be read for longer than ``max_staleness``, and this
    `Entitlements` was told to refuse rather than serve answers it cannot confirm."""


class IdempotencyKeyReused(Conflict):
    """An idempotency key already recorded one consumption and is now given with another
    metric or amount: a retry must repeat the request exactly, a new request needs a new
    key. Nothing was recorded."""

    def __init__(self, key: str, recorded: str, given: str) -> None:
        super().__init__(
            f"idempotency key {key!r} already recorded {recorded}; it cannot also record "
            f"{given} (use a new key for a new request)"
        )
        self.key = key
        """The key given twice."""
        self.recorded = recorded
        """What the key recorded first (metric and amount)."""
        self.given = given
        """What it was given with now."""


class ContractTermsMismatch(Conflict):
    """Seed 000: a contract binds what was signed; a conversion that asks for something
    else (other seats, say) is refused rather than applied."""

    def __init__(self, contract_id: str, field: str, signed: object, asked: object) -> None:
        super().__init__(
            f"contract {contract_id} was signed for {field} {signed}, not {asked}; "
            "issue a new contract to change it"
        )
        self.contract_id = contract_id
        """The contract."""
        self.field = field
        """Which term differed."""
        self.signed = signed
        """What was signed."""
        self.asked = asked
        """What the conversion asked for."""


class ContractAlreadyConverted(Conflict):
    """A contract converts a trial once; its conversion already happened."""

    def __init__(self, contract_id: str, subscription_id: str) -> None:
        super().__init__(
            f"contract {contract_id} was already converted (subscription {subscription_id})"
        )
        self.contract_id = contract_id
        """The contract."""
        self.subscription_id = subscription_id
        """The subscription it was converted into."""


class ProviderUnreachable(EntitlementsError):
    """The payment provider did not answer a read (``reconcile``). Commands to it never
    raise this: they wait in the outbox and the sweep retries them."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"the payment provider did not answer: {detail}")
        self.detail = detail
        """What the provider client reported."""


class MissingExtra(EntitlementsError, ImportError):
    """A feature needs an optional dependency that is not installed; the message is the
    ``pip install`` line to type (also an `ImportError`, which is what it replaces)."""

    def __init__(self, what: str, extra: str, module: str) -> None:
        super().__init__(
            f"{what} needs the {extra!r} extra (no module named {module!r}): "
            f"pip install 'entitlements[{extra}]'"
        )
        self.extra = extra
        """The extra to install (``jwt``, ``redis``, ``web``...)."""
        self.module = module
        """The module that could not be imported."""
