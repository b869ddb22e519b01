"""Plan catalogs as configuration: load and dump the plans of a product from TOML or JSON.

A catalog is reviewed like code and applied to a store with ``ents.plans.sync(catalog)``.
Errors name the file and the exact place of the bad value
(``catalog.toml: plans.growth.limits.seats.value: must not be negative``), so the person
editing the file does not have to guess.

The document shape (TOML shown; JSON has the same structure)::

    [plans.growth]
    name = "Growth"
    status = "active"            # draft | active | archived | retired
    trial_days = 14
    owner_kinds = ["workspace"]  # optional; empty means any
    features = { export = true, premium = { actions = ["read"] } }

    [plans.growth.limits]
    seats = { value = 5, kind = "seats" }
    api_calls = { value = "unlimited", kind = "metered", enforcement = "soft" }
    storage = { value = 100, unit = "GB", alerts = [80, 100] }  # hear at 80% and 100%
    projects = 20                # shorthand for { value = 20 }

    [plans.growth.price]         # absent for a free plan
    amount = "49.00"             # a string: money is never a float
    currency = "EUR"
    cycle = { unit = "month", every = 1 }

    [[plans.growth.charges]]     # optional: besides the flat price, in its currency
    seats = { unit_amount = "8.00", included = 5 }
    [[plans.growth.charges]]
    usage = { metric = "api_calls", mode = "graduated", tiers = [
        { up_to = 10000, unit_amount = "0" },
        { unit_amount = "0.002" } ] }

    [plans.enterprise.price]     # each customer's contract sets the amount
    by_contract = true
    cycle = { unit = "year" }
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import attrs
import tomli_w

from entitlements.domain.billing_cycle import BillingCycle
from entitlements.domain.charges import Charge, charges_document, charges_from
from entitlements.domain.plan import ByContract, Feature, Limit, Plan, Price
from entitlements.errors import InvalidInput

__all__ = ["Catalog", "CatalogError", "dump_catalog", "load_catalog", "loads_catalog"]

Format = Literal["toml", "json"]
UNLIMITED = "unlimited"


class CatalogError(InvalidInput):
    """A catalog file is malformed; ``field`` is the dotted path of the bad value."""

    def __init__(self, where: str, path: str, message: str) -> None:
        super().__init__(path, message)
        self.message = f"{where}: {path}: {message}" if where else f"{path}: {message}"
        self.where = where
        self.path = path


@attrs.frozen
class Catalog:
    """Plans read from a catalog file, to ``sync`` into the store."""

    plans: tuple[Plan, ...]
    """The plans, in file order."""

    def __attrs_post_init__(self) -> None:
        keys = [p.key for p in self.plans]
        if len(set(keys)) != len(keys):
            raise InvalidInput("plans", "a plan key appears twice in the catalog", keys)

    def plan(self, key: str) -> Plan:
        """The plan ``key`` of the file (`InvalidInput` if it has none)."""
        for plan in self.plans:
            if plan.key == key:
                return plan
        raise InvalidInput("plan", f"the catalog has no plan {key!r}", key)


class _Reader:
    def __init__(self, where: str) -> None:
        self.where = where

    @contextmanager
    def at(self, path: str) -> Iterator[None]:
        try:
            yield
        except CatalogError:
            raise
        except InvalidInput as exc:
            detail = exc.message.split(": ", 1)[1] if ": " in exc.message else exc.message
            raise CatalogError(self.where, path, detail) from None
        except (TypeError, ValueError, KeyError) as exc:
            raise CatalogError(self.where, path, str(exc)) from None

    def mapping(self, value: object, path: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise CatalogError(
                self.where, path, f"must be a table/object, got {type(value).__name__}"
            )
        return value

    def known(self, doc: Mapping[str, Any], path: str, allowed: set[str]) -> None:
        unknown = sorted(set(doc) - allowed)
        if unknown:
            raise CatalogError(
                self.where,
                f"{path}.{unknown[0]}",
                f"unknown field (expected one of: {', '.join(sorted(allowed))})",
            )

    def limit(self, value: object, path: str) -> Limit:
        doc: Mapping[str, Any] = value if isinstance(value, Mapping) else {"value": value}
        self.known(doc, path, {"value", "unit", "kind", "enforcement", "combine", "alerts"})
        if "value" not in doc:
            raise CatalogError(
                self.where, f"{path}.value", f'is required (a number or "{UNLIMITED}")'
            )
        raw = None if doc["value"] == UNLIMITED else doc["value"]
        if isinstance(raw, str):
            raise CatalogError(
                self.where, f"{path}.value", f'must be a whole number or "{UNLIMITED}"'
            )
        fields = {
            k: doc[k] for k in ("unit", "kind", "enforcement", "combine", "alerts") if k in doc
        }
        if not isinstance(fields.get("unit", ""), str):
            raise CatalogError(self.where, f"{path}.unit", "must be text")
        try:
            return Limit(raw, **fields)
        except InvalidInput as exc:
            field = exc.field.removeprefix("limit.")
            raise CatalogError(
                self.where, f"{path}.{field}", exc.message.split(": ", 1)[-1]
            ) from None

    def feature(self, value: object, path: str) -> Feature:
        if isinstance(value, bool):
            return Feature(value)
        doc = self.mapping(value, path)
        self.known(doc, path, {"enabled", "actions"})
        enabled = doc.get("enabled", True)
        if not isinstance(enabled, bool):
            raise CatalogError(self.where, f"{path}.enabled", "must be true or false")
        with self.at(f"{path}.actions"):
            return Feature(enabled, doc.get("actions"))

    def cycle(self, doc: Mapping[str, Any], path: str) -> BillingCycle:
        if "cycle" not in doc:
            return BillingCycle.monthly()
        cycle_doc = self.mapping(doc["cycle"], f"{path}.cycle")
        self.known(cycle_doc, f"{path}.cycle", {"unit", "every"})
        with self.at(f"{path}.cycle"):
            return BillingCycle(cycle_doc.get("unit", "month"), cycle_doc.get("every", 1))

    def price(self, value: object, path: str) -> Price | ByContract:
        doc = self.mapping(value, path)
        self.known(doc, path, {"amount", "currency", "cycle", "by_contract"})
        if "by_contract" in doc:
            return self.by_contract(doc, path)
        for required in ("amount", "currency"):
            if required not in doc:
                raise CatalogError(self.where, f"{path}.{required}", "is required")
        cycle = self.cycle(doc, path)
        amount = doc["amount"]
        with self.at(f"{path}.amount"):
            if isinstance(amount, float):
                raise InvalidInput("amount", 'must be a string such as "49.00", never a float')
            Price(amount, "EUR")
        with self.at(f"{path}.currency"):
            return Price(amount, doc["currency"], cycle)

    def by_contract(self, doc: Mapping[str, Any], path: str) -> ByContract:
        """``by_contract = true``: each customer's contract sets the amount."""
        if doc["by_contract"] is not True:
            raise CatalogError(
                self.where, f"{path}.by_contract", "must be true (leave it out for a list price)"
            )
        listed = sorted({"amount", "currency"} & set(doc))
        if listed:
            raise CatalogError(
                self.where,
                f"{path}.{listed[0]}",
                "a price set by contract has no amount or currency (each contract has its own)",
            )
        return ByContract(self.cycle(doc, path))

    def terms(self, doc: Mapping[str, Any], path: str) -> dict[str, Any]:
        """The plan's versioned terms read from the file (limits, features, price)."""
        return {
            "limits": {
                name: self.limit(v, f"{path}.limits.{name}")
                for name, v in self.mapping(doc.get("limits", {}), f"{path}.limits").items()
            },
            "features": {
                name: self.feature(v, f"{path}.features.{name}")
                for name, v in self.mapping(doc.get("features", {}), f"{path}.features").items()
            },
            "price": self.price(doc["price"], f"{path}.price") if "price" in doc else None,
            "charges": self.charges(doc.get("charges"), f"{path}.charges"),
        }

    def charges(self, value: object, path: str) -> tuple[Charge, ...]:
        """``[[plans.x.charges]]``: one table per charge (seats, addon or usage)."""
        try:
            return charges_from(value, path)
        except InvalidInput as exc:
            detail = exc.message.split(": ", 1)[-1]
            raise CatalogError(self.where, exc.field, detail) from None

    def settings(self, doc: Mapping[str, Any], path: str) -> dict[str, Any]:
        """Status, trial length and owner kinds, where the file gives them."""
        fields: dict[str, Any] = {
            k: doc[k] for k in ("status", "trial_days", "owner_kinds", "net_days") if k in doc
        }
        kinds = fields.get("owner_kinds", [])
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
            raise CatalogError(self.where, f"{path}.owner_kinds", "must be a list of owner kinds")
        return fields

    def plan(self, key: str, value: object) -> Plan:
        path = f"plans.{key}"
        doc = self.mapping(value, path)
        self.known(
            doc,
            path,
            {
                "name",
                "status",
                "trial_days",
                "owner_kinds",
                "limits",
                "features",
                "price",
                "charges",
                "net_days",
            },
        )
        if "name" not in doc:
            raise CatalogError(self.where, f"{path}.name", "is required")
        terms = self.terms(doc, path)
        fields = self.settings(doc, path)
        try:
            return Plan(key, doc["name"], **terms, **fields)
        except InvalidInput as exc:
            field = exc.field.removeprefix("plan.")
            detail = exc.message.split(": ", 1)[-1]
            raise CatalogError(
                self.where, f"{path}.{field}" if field != "key" else path, detail
            ) from None

    def catalog(self, document: object) -> Catalog:
        doc = self.mapping(document, "(top level)")
        self.known(doc, "(top level)", {"plans"})
        plans = self.mapping(doc.get("plans", {}), "plans")
        return Catalog(tuple(self.plan(key, value) for key, value in plans.items()))


