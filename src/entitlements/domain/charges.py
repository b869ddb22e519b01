"""What a plan charges besides its flat price: per seat, per add-on unit, per metered use.

Charges are terms of a plan version, like its limits: revising one makes a new version,
and a subscription pays what the version it holds says. All amounts are in the plan's
currency and are `Decimal` (never a float). How much of a charge a period owes is
`entitlements.domain.invoice`'s business; this module only says what each charge is and
what a quantity of it costs.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

import attrs

from entitlements.domain.checks import check_count, check_key, parse_enum
from entitlements.errors import InvalidInput

__all__ = [
    "AddOnCharge",
    "Charge",
    "SeatCharge",
    "Tier",
    "TierMode",
    "UsageCharge",
    "charges_document",
    "charges_from",
    "check_charges",
    "unit_amount",
]

MAX_TIERS = 50


def unit_amount(value: object, field: str, *, allow_zero: bool = True) -> Decimal:
    """A money amount as a host may write it: a `Decimal`, an int or a string (never a
    float), finite, not negative, below 10^12."""
    if isinstance(value, bool | float) or not isinstance(value, Decimal | str | int):
        raise InvalidInput(field, "must be a Decimal or a string such as '9.99', never a float")
    try:
        amount = Decimal(value)
    except (InvalidOperation, ValueError):
        raise InvalidInput(field, f"is not a decimal amount: {value!r}", value) from None
    if not amount.is_finite() or amount < 0 or (amount == 0 and not allow_zero):
        raise InvalidInput(field, "must be a finite amount, not negative", value)
    if amount >= Decimal(10) ** 12:
        raise InvalidInput(field, "is too large", value)
    return amount


def _seat_unit(value: object) -> Decimal:
    return unit_amount(value, "seat_charge.unit_amount", allow_zero=False)


def _included(value: object) -> int:
    return check_count(value, "seat_charge.included")


@attrs.frozen
class SeatCharge:
    """A price per purchased seat beyond the ``included`` ones, per billing cycle."""

    unit_amount: Decimal = attrs.field(converter=_seat_unit)
    """What one seat costs for a whole period."""
    included: int = attrs.field(default=0, converter=_included)
    """Seats the flat price already pays for."""

    def quantity(self, seats: int | None) -> int:
        """The seats billed for ``seats`` purchased (none when seats are not counted)."""
        return 0 if seats is None else max(0, seats - self.included)


def _addon_key(value: object) -> str:
    return check_key(value, "addon_charge.addon")


def _addon_unit(value: object) -> Decimal:
    return unit_amount(value, "addon_charge.unit_amount", allow_zero=False)


@attrs.frozen
class AddOnCharge:
    """A price per unit of the add-on keyed ``addon`` (its ``quantity``), per billing
    cycle."""

    addon: str = attrs.field(converter=_addon_key)
    """The add-on's key on the subscription."""
    unit_amount: Decimal = attrs.field(converter=_addon_unit)
    """What one unit costs for a whole period."""


def _up_to(value: object) -> int | None:
    return None if value is None else check_count(value, "tier.up_to", minimum=1)


def _tier_unit(value: object) -> Decimal:
    return unit_amount(value, "tier.unit_amount")


def _tier_flat(value: object) -> Decimal:
    return unit_amount(value, "tier.flat_amount")


@attrs.frozen
class Tier:
    """Units up to and including ``up_to`` (``None``: every unit beyond the previous tier)
    cost ``unit_amount`` each, plus ``flat_amount`` once when the tier is reached."""

    up_to: int | None = attrs.field(converter=_up_to)
    """The last unit in this tier (``None`` for the last tier)."""
    unit_amount: Decimal = attrs.field(converter=_tier_unit)
    """The price of each unit in the tier."""
    flat_amount: Decimal = attrs.field(default=Decimal(0), converter=_tier_flat)
    """A fixed amount charged when usage reaches the tier."""


class TierMode(enum.StrEnum):
    """``graduated``: each unit is priced by the tier it falls in (the first 1,000 at one
    price, the next at another); ``volume``: every unit is priced by the tier the total
    falls in."""

    GRADUATED = "graduated"
    VOLUME = "volume"


def _metric(value: object) -> str:
    return check_key(value, "usage_charge.metric")


def _tiers(value: object) -> tuple[Tier, ...]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise InvalidInput("usage_charge.tiers", "must be a sequence of Tier values", value)
    tiers = tuple(value)
    if not tiers or len(tiers) > MAX_TIERS or not all(isinstance(t, Tier) for t in tiers):
        raise InvalidInput("usage_charge.tiers", f"must be 1 to {MAX_TIERS} Tier values", value)
    bounds = [t.up_to for t in tiers]
    if bounds[-1] is not None or None in bounds[:-1]:
        raise InvalidInput(
            "usage_charge.tiers", "only the last tier, and it always, has up_to=None", value
        )
    finite = [b for b in bounds if b is not None]
    if finite != sorted(set(finite)):
        raise InvalidInput("usage_charge.tiers", "up_to must increase from tier to tier", value)
    return tiers


def _mode(value: object) -> TierMode:
    return parse_enum(TierMode, value, "usage_charge.mode")


