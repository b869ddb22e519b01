"""What `Entitlements` is built from, checked when it is built.

A store, clock, authorizer or provider that is not one would otherwise be found out at the
first call that uses it — often on the request path, as an ``AttributeError`` far from the
mistake. Each argument is checked against the protocol it stands for (the protocol's
public members are present), so ``Entitlements(store=None)`` or ``policy='strict'`` raise
`InvalidInput` naming the argument and what it takes, before anything is opened.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from entitlements.domain.access import AccessPolicy
from entitlements.domain.checks import parse_enum
from entitlements.errors import InvalidInput
from entitlements.ports import Clock, PaymentProvider, Store
from entitlements.service.authorization import Authorizer
from entitlements.service.coherence import WhenUnreachable
from entitlements.telemetry import Telemetry

__all__ = ["check_construction", "check_port"]


def _members(protocol: type) -> tuple[str, ...]:
    """The public methods and properties a protocol declares."""
    return tuple(
        sorted(
            name
            for name, value in vars(protocol).items()
            if not name.startswith("_") and (callable(value) or isinstance(value, property))
        )
    )


def check_port(value: object, protocol: type, field: str, what: str) -> None:
    """Refuse ``value`` unless it has every public member of ``protocol``."""
    missing = [name for name in _members(protocol) if not hasattr(value, name)]
    if missing:
        raise InvalidInput(
            field,
            f"must be {what} (the {protocol.__name__} protocol: {', '.join(_members(protocol))}); "
            f"got {type(value).__name__}, which has no {', '.join(missing)}",
            type(value).__name__,
        )


def _check_listeners(listeners: object) -> None:
    if isinstance(listeners, str | bytes | Mapping) or not isinstance(listeners, Iterable):
        raise InvalidInput("listeners", "must be a sequence of callables", listeners)
    for listener in listeners:
        if not callable(listener):
            raise InvalidInput(
                "listeners", "each listener must be callable with an AuditEvent", listener
            )


def _check_whole(value: object, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(field, "must be a whole number of 0 or more", value)


def check_construction(
    store: object,
    clock: object,
    policy: object,
    authorizer: object,
    listeners: object,
    cache_size: object,
    telemetry: object,
    ids: object,
    payment_provider: object,
    one_free_plan_per_tenant: object,
    when_unreachable: object,
) -> None:
    """Every argument of `Entitlements` is what it stands for (``None`` takes the default
    where there is one)."""
    check_port(store, Store, "store", "a store such as MemoryStore() or SqlStore.from_url(...)")
    optional: tuple[tuple[object, type, str, str], ...] = (
        (clock, Clock, "clock", "a clock such as SystemClock() or ManualClock(...)"),
        (authorizer, Authorizer, "authorizer", "an authorizer such as PermissionRules()"),
        (telemetry, Telemetry, "telemetry", "a telemetry such as OpenTelemetry()"),
        (payment_provider, PaymentProvider, "payment_provider", "a payment provider"),
    )
    for value, protocol, field, what in optional:
        if value is not None:
            check_port(value, protocol, field, what)
    if policy is not None and not isinstance(policy, AccessPolicy):
        raise InvalidInput("policy", "must be an AccessPolicy (or None for the default)", policy)
    _check_listeners(listeners)
    _check_whole(cache_size, "cache_size")
    if ids is not None and not callable(ids):
        raise InvalidInput("ids", "must be a callable returning a new id (or None)", ids)
    if not isinstance(one_free_plan_per_tenant, bool):
        raise InvalidInput(
            "one_free_plan_per_tenant", "must be True or False", one_free_plan_per_tenant
        )
    parse_enum(WhenUnreachable, when_unreachable, "when_unreachable")