def loads_catalog(text: str, format: Format = "toml", *, where: str = "") -> Catalog:
    """Parse a catalog document; ``where`` (a file name) prefixes error messages."""
    if format not in ("toml", "json"):
        raise InvalidInput("format", "must be 'toml' or 'json'", format)
    if not isinstance(text, str):
        raise InvalidInput("text", "must be the catalog document as a string", text)
    try:
        document = tomllib.loads(text) if format == "toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CatalogError(where, "(syntax)", str(exc) or type(exc).__name__) from None
    return _Reader(where).catalog(document)


def load_catalog(path: str | Path, format: Format | None = None) -> Catalog:
    """Load a catalog file; the format follows the suffix unless given."""
    if not isinstance(path, str | Path):
        raise InvalidInput("path", "must be a file path", path)
    file = Path(path)
    chosen: Format = format or ("json" if file.suffix.lower() == ".json" else "toml")
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(str(file), "(file)", exc.strerror or str(exc)) from None
    except UnicodeDecodeError as exc:
        raise CatalogError(str(file), "(file)", f"not UTF-8 text: {exc.reason}") from None
    return loads_catalog(text, chosen, where=file.name)


def _limit_document(limit: Limit) -> dict[str, Any]:
    doc: dict[str, Any] = {"value": UNLIMITED if limit.value is None else limit.value}
    defaults = Limit(0)
    for name in ("unit", "kind", "enforcement", "combine"):
        value = getattr(limit, name)
        if value != getattr(defaults, name):
            doc[name] = str(value)
    if limit.alerts:
        doc["alerts"] = list(limit.alerts)
    return doc