@attrs.frozen
class UsageCharge:
    """A price for the period's use of the metered limit ``metric``, by tiers."""

    metric: str = attrs.field(converter=_metric)
    """The metered limit whose counter for the period is billed."""
    tiers: tuple[Tier, ...] = attrs.field(converter=_tiers)
    """The price tiers, by increasing ``up_to``; the last has ``up_to=None``."""
    mode: TierMode = attrs.field(default=TierMode.GRADUATED, converter=_mode)
    """Whether tiers price the units in them (graduated) or all units (volume)."""

    def cost(self, used: int) -> Fraction:
        """What ``used`` units cost, exactly (no use costs nothing, flat amounts
        included: a tier is reached by its first unit)."""
        if used <= 0:
            return Fraction(0)
        if self.mode is TierMode.VOLUME:
            tier = next(t for t in self.tiers if t.up_to is None or used <= t.up_to)
            return Fraction(tier.unit_amount) * used + Fraction(tier.flat_amount)
        total, below = Fraction(0), 0
        for tier in self.tiers:
            if used <= below:
                break
            top = used if tier.up_to is None else min(used, tier.up_to)
            total += Fraction(tier.unit_amount) * (top - below) + Fraction(tier.flat_amount)
            below = top
        return total


Charge = SeatCharge | AddOnCharge | UsageCharge
"""A plan's charges besides its flat price."""


def check_charges(value: object) -> tuple[Charge, ...]:
    """A plan's charges: at most one seat charge, one per add-on and one per metric."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise InvalidInput("plan.charges", "must be a sequence of charges", value)
    charges = tuple(value)
    keys: list[tuple[str, str]] = []
    for charge in charges:
        if isinstance(charge, SeatCharge):
            keys.append(("seats", ""))
        elif isinstance(charge, AddOnCharge):
            keys.append(("addon", charge.addon))
        elif isinstance(charge, UsageCharge):
            keys.append(("usage", charge.metric))
        else:
            raise InvalidInput(
                "plan.charges", "must be SeatCharge, AddOnCharge or UsageCharge values", charge
            )
    if len(set(keys)) != len(keys):
        raise InvalidInput(
            "plan.charges", "charges the same thing twice (one per seat, add-on or metric)", value
        )
    return charges


def _tier_document(tier: Tier) -> dict[str, Any]:
    """The last tier has no ``up_to`` (TOML has no null)."""
    doc: dict[str, Any] = {} if tier.up_to is None else {"up_to": tier.up_to}
    doc["unit_amount"] = str(tier.unit_amount)
    if tier.flat_amount:
        doc["flat_amount"] = str(tier.flat_amount)
    return doc


def charges_document(charges: Iterable[Charge]) -> list[dict[str, Any]]:
    """The JSON document stores and catalogs keep (amounts as decimal strings)."""
    out: list[dict[str, Any]] = []
    for charge in charges:
        if isinstance(charge, SeatCharge):
            out.append(
                {"seats": {"unit_amount": str(charge.unit_amount), "included": charge.included}}
            )
        elif isinstance(charge, AddOnCharge):
            out.append({"addon": {"key": charge.addon, "unit_amount": str(charge.unit_amount)}})
        else:
            out.append(
                {
                    "usage": {
                        "metric": charge.metric,
                        "mode": charge.mode.value,
                        "tiers": [_tier_document(t) for t in charge.tiers],
                    }
                }
            )
    return out


def _one(document: object, field: str) -> Charge:
    if not isinstance(document, Mapping) or len(document) != 1:
        raise InvalidInput(field, "must be one of {seats = ...}, {addon = ...}, {usage = ...}")
    ((kind, body),) = document.items()
    if not isinstance(body, Mapping):
        raise InvalidInput(f"{field}.{kind}", "must be a table of the charge's fields", body)
    if kind == "seats":
        _known(body, f"{field}.seats", {"unit_amount", "included"})
        return SeatCharge(body.get("unit_amount"), body.get("included", 0))
    if kind == "addon":
        _known(body, f"{field}.addon", {"key", "unit_amount"})
        return AddOnCharge(body.get("key"), body.get("unit_amount"))
    if kind == "usage":
        _known(body, f"{field}.usage", {"metric", "mode", "tiers"})
        tiers = body.get("tiers")
        if not isinstance(tiers, list):
            raise InvalidInput(f"{field}.usage.tiers", "must be a list of tiers", tiers)
        return UsageCharge(
            body.get("metric"),
            tuple(_tier(t, f"{field}.usage.tiers[{n}]") for n, t in enumerate(tiers)),
            body.get("mode", TierMode.GRADUATED.value),
        )
    raise InvalidInput(field, f"unknown charge {kind!r} (seats, addon or usage)", kind)


def _tier(document: object, field: str) -> Tier:
    if not isinstance(document, Mapping):
        raise InvalidInput(field, "must be a table with up_to and unit_amount", document)
    _known(document, field, {"up_to", "unit_amount", "flat_amount"})
    return Tier(
        document.get("up_to"),
        document.get("unit_amount"),
        document.get("flat_amount", "0"),
    )


def _known(document: Mapping[str, Any], field: str, names: set[str]) -> None:
    unknown = sorted(set(document) - names)
    if unknown:
        raise InvalidInput(
            f"{field}.{unknown[0]}", f"is not a known field ({', '.join(sorted(names))})"
        )


def charges_from(document: object, field: str = "charges") -> tuple[Charge, ...]:
    """The charges a document (`charges_document`'s shape) says; `InvalidInput` names
    the place of a bad value."""
    if document is None:
        return ()
    if not isinstance(document, list):
        raise InvalidInput(field, "must be a list of charges", document)
    return check_charges(_placed(d, f"{field}[{n}]") for n, d in enumerate(document))


def _placed(document: object, field: str) -> Charge:
    """`_one`, with errors of the values inside named by their place in the document."""
    try:
        return _one(document, field)
    except InvalidInput as exc:
        if exc.field.startswith(field):
            raise
        detail = exc.message.split(": ", 1)[-1]
        raise InvalidInput(f"{field}.{exc.field}", detail) from None
