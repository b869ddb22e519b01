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
    "Conflict",
    "ConnectionLost",
    "ContractNotCompleted",
    "ContractNotFound",
    "EntitlementsError",
    "EvidenceBroken",
    "FeedUnavailable",
    "FreePlanTaken",
    "IdempotencyKeyReused",
    "IllegalTransition",
    "InvalidInput",
    "InvalidToken",
    "LimitExceeded",
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

    def __str__(self) -> str:
        return self.message


class InvalidInput(EntitlementsError, ValueError):
    """A value given to the library is malformed; nothing was stored."""

    def __init__(self, field: str, message: str, value: Any = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.value = value


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
    def __init__(self, key: str, version: int | None = None) -> None:
        what = f"plan {key!r}" if version is None else f"plan {key!r} version {version}"
        super().__init__(f"{what} does not exist")
        self.key = key
        self.version = version


class SubscriptionNotFound(NotFound):
    def __init__(self, owner: object) -> None:
        super().__init__(f"{owner} has no subscription")
        self.owner = owner


class UnknownLimit(NotFound):
    """The owner's terms define no limit of this name (a typo, or a plan without it).
    Unlimited is not unknown: ``limit()`` answers ``None`` for that."""

    def __init__(self, owner: object, name: str) -> None:
        super().__init__(
            f"{owner} has no limit {name!r}; pass default=0 to treat a missing limit as zero"
        )
        self.owner = owner
        self.name = name


class OverrideNotFound(NotFound):
    def __init__(self, owner: object, target: str) -> None:
        super().__init__(f"{owner} has no override for {target!r}")
        self.owner = owner
        self.target = target


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
        self.key = key
        self.expected_revision = expected_revision


class ContractNotFound(NotFound):
    def __init__(self, contract_id: str) -> None:
        super().__init__(f"contract {contract_id} does not exist")
        self.contract_id = contract_id


class InvalidToken(EntitlementsError, PermissionError):
    """A signing link that opens nothing: unknown, expired, replaced, already used, or its
    contract is closed. One error for all, so a probe learns nothing."""

    def __init__(self) -> None:
        super().__init__("this signing link is not valid (it may have expired or been replaced)")


class ContractNotCompleted(Conflict):
    def __init__(self, contract_id: str, status: str) -> None:
        super().__init__(
            f"contract {contract_id} is {status}, not completed; the trial cannot be converted yet"
        )
        self.contract_id = contract_id
        self.status = status


class EvidenceBroken(EntitlementsError):
    """Verification of a contract's evidence failed; ``problems`` names each broken link."""

    def __init__(self, contract_id: str, problems: Sequence[str]) -> None:
        super().__init__(f"contract {contract_id} evidence does not verify: {problems[0]}")
        self.contract_id = contract_id
        self.problems = tuple(problems)


class BillingActionRequired(Conflict):
    """The owner's billing needs attention (past due / on hold): owner-initiated changes
    wait until it is resolved (seed 004)."""

    def __init__(self, owner: object, status: str) -> None:
        super().__init__(f"{owner} is {status}: resolve the payment before changing the plan")
        self.owner = owner
        self.status = status


class FreePlanTaken(Conflict):
    """The tenant already has an owner on a free plan (seed 004's one-free-plan rule)."""

    def __init__(self, owner: object) -> None:
        super().__init__(
            f"another owner of this tenant is already on a free plan; {owner} cannot take one too"
        )
        self.owner = owner


class OwnerHasActivePlan(Conflict):
    """Seed 003: an owner with an active paid plan cannot be deleted until the plan is set
    to cancel at the end of its period."""

    def __init__(self, owner: object, plan_key: str) -> None:
        super().__init__(
            f"{owner} has an active paid plan ({plan_key}); cancel it at period end first"
        )
        self.owner = owner
        self.plan_key = plan_key


class PlanManagerProtected(Conflict):
    """Seed 003: the member who subscribed manages the paid plan and cannot be removed or
    lose admin while it is active."""

    def __init__(self, owner: object, member: str) -> None:
        super().__init__(
            f"{member} manages {owner}'s paid plan and cannot be removed or lose admin"
        )
        self.owner = owner
        self.member = member


class Busy(Conflict):
    """The database gave up on this call to let a concurrent one through (a deadlock, a
    serialization failure, a lock wait that timed out). Nothing was stored; the call can
    simply be retried."""

    retryable = True


class SubscriptionExists(Conflict):
    def __init__(self, owner: object, status: str) -> None:
        super().__init__(f"{owner} already has a {status} subscription; change or end it instead")
        self.owner = owner
        self.status = status


class PlanExists(Conflict):
    def __init__(self, key: str) -> None:
        super().__init__(f"plan {key!r} already exists; revise it to make a new version")
        self.key = key


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
        self.key = key
        self.state = state
        self.event = event
        self.allowed = allowed


class PlanNotAssignable(EntitlementsError):
    """The plan exists but may not be given to this owner (status or owner kind)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"plan {key!r} cannot be assigned: {reason}")
        self.key = key
        self.reason = reason


class PlanRetired(EntitlementsError):
    """The owner's plan is retired, so nothing new (claims, tokens) may be issued from it."""

    def __init__(self, key: str) -> None:
        super().__init__(f"plan {key!r} is retired; move the owner to another plan first")
        self.key = key


class UsageDenied(EntitlementsError):
    """The owner may not use more of ``metric`` now (read-only access, no such limit);
    nothing was recorded. ``decision`` is the full `UsageDecision`."""

    def __init__(self, metric: str, message: str, decision: Any = None) -> None:
        super().__init__(f"{metric}: {message}")
        self.metric = metric
        self.decision = decision


class LimitExceeded(UsageDenied):
    """A hard limit would be exceeded; nothing was recorded."""

    def __init__(
        self, limit_name: str, limit: int, used: int, requested: int, decision: Any = None
    ) -> None:
        super().__init__(
            limit_name, f"limit {limit} reached (used {used}, requested {requested})", decision
        )
        self.limit_name = limit_name
        self.limit = limit
        self.used = used
        self.requested = requested


class OverQuotaRefused(Conflict):
    """A change would leave the owner over a limit and the caller chose to refuse such
    changes; ``over_quota`` lists each metric, its new limit and the usage."""

    def __init__(self, owner: object, over_quota: Sequence[Any]) -> None:
        parts = ", ".join(f"{o.metric} {o.used} > {o.limit}" for o in over_quota)
        super().__init__(f"{owner} would be over its new limits: {parts}")
        self.owner = owner
        self.over_quota = tuple(over_quota)


class NotAuthorized(EntitlementsError, PermissionError):
    """The actor may not perform this action."""

    def __init__(self, actor: str, action: str, reason: str) -> None:
        super().__init__(f"{actor} may not {action}: {reason}")
        self.actor = actor
        self.action = action
        self.reason = reason


class StorageError(EntitlementsError):
    """The storage backend failed; the unit of work was rolled back."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


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
        self.recorded = recorded
        self.given = given