def _feature_document(feature: Feature) -> bool | dict[str, Any]:
    if feature.actions is None:
        return feature.enabled
    doc: dict[str, Any] = {"actions": sorted(a.value for a in feature.actions)}
    if not feature.enabled:
        doc["enabled"] = False
    return doc


def _plan_document(plan: Plan) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": plan.name,
        "status": plan.status.value,
        "trial_days": plan.trial_days,
    }
    if plan.owner_kinds:
        doc["owner_kinds"] = sorted(plan.owner_kinds)
    doc["limits"] = {name: _limit_document(limit) for name, limit in plan.limits.items()}
    doc["features"] = {name: _feature_document(f) for name, f in plan.features.items()}
    if plan.price is not None:
        doc["price"] = _price_document(plan.price)
    if plan.charges:
        doc["charges"] = charges_document(plan.charges)
    if plan.net_days is not None:
        doc["net_days"] = plan.net_days
    return doc


def _price_document(price: Price | ByContract) -> dict[str, Any]:
    cycle = {"unit": price.cycle.unit.value, "every": price.cycle.every}
    if isinstance(price, ByContract):
        return {"by_contract": True, "cycle": cycle}
    return {"amount": str(price.amount), "currency": price.currency, "cycle": cycle}


def dump_catalog(catalog: Catalog, format: Format = "toml") -> str:
    """The catalog as a document that `loads_catalog` reads back to an equal catalog."""
    document = {"plans": {plan.key: _plan_document(plan) for plan in catalog.plans}}
    if format == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return tomli_w.dumps(document)
