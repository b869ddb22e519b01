"""Per-owner overrides: staff turn a feature on or off, or set a limit, for one owner
(seed 000's feature-flag overrides), always with a reason and optionally until a date."""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from entitlements.domain.alerts import check_alerts
from entitlements.domain.checks import (
    check_bool,
    check_count,
    check_id,
    check_key,
    check_text,
    parse_enum,
)
from entitlements.domain.instant import as_optional_utc, as_utc, aware, optional_given
from entitlements.domain.owner import Owner
from entitlements.domain.plan import Action, as_actions
from entitlements.errors import InvalidInput

__all__ = ["Override", "OverrideKind"]

MAX_REASON = 2000


class OverrideKind(enum.StrEnum):
    """Whether an override decides a feature or a limit."""

    FEATURE = "feature"
    LIMIT = "limit"


def require_reason(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(
            "reason", "an override needs a reason (say why, for the next person)", value
        )
    return check_text(value, "reason", max_length=MAX_REASON).strip()


def _kind(value: object) -> OverrideKind:
    return parse_enum(OverrideKind, value, "override.kind")


def _key(value: object) -> str:
    return check_key(value, "override.key")


def _actor(value: object) -> str:
    return check_id(value, "actor")


def _enabled(value: object) -> bool:
    return check_bool(value, "enabled")


def _alerts(value: object) -> tuple[int, ...] | None:
    return None if value is None else check_alerts(value, "override.alerts")


def _value(value: object) -> int | None:
    return None if value is None else check_count(value, "override.value")


@attrs.frozen
class Override:
    """For a ``feature`` override, ``enabled`` (and optionally ``actions``) decide; for a
    ``limit`` override, ``value`` replaces the limit (``None``: unlimited)."""

    owner: Owner
    """The owner it applies to."""
    kind: OverrideKind = attrs.field(converter=_kind)
    """Whether it decides a feature or replaces a limit."""
    key: str = attrs.field(converter=_key)
    """The feature or limit name it decides."""
    reason: str = attrs.field(converter=require_reason)
    """Why staff set it; required, because an exception nobody can explain is never removed.
    """
    actor: str = attrs.field(converter=_actor)
    """Who set it."""
    created_at: datetime = attrs.field(converter=as_utc, validator=aware)
    """When it was set."""
    expires_at: datetime | None = attrs.field(
        default=None, converter=as_optional_utc, validator=optional_given
    )
    """When it stops applying by itself (``None``: until removed); answers follow it without
    a sweep."""
    enabled: bool = attrs.field(default=True, converter=_enabled)
    """For a feature: granted (``True``) or withheld (``False``) whatever the plan says."""
    actions: frozenset[Action] | None = attrs.field(default=None, converter=as_actions)
    """For a feature: the actions granted (``None``: every action)."""
    value: int | None = attrs.field(default=None, converter=_value)
    """For a limit: the value that replaces the plan's (``None``: unlimited)."""
    alerts: tuple[int, ...] | None = attrs.field(default=None, converter=_alerts)
    """For a limit: the alert thresholds (percent) that replace the plan's and add-ons'
    for this owner (``None``: theirs stand; empty: none)."""

    def __attrs_post_init__(self) -> None:
        if self.expires_at is not None and self.expires_at <= self.created_at:
            raise InvalidInput(
                "expires_at", "must be after the time the override is set", self.expires_at
            )
        if not isinstance(self.enabled, bool):
            raise InvalidInput("enabled", "must be True or False", self.enabled)

    @classmethod
    def feature(
        cls,
        owner: Owner,
        key: str,
        *,
        enabled: bool,
        reason: str,
        actor: str,
        at: datetime,
        expires_at: datetime | None = None,
        actions: frozenset[Action] | None = None,
    ) -> Override:
        """An override of one feature; ``enabled`` is a keyword so a call always says which
        way it goes."""
        return cls(
            owner, OverrideKind.FEATURE, key, reason, actor, at, expires_at, enabled, actions
        )

    @classmethod
    def limit(
        cls,
        owner: Owner,
        key: str,
        *,
        value: int | None,
        reason: str,
        actor: str,
        at: datetime,
        expires_at: datetime | None = None,
        alerts: tuple[int, ...] | None = None,
    ) -> Override:
        """An override that replaces one limit's value (and, given ``alerts``, its alert
        thresholds)."""
        return cls(
            owner,
            OverrideKind.LIMIT,
            key,
            reason,
            actor,
            at,
            expires_at,
            value=value,
            alerts=alerts,
        )

    def is_active(self, now: datetime) -> bool:
        """Whether it still applies at ``now``."""
        return self.expires_at is None or now < self.expires_at
