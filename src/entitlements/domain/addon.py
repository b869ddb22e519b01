"""Add-ons: optional extras on a subscription that raise limits or turn on features
(seed 002 lists them as missing; seed 001 sells "editions" the same way)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import attrs

from entitlements.domain.alerts import check_alerts
from entitlements.domain.checks import check_count, check_key
from entitlements.domain.frozen import FrozenDict
from entitlements.domain.instant import as_optional_utc, optional_given
from entitlements.domain.plan import Feature, as_features
from entitlements.errors import InvalidInput

__all__ = ["AddOn"]


def _key(value: object) -> str:
    return check_key(value, "addon.key")


def _quantity(value: object) -> int:
    return check_count(value, "addon.quantity", maximum=10**6)


def _limit_deltas(value: Mapping[str, int | None]) -> Mapping[str, int | None]:
    if not isinstance(value, Mapping):
        raise InvalidInput("addon.limits", "must map limit names to amounts", value)
    out: dict[str, int | None] = {}
    for name, amount in value.items():
        check_key(name, "add-on limit name")
        out[name] = None if amount is None else check_count(amount, f"addon.limits.{name}")
    return FrozenDict(out)


def _alerts(value: object) -> Mapping[str, tuple[int, ...]]:
    if not isinstance(value, Mapping):
        raise InvalidInput("addon.alerts", "must map limit names to percentages", value)
    return FrozenDict(
        {
            check_key(name, "add-on alert limit name"): check_alerts(p, f"addon.alerts.{name}")
            for name, p in value.items()
        }
    )


@attrs.frozen
class AddOn:
    """``limits`` maps a limit name to an amount per unit of ``quantity`` (``None``:
    unlimited); it combines with the plan's value as that limit's ``combine`` says.
    ``ends_at`` ends it by itself (a bundle bought for a season): answers stop counting it
    at that instant, and the sweep removes it from the subscription."""

    key: str = attrs.field(converter=_key)
    """Names the add-on on the subscription; adding one with the same key replaces it."""
    limits: Mapping[str, int | None] = attrs.field(factory=dict, converter=_limit_deltas)
    """Amount per unit for each limit it raises (``None``: makes the limit unlimited)."""
    features: Mapping[str, Feature] = attrs.field(factory=dict, converter=as_features)
    """Features it grants on top of the plan, whatever the plan says."""
    quantity: int = attrs.field(default=1, converter=_quantity)
    """How many units were bought; multiplies every amount in ``limits``."""
    ends_at: datetime | None = attrs.field(
        default=None, converter=as_optional_utc, validator=optional_given
    )
    """When it stops counting by itself (``None``: until removed); answers follow it without
    a sweep."""

    alerts: Mapping[str, tuple[int, ...]] = attrs.field(factory=dict, converter=_alerts)
    """Alert thresholds (percent) it adds to limits of the subscription, on top of the
    plan's: an owner who bought more API calls may want to hear at 50% too."""

    def amount(self, limit_name: str) -> int | None:
        """What it adds to ``limit_name`` in total (per-unit amount times ``quantity``;
        ``None``: unlimited)."""
        per_unit = self.limits[limit_name]
        return None if per_unit is None else per_unit * self.quantity
