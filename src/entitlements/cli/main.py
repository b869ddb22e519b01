"""``entitlements``: run billing by hand (seed 000's admin console) from a terminal.

The database is a SQLite file in the working directory (``entitlements.db``) unless
``--db URL`` (or ``ENTITLEMENTS_DATABASE_URL``) names another; the schema is brought up to
date on every run. Owners are written ``kind:id`` or ``tenant/kind:id``.

Exit codes: 0 done (for ``check``: allowed); 1 refused by a rule (an illegal transition, a
limit, a plan that cannot be assigned...); 2 bad command line or input; 3 not found;
4 conflict (changed meanwhile, already exists); 5 storage unavailable or failed;
10 ``check`` answered "not allowed". Errors are one line on stderr; nothing is changed.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from entitlements.adapters.sql import SqlStore
from entitlements.catalog import load_catalog
from entitlements.cli.render import emit, table
from entitlements.domain.actor import Actor
from entitlements.domain.contracts.contract import SignerSpec
from entitlements.domain.instant import utc
from entitlements.domain.owner import Owner
from entitlements.domain.plan_change import SubscriptionChange
from entitlements.domain.subscription import Subscription
from entitlements.domain.usage import OverQuotaPolicy
from entitlements.errors import Conflict, EntitlementsError, InvalidInput, NotFound, StorageError
from entitlements.service.entitlements import Entitlements

__all__ = ["EXIT", "main"]

EXIT = {
    "ok": 0,
    "refused": 1,
    "usage": 2,
    "not_found": 3,
    "conflict": 4,
    "storage": 5,
    "denied": 10,
}
DEFAULT_DB = "sqlite:///entitlements.db"
_SIGNER = re.compile(r"^\s*(?P<name>[^<]+?)\s*<(?P<email>[^>]+)>\s*(?:\((?P<role>[^)]*)\))?\s*$")


class Usage(Exception):
    """A bad command line: exit 2."""


def _owner(text: str) -> Owner:
    return Owner.parse(text)


def _time(text: str) -> datetime:
    try:
        return utc(datetime.fromisoformat(text), "time")
    except ValueError:
        raise InvalidInput(
            "time", f"not an ISO 8601 time: {text!r} (e.g. 2026-05-01T00:00:00+00:00)"
        ) from None


def _signer(text: str) -> SignerSpec:
    match = _SIGNER.match(text)
    if match is None:
        raise InvalidInput(
            "signer", f"write signers as 'Name <email>' or 'Name <email> (role)', got {text!r}"
        )
    return SignerSpec(match["name"], match["email"], match["role"] or "")


def _subscription_row(sub: Subscription) -> dict[str, Any]:
    return {
        "owner": str(sub.owner),
        "plan": f"{sub.plan_key} v{sub.plan_version}",
        "status": sub.status.value,
        "seats": sub.seats,
        "trial_ends": sub.trial_ends_at.date() if sub.trial_ends_at else None,
        "period_end": sub.current_period.end.date() if sub.current_period else None,
        "cancels_at_period_end": sub.cancel_at_period_end,
        "notes": sub.notes or None,
    }


class Console:
    def __init__(self, ents: Entitlements, args: argparse.Namespace) -> None:
        self.ents = ents
        self.args = args
        self.actor = Actor(args.actor)
        self.now = args.now

    def out(self, value: Any, human: str) -> int:
        emit(value, human, as_json=self.args.json)
        return EXIT["ok"]

    # -- plans -------------------------------------------------------------------------

    def plans_load(self) -> int:
        result = self.ents.plans.sync(
            load_catalog(self.args.file), actor=self.actor, reason=self.args.reason
        )
        human = (
            f"defined: {', '.join(result.defined) or '-'}\nchanged: {', '.join(result.changed) or '-'}\n"
            f"not in the file (left alone): {', '.join(result.not_in_catalog) or '-'}"
        )
        return self.out(result, human)

    def plans_list(self) -> int:
        plans = self.ents.plans.list()
        rows = [
            {
                "key": p.key,
                "name": p.name,
                "status": p.status.value,
                "version": p.version,
                "price": "free"
                if p.price is None
                else f"{p.price.amount} {p.price.currency}/{p.price.cycle}",
                "limits": len(p.limits),
                "features": len(p.features),
            }
            for p in plans
        ]
        return self.out(
            plans, table(rows, ["key", "name", "status", "version", "price", "limits", "features"])
        )

    def plans_show(self) -> int:
        plan = self.ents.plans.get(self.args.key, self.args.version)
        limits = [
            {
                "limit": n,
                "value": "unlimited" if limit.value is None else limit.value,
                "kind": limit.kind.value,
                "enforcement": limit.enforcement.value,
            }
            for n, limit in plan.limits.items()
        ]
        features = [
            {"feature": k, "on": f.enabled, "actions": sorted(f.granted_actions) or None}
            for k, f in plan.features.items()
        ]
        human = (
            f"{plan.name} ({plan.key} v{plan.version}) — {plan.status.value}, trial {plan.trial_days} days\n\n"
            f"{table(limits, ['limit', 'value', 'kind', 'enforcement'])}\n\n"
            f"{table(features, ['feature', 'on', 'actions'])}"
        )
        return self.out(plan, human)

    def plans_status(self) -> int:
        plan = self.ents.plans.set_status(
            self.args.key, self.args.status, actor=self.actor, reason=self.args.reason
        )
        return self.out(plan, f"{plan.key} is now {plan.status.value}")

    # -- subscriptions -------------------------------------------------------------------

    def _show(self, sub: Subscription, verb: str) -> int:
        return self.out(
            sub, f"{verb}\n{table([_subscription_row(sub)], list(_subscription_row(sub)))}"
        )

    def subs_trial(self) -> int:
        a = self.args
        sub = self.ents.subscriptions.start_trial(
            _owner(a.owner),
            a.plan,
            actor=self.actor,
            trial_days=a.days,
            seats=a.seats,
            notes=a.notes or "",
            now=self.now,
        )
        return self._show(sub, "trial started")

    def subs_convert(self) -> int:
        a = self.args
        kwargs: dict[str, Any] = {"plan_key": a.plan, "now": self.now, "reason": a.reason}
        if a.seats is not None:
            kwargs["seats"] = a.seats
        if a.notes is not None:
            kwargs["notes"] = a.notes
        return self._show(
            self.ents.subscriptions.convert(_owner(a.owner), actor=self.actor, **kwargs),
            "converted",
        )

    def _policy(self) -> OverQuotaPolicy:
        return OverQuotaPolicy.ALLOW if self.args.allow_over_quota else OverQuotaPolicy.REFUSE

    def subs_change_plan(self) -> int:
        a = self.args
        change = self.ents.subscriptions.change_plan(
            _owner(a.owner),
            a.plan,
            actor=self.actor,
            now=self.now,
            reason=a.reason,
            if_over_quota=self._policy(),
        )
        return self._changed(change, "plan changed")

    def subs_seats(self) -> int:
        a = self.args
        change = self.ents.subscriptions.change_seats(
            _owner(a.owner),
            a.seats,
            actor=self.actor,
            now=self.now,
            reason=a.reason,
            if_over_quota=self._policy(),
        )
        return self._changed(change, "seats changed")

    def _changed(self, change: SubscriptionChange, verb: str) -> int:
        warnings = "".join(
            f"\nover quota: {o.metric} {o.used} > {o.limit}" for o in change.over_quota
        )
        return self._show(change.subscription, verb + warnings)

    def subs_lifecycle(self) -> int:
        a = self.args
        call: Callable[..., Subscription] = getattr(self.ents.subscriptions, a.event)
        extra = {"at_period_end": True} if getattr(a, "at_period_end", False) else {}
        return self._show(
            call(_owner(a.owner), actor=self.actor, now=self.now, reason=a.reason, **extra), a.event
        )

    def subs_show(self) -> int:
        history = self.ents.subscriptions.history(_owner(self.args.owner))
        if not history:
            raise NotFound(f"{self.args.owner} has no subscription")
        rows = [_subscription_row(s) for s in history]
        return self.out(list(history), table(rows, list(rows[0])))

    # -- overrides -----------------------------------------------------------------------

    def overrides_set(self) -> int:
        a = self.args
        owner, until = _owner(a.owner), None if a.until is None else _time(a.until)
        if a.limit is not None or a.unlimited:
            override = self.ents.overrides.set_limit(
                owner,
                a.key,
                None if a.unlimited else a.limit,
                actor=self.actor,
                reason=a.reason,
                expires_at=until,
                now=self.now,
            )
        else:
            override = self.ents.overrides.set_feature(
                owner,
                a.key,
                enabled=a.on,
                actor=self.actor,
                reason=a.reason,
                expires_at=until,
                now=self.now,
            )
        return self.out(override, f"override set on {owner}: {a.key}")

    def overrides_remove(self) -> int:
        a = self.args
        removed = self.ents.overrides.remove(
            _owner(a.owner), a.kind, a.key, actor=self.actor, reason=a.reason, now=self.now
        )
        return self.out(removed, f"override removed: {a.kind} {a.key}")

    def overrides_list(self) -> int:
        found = self.ents.overrides.list(_owner(self.args.owner))
        rows = [
            {
                "kind": o.kind.value,
                "key": o.key,
                "value": o.enabled if o.kind.value == "feature" else o.value,
                "by": o.actor,
                "reason": o.reason,
                "until": o.expires_at,
            }
            for o in found
        ]
        return self.out(list(found), table(rows, ["kind", "key", "value", "by", "reason", "until"]))

    # -- check ---------------------------------------------------------------------------

    def check(self) -> int:
        a = self.args
        owner = _owner(a.owner)
        snapshot = self.ents.resolve(owner, self.now)
        if a.limit:
            decision = snapshot.explain_limit(a.limit)
            shown = "unlimited" if decision.value is None else decision.value
            self.out(decision, f"{a.limit}: {shown} ({decision.reason.value}: {decision.detail})")
            return EXIT["ok"]
        if not a.feature:
            raise Usage("name a feature, or a limit with --limit")
        decision = snapshot.explain(a.feature, a.action)
        verdict = "allowed" if decision.allowed else "not allowed"
        self.out(
            decision,
            f"{a.feature}{':' + a.action if a.action else ''}: {verdict} "
            f"({decision.reason.value}: {decision.detail})",
        )
        return EXIT["ok"] if decision.allowed else EXIT["denied"]

    # -- contracts -----------------------------------------------------------------------

    def contracts_issue(self) -> int:
        a = self.args
        body = Path(a.body_file).read_text(encoding="utf-8") if a.body_file else a.body
        if not body:
            raise Usage("give the agreement with --body-file FILE or --body TEXT")
        contract = self.ents.contracts.issue(
            _owner(a.owner),
            title=a.title,
            body=body,
            signers=[_signer(s) for s in a.signer],
            actor=self.actor,
            plan_key=a.plan,
            term=a.term,
            amount=None if a.amount is None else Decimal(a.amount),
            currency=a.currency,
            sequential=a.sequential,
            now=self.now,
        )
        return self.out(
            contract, f"contract {contract.id} issued (content hash {contract.content_hash})"
        )

    def contracts_send(self) -> int:
        a = self.args
        tokens = self.ents.contracts.send(_owner(a.owner), a.id, actor=self.actor, now=self.now)
        links = {sid: a.link.format(token=t) for sid, t in tokens.items()}
        human = "signing links (shown once; not stored):\n" + "\n".join(
            f"  {k}: {v}" for k, v in links.items()
        )
        return self.out(links, human)

    def contracts_status(self) -> int:
        a = self.args
        contract = self.ents.contracts.get(_owner(a.owner), a.id)
        rows = [
            {"signer": s.id, "role": s.role, "order": s.order, "status": s.status.value}
            for s in contract.signers
        ]
        human = f"{contract.title}: {contract.status.value}\n{table(rows, ['signer', 'role', 'order', 'status'])}"
        return self.out(contract, human)

    def contracts_verify(self) -> int:
        a = self.args
        result = self.ents.contracts.verify(_owner(a.owner), a.id)
        self.out(
            result,
            "verified: every hash and link holds"
            if result.ok
            else "BROKEN: " + "\n  ".join(result.problems),
        )
        return EXIT["ok"] if result.ok else EXIT["refused"]

    # -- audit, sweep ----------------------------------------------------------------------

    def audit_list(self) -> int:
        events = self.ents.audit.for_owner(_owner(self.args.owner))
        rows = [
            {
                "at": e.at.strftime("%Y-%m-%d %H:%M:%S"),
                "actor": e.actor,
                "action": e.action,
                "reason": e.reason,
            }
            for e in events
        ]
        return self.out(list(events), table(rows, ["at", "actor", "action", "reason"]))

    def audit_verify(self) -> int:
        owner = _owner(self.args.owner)
        results = {
            c.id: self.ents.contracts.verify(owner, c.id) for c in self.ents.contracts.list(owner)
        }
        lines = [
            f"{cid}: {'ok' if r.ok else 'BROKEN: ' + (r.first_broken or '')}"
            for cid, r in results.items()
        ]
        self.out(
            {cid: list(r.problems) for cid, r in results.items()},
            "\n".join(lines) or f"{owner} has no contracts to verify",
        )
        return EXIT["ok"] if all(r.ok for r in results.values()) else EXIT["refused"]

    def sweep(self) -> int:
        report = self.ents.process_due(self.now)
        human = (
            f"sweep at {report.now.isoformat()}: {len(report.changes)} subscription changes, "
            f"{len(report.expired_overrides)} overrides expired, {len(report.expired_reservations)} "
            f"reservations freed, {len(report.expired_contracts)} contracts expired"
        )
        if report.failures:
            human += f"; {len(report.failures)} failed:" + "".join(
                f"\n  {f.item}: {f.error}: {f.message}" for f in report.failures
            )
        if report.remaining:
            human += f"\n{report.remaining} still due (failed, or being handled by another worker)"
        code = self.out(report, human)
        return EXIT["refused"] if report.failures else code


class _Parser(argparse.ArgumentParser):
    """Subparsers inherit the class, so every parse error becomes one `Usage` line."""

    def error(self, message: str) -> Any:
        raise Usage(message)


def parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog="entitlements",
        description="Run plans, subscriptions and contracts by hand.",
        epilog=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument(
        "--db",
        default=os.environ.get("ENTITLEMENTS_DATABASE_URL", DEFAULT_DB),
        help=f"database URL (default {DEFAULT_DB})",
    )
    top.add_argument("--json", action="store_true", help="machine-readable output")
    top.add_argument("--actor", default=f"{getpass.getuser()}", help="who is acting (audited)")
    top.add_argument(
        "--now",
        type=str,
        default=None,
        help="act as of this ISO time (tests, back-dating the sweep)",
    )
    groups = top.add_subparsers(dest="group", required=True)

    def command(group: Any, name: str, handler: str, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = group.add_parser(name, help=help)
        p.set_defaults(handler=handler)
        return p

    plans = groups.add_parser("plans", help="the plan catalog").add_subparsers(
        dest="command", required=True
    )
    p = command(plans, "load", "plans_load", "apply a TOML/JSON catalog")
    p.add_argument("file")
    p.add_argument("--reason")
    command(plans, "list", "plans_list", "list plans")
    p = command(plans, "show", "plans_show", "show a plan's limits and features")
    p.add_argument("key")
    p.add_argument("--version", type=int)
    p = command(plans, "status", "plans_status", "activate, archive or retire a plan")
    p.add_argument("key")
    p.add_argument("status", choices=["draft", "active", "archived", "retired"])
    p.add_argument("--reason")

    subs = groups.add_parser(
        "subs", aliases=["subscriptions"], help="subscriptions"
    ).add_subparsers(dest="command", required=True)
    p = command(subs, "trial", "subs_trial", "start a trial")
    p.add_argument("owner")
    p.add_argument("plan")
    p.add_argument("--days", type=int)
    p.add_argument("--seats", type=int)
    p.add_argument("--notes")
    p = command(subs, "convert", "subs_convert", "convert a trial to paid")
    p.add_argument("owner")
    p.add_argument("--plan")
    p.add_argument("--seats", type=int)
    p.add_argument("--notes")
    p.add_argument("--reason")
    p = command(subs, "change-plan", "subs_change_plan", "upgrade or downgrade")
    p.add_argument("owner")
    p.add_argument("plan")
    p.add_argument("--allow-over-quota", action="store_true")
    p.add_argument("--reason")
    p = command(subs, "seats", "subs_seats", "set purchased seats")
    p.add_argument("owner")
    p.add_argument("seats", type=int)
    p.add_argument("--allow-over-quota", action="store_true")
    p.add_argument("--reason")
    for event, help in (
        ("suspend", "cap at read-only"),
        ("resume", "lift a suspension"),
        ("cancel", "end the subscription (or --at-period-end)"),
    ):
        p = command(subs, event, "subs_lifecycle", help)
        p.set_defaults(event=event)
        p.add_argument("owner")
        p.add_argument("--reason")
        if event == "cancel":
            p.add_argument("--at-period-end", action="store_true")
    p = command(subs, "show", "subs_show", "an owner's subscriptions")
    p.add_argument("owner")

    overrides = groups.add_parser("overrides", help="per-owner overrides").add_subparsers(
        dest="command", required=True
    )
    p = command(overrides, "set", "overrides_set", "turn a feature on/off or set a limit")
    p.add_argument("owner")
    p.add_argument("key")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--on", dest="on", action="store_const", const=True)
    what.add_argument("--off", dest="on", action="store_const", const=False)
    what.add_argument("--limit", type=int)
    what.add_argument("--unlimited", action="store_true")
    p.add_argument("--reason", required=True)
    p.add_argument("--until")
    p = command(overrides, "remove", "overrides_remove", "remove an override")
    p.add_argument("owner")
    p.add_argument("kind", choices=["feature", "limit"])
    p.add_argument("key")
    p.add_argument("--reason", required=True)
    p = command(overrides, "list", "overrides_list", "an owner's overrides")
    p.add_argument("owner")

    p = command(
        groups, "check", "check", "may the owner use a feature / what is its limit, and why"
    )
    p.add_argument("owner")
    p.add_argument("feature", nargs="?")
    p.add_argument("--action", choices=["read", "create", "update", "delete"])
    p.add_argument("--limit")

    contracts = groups.add_parser("contracts", help="contracts and signatures").add_subparsers(
        dest="command", required=True
    )
    p = command(contracts, "issue", "contracts_issue", "issue a contract")
    p.add_argument("owner")
    p.add_argument("--title", required=True)
    p.add_argument("--body-file")
    p.add_argument("--body")
    p.add_argument(
        "--signer", action="append", required=True, help="'Name <email>' or 'Name <email> (role)'"
    )
    p.add_argument("--plan")
    p.add_argument("--term")
    p.add_argument("--amount")
    p.add_argument("--currency")
    p.add_argument("--sequential", action="store_true")
    p = command(contracts, "send", "contracts_send", "send signing links")
    p.add_argument("owner")
    p.add_argument("id")
    p.add_argument(
        "--link", default="https://example.invalid/sign/{token}", help="link template with {token}"
    )
    for name, handler, help in (
        ("status", "contracts_status", "a contract's status"),
        ("verify", "contracts_verify", "recompute every hash of a contract"),
    ):
        p = command(contracts, name, handler, help)
        p.add_argument("owner")
        p.add_argument("id")

    audit = groups.add_parser("audit", help="the audit trail").add_subparsers(
        dest="command", required=True
    )
    p = command(audit, "list", "audit_list", "everything done to an owner")
    p.add_argument("owner")
    p = command(
        audit, "verify", "audit_verify", "verify the evidence chains of an owner's contracts"
    )
    p.add_argument("owner")

    p = command(groups, "sweep", "sweep", "apply what time has made due")
    p.add_argument("--now", default=argparse.SUPPRESS, help="sweep as of this ISO time")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        args.now = None if args.now is None else _time(args.now)
        store = SqlStore.from_url(args.db)
        store.create_schema()
        console = Console(Entitlements(store), args)
        code: int = getattr(console, args.handler)()
        return code
    except Usage as error:
        return _fail(f"usage: {error}", "usage")
    except InvalidInput as error:
        return _fail(str(error), "usage")
    except NotFound as error:
        return _fail(str(error), "not_found")
    except Conflict as error:
        return _fail(str(error), "conflict")
    except StorageError as error:
        return _fail(str(error), "storage")
    except EntitlementsError as error:
        return _fail(str(error), "refused")
    except OSError as error:
        return _fail(f"{error.filename or ''}: {error.strerror or error}", "usage")


def _fail(message: str, kind: str) -> int:
    sys.stderr.write(f"entitlements: {message.splitlines()[0]}\n")
    return EXIT[kind]


if __name__ == "__main__":
    raise SystemExit(main())
