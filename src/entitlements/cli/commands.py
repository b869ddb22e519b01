"""What each command does: a thin layer over the library, which keeps every rule.

Loaded only once the line has parsed, so that ``--help`` and parse errors stay fast.
"""

from __future__ import annotations

import argparse
import difflib
import getpass
import json
import subprocess
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, TypedDict

from entitlements.adapters.sql import SqlStore
from entitlements.adapters.sql.repository import storage_errors
from entitlements.catalog import load_catalog
from entitlements.cli.database import check_schema, open_store
from entitlements.cli.future import check_not_future, record_consent
from entitlements.cli.parser import EXIT, Usage
from entitlements.cli.render import emit, table
from entitlements.domain.actor import Actor
from entitlements.domain.invoice import Invoice, InvoiceLine
from entitlements.domain.notification import Notification
from entitlements.domain.owner import Owner
from entitlements.domain.page import MAX_LIMIT, Page
from entitlements.domain.plan_change import SubscriptionChange
from entitlements.domain.resolution import Reason, Snapshot
from entitlements.domain.subscription import Subscription
from entitlements.domain.usage import OverQuotaPolicy
from entitlements.errors import ContractPending, EntitlementsError, NotFound, UnknownPlan
from entitlements.serialization import converter
from entitlements.service.entitlements import Entitlements
from entitlements.service.sweep import SweepReport

__all__ = ["run"]

PROGRESS_AFTER_PLANS = 20


def run(args: argparse.Namespace) -> int:
    """Open the database (creating it only for ``db upgrade``) and run the command; with
    ``--dry-run``, inside one transaction that is rolled back."""
    check_not_future(args)
    store = open_store(args.db, create=args.handler == "db_upgrade")
    try:
        if args.handler.startswith("db_"):
            return int(getattr(Schema(store, args), args.handler)())
        if getattr(args, "dry_run", False):
            return _rehearse(store, args)
        return _console(store, args)
    finally:
        store.engine.dispose()


def _console(store: SqlStore, args: argparse.Namespace) -> int:
    ents = Entitlements(store)
    try:
        console = Console(ents, args)
        record_consent(ents, args, console.actor)
        return int(getattr(console, args.handler)())
    finally:
        ents.close()


@storage_errors
def _rehearse(store: SqlStore, args: argparse.Namespace) -> int:
    """Run the command on one connection whose transaction is rolled back: the output is
    what it would do, and nothing is stored (every unit of work of the command is a
    savepoint inside that transaction)."""
    with store.engine.connect() as connection:
        connection.begin()
        try:
            code = _console(SqlStore(connection), args)
        finally:
            connection.rollback()
    say("dry run: nothing was stored")
    return code


def say(line: str) -> None:
    """Progress and warnings: stderr, so stdout stays the answer."""
    sys.stderr.write(f"entitlements: {line}\n")
    sys.stderr.flush()


def suggestion(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(set(known)), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _subscription_row(sub: Subscription) -> dict[str, Any]:
    return {
        "owner": str(sub.owner),
        "plan": f"{sub.plan_key} v{sub.plan_version}",
        "status": sub.status.value,
        "seats": sub.seats,
        "trial_ends": sub.trial_ends_at.date() if sub.trial_ends_at else None,
        "period_end": sub.current_period.end.date() if sub.current_period else None,
        "cancels_at_period_end": sub.cancel_at_period_end,
        "pending": None if sub.pending_change is None else sub.pending_change.describe(),
        "paused": None if sub.pause is None else sub.pause.describe(),
        "notes": sub.notes or None,
    }


class Schema:
    def __init__(self, store: SqlStore, args: argparse.Namespace) -> None:
        self.store = store
        self.args = args
        self.shown = store.engine.url.render_as_string(hide_password=True)

    def db_upgrade(self) -> int:
        before = self.store.schema_revision()
        if before is not None and before > self.store.schema_head:
            check_schema(self.store, self.shown)
        self.store.create_schema()
        after = self.store.schema_revision()
        if before == after:
            human = f"the schema at {self.shown} is up to date (revision {after})"
        elif before is None:
            human = f"created the schema at {self.shown} (revision {after})"
        else:
            human = f"upgraded the schema at {self.shown} from revision {before} to {after}"
        emit({"before": before, "revision": after}, human, as_json=self.args.json)
        return EXIT["ok"]

    def db_current(self) -> int:
        revision = check_schema(self.store, self.shown)
        emit(
            {"revision": revision, "head": self.store.schema_head},
            f"revision {revision} (up to date)",
            as_json=self.args.json,
        )
        return EXIT["ok"]


class NotificationCommands:
    """The ``notifications`` group, mixed into `Console`."""

    ents: Entitlements
    args: argparse.Namespace
    actor: Actor

    def out(self, value: Any, human: str) -> int:
        raise NotImplementedError

    def notifications_list(self) -> int:
        a = self.args
        found = self.ents.notifications.list(
            a.owner, tenant=a.tenant, failed=a.failed, limit=a.limit
        )
        rows = [
            {
                "id": n.id,
                "created": n.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                "owner": str(n.owner),
                "kind": n.kind.value,
                "delivery": n.delivery.value,
                "attempts": n.attempts,
                "error": n.last_error,
            }
            for n in found
        ]
        columns = ["id", "created", "owner", "kind", "delivery", "attempts", "error"]
        return self.out(list(found), table(rows, columns))

    def notifications_deliver(self) -> int:
        command = self.args.run

        def handler(notification: Notification) -> None:
            line = json.dumps(converter.unstructure(notification), sort_keys=True, default=str)
            if command is None:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
                return
            subprocess.run(command, shell=True, input=line, text=True, check=True)

        taken = self.ents.notifications.deliver(handler, batch=self.args.batch)
        say(f"notifications: {taken:,} delivered")
        return EXIT["ok"]

    def notifications_retry(self) -> int:
        again = self.ents.notifications.retry(
            self.args.id, tenant=self.args.tenant, actor=self.actor
        )
        return self.out(again, f"notification {again.id} is back in line")


class Audited(TypedDict):
    """Who changes something, why and as of when: the ``--actor``, ``--reason`` and
    ``--now`` of a command, as the use cases with an optional reason take them (those
    that require one are given ``reason`` by name, so the type says it is there)."""

    actor: Actor
    reason: str | None
    now: datetime | None


class Console(NotificationCommands):
    def __init__(self, ents: Entitlements, args: argparse.Namespace) -> None:
        self.ents = ents
        self.args = args
        self.actor = Actor(args.actor or _login())
        self.now = args.now

    @property
    def audited(self) -> Audited:
        """This command's actor, ``--reason`` and ``--now``, for a use case that audits."""
        return {"actor": self.actor, "reason": self.args.reason, "now": self.now}

    def out(self, value: Any, human: str) -> int:
        emit(value, human, as_json=self.args.json)
        return EXIT["ok"]

    # -- what the catalog knows, for suggestions -------------------------------------------

    def _catalog_keys(self) -> tuple[set[str], set[str], set[str]]:
        """Plan keys, and every feature and limit any version of any plan defines."""
        plans: set[str] = set()
        features: set[str] = set()
        limits: set[str] = set()
        for latest in self.ents.plans.list():
            plans.add(latest.key)
            for plan in self.ents.plans.versions(latest.key):
                features.update(plan.features)
                limits.update(plan.limits)
        return plans, features, limits

    def _plan_call(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except UnknownPlan as error:
            if error.version is not None:
                raise
            plans, _, _ = self._catalog_keys()
            raise NotFound(f"{error}{suggestion(error.key, plans)}") from None

    # -- plans ---------------------------------------------------------------------------

    def plans_load(self) -> int:
        catalog = load_catalog(self.args.file)
        total = len(catalog.plans)
        loud = total > PROGRESS_AFTER_PLANS or sys.stderr.isatty()

        def progress(done: int, total: int) -> None:
            if loud and (done == total or done % 10 == 0):
                say(f"plans load: {done}/{total} plans applied")

        result = self.ents.plans.sync(
            catalog, actor=self.actor, reason=self.args.reason, progress=progress
        )
        human = (
            f"defined: {', '.join(result.defined) or '-'}\n"
            f"changed: {', '.join(result.changed) or '-'}\n"
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
                "price": p.price_label,
                "limits": len(p.limits),
                "features": len(p.features),
            }
            for p in plans
        ]
        return self.out(
            plans, table(rows, ["key", "name", "status", "version", "price", "limits", "features"])
        )

    def plans_show(self) -> int:
        plan = self._plan_call(lambda: self.ents.plans.get(self.args.key, self.args.version))
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
            f"{plan.name} ({plan.key} v{plan.version}) — {plan.status.value}, "
            f"{plan.price_label}, trial {plan.trial_days} days\n\n"
            f"{table(limits, ['limit', 'value', 'kind', 'enforcement'])}\n\n"
            f"{table(features, ['feature', 'on', 'actions'])}"
        )
        return self.out(plan, human)

    def plans_status(self) -> int:
        a = self.args
        plan = self._plan_call(
            lambda: self.ents.plans.set_status(a.key, a.status, actor=self.actor, reason=a.reason)
        )
        return self.out(plan, f"{plan.key} is now {plan.status.value}")

    # -- subscriptions -------------------------------------------------------------------

    def _show(self, sub: Subscription, verb: str) -> int:
        row = _subscription_row(sub)
        return self.out(sub, f"{verb}\n{table([row], list(row))}")

    def subs_trial(self) -> int:
        a = self.args
        sub = self._plan_call(
            lambda: self.ents.subscriptions.start_trial(
                a.owner,
                a.plan,
                actor=self.actor,
                trial_days=a.trial_days,
                seats=a.seats,
                notes=a.notes or "",
                now=self.now,
            )
        )
        return self._show(sub, "trial started")

    def subs_convert(self) -> int:
        a = self.args
        kwargs: dict[str, Any] = {"plan_key": a.plan, "now": self.now, "reason": a.reason}
        if a.seats is not None:
            kwargs["seats"] = a.seats
        if a.notes is not None:
            kwargs["notes"] = a.notes
        try:
            sub = self._plan_call(
                lambda: self.ents.subscriptions.convert(
                    a.owner, actor=self.actor, without_contract=a.without_contract, **kwargs
                )
            )
        except ContractPending as pending:
            listed, first = ", ".join(pending.contract_ids), pending.contract_ids[0]
            raise EntitlementsError(
                f"{a.owner} has a contract out for signature ({listed}); once it is signed "
                f"run `entitlements contracts convert {a.owner} {first}`, "
                "or pass --without-contract"
            ) from None
        return self._show(sub, "converted")

    def _policy(self) -> OverQuotaPolicy:
        return OverQuotaPolicy.ALLOW if self.args.allow_over_quota else OverQuotaPolicy.REFUSE

    def subs_change_plan(self) -> int:
        a = self.args
        change = self._plan_call(
            lambda: self.ents.subscriptions.change_plan(
                a.owner,
                a.plan,
                if_over_quota=self._policy(),
                **self.audited,
            )
        )
        return self._changed(change, "plan changed")

    def subs_seats(self) -> int:
        a = self.args
        change = self.ents.subscriptions.change_seats(
            a.owner,
            a.seats,
            if_over_quota=self._policy(),
            **self.audited,
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
        sub = call(a.owner, **self.audited, **extra)
        return self._show(sub, a.event)

    def _page(self, page: Page[Any]) -> Page[Any]:
        """The page, its next cursor said on stderr (stdout stays the answer)."""
        if page.next is not None:
            say(f"more: --cursor {page.next}")
        return page

    def subs_show(self) -> int:
        a = self.args
        history = self._page(
            self.ents.subscriptions.history(a.owner, limit=a.page_size, cursor=a.cursor)
        )
        if not history:
            raise NotFound(f"{self.args.owner} has no subscription")
        rows = [_subscription_row(s) for s in history]
        return self.out(list(history), table(rows, list(rows[0])))

    def subs_schedule(self) -> int:
        a = self.args
        pending = self._plan_call(
            lambda: self.ents.subscriptions.schedule_change(
                a.owner,
                plan=a.plan,
                version=a.version,
                seats=a.seats,
                at=a.at,
                replace=a.replace,
                if_over_quota=self._policy(),
                **self.audited,
            )
        )
        if pending is None:
            return self.out(None, "nothing pending: that is what will be in force anyway")
        return self.out(pending, f"scheduled {pending.describe()}")

    def subs_pending(self) -> int:
        pending = self.ents.subscriptions.pending_change(self.args.owner)
        if pending is None:
            return self.out(None, f"{self.args.owner} has no pending change")
        return self.out(pending, pending.describe())

    def subs_cancel_pending(self) -> int:
        a = self.args
        sub = self.ents.subscriptions.cancel_pending_change(a.owner, **self.audited)
        return self._show(sub, "pending change canceled")

    def subs_pause(self) -> int:
        a = self.args
        sub = self.ents.subscriptions.pause(
            a.owner,
            at=a.at,
            resume_at=a.resume_at,
            restart_period=a.restart_period,
            **self.audited,
        )
        return self._show(sub, "paused" if sub.pause is not None else "pause scheduled")

    def subs_unpause(self) -> int:
        a = self.args
        sub = self.ents.subscriptions.unpause(a.owner, at=a.at, **self.audited)
        return self._show(sub, "unpaused" if sub.pause is None else "pause end set")

    # -- overrides -----------------------------------------------------------------------

    def overrides_set(self) -> int:
        a = self.args
        owner: Owner = a.owner
        is_limit = a.limit is not None or a.unlimited
        _, features, limits = self._catalog_keys()
        known = limits if is_limit else features
        if a.key not in known:
            what = "limit" if is_limit else "feature"
            message = f"no plan version has a {what} {a.key!r}{suggestion(a.key, known)}"
            if not a.force:
                raise NotFound(f"{message}; pass --force to set the override anyway")
            say(f"warning: {message}; setting the override anyway (--force)")
        if a.alerts is not None and not is_limit:
            raise Usage("--alerts goes with --limit or --unlimited")
        if is_limit:
            override = self.ents.overrides.set_limit(
                owner,
                a.key,
                None if a.unlimited else a.limit,
                actor=self.actor,
                reason=a.reason,
                expires_at=a.expires_at,
                now=self.now,
                alerts=a.alerts,
            )
        else:
            override = self.ents.overrides.set_feature(
                owner,
                a.key,
                enabled=a.on,
                actor=self.actor,
                reason=a.reason,
                expires_at=a.expires_at,
                now=self.now,
            )
        return self.out(override, f"override set on {owner}: {a.key}")

    def overrides_remove(self) -> int:
        a = self.args
        removed = self.ents.overrides.remove(
            a.owner, a.kind, a.key, actor=self.actor, reason=a.reason, now=self.now
        )
        return self.out(removed, f"override removed: {a.kind} {a.key}")

    def overrides_list(self) -> int:
        found = self.ents.overrides.list(self.args.owner)
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
        snapshot = self.ents.resolve(a.owner, self.now)
        if a.limit:
            return self._check_limit(snapshot)
        if not a.feature:
            raise Usage("name a feature, or a limit with --limit")
        decision = snapshot.explain(a.feature, a.action)
        if decision.reason is Reason.UNKNOWN:
            _, features, _ = self._catalog_keys()
            self._known("feature", a.feature, features)
        verdict = "allowed" if decision.allowed else "not allowed"
        self.out(
            decision,
            f"{a.feature}{':' + a.action if a.action else ''}: {verdict} "
            f"({decision.reason.value}: {decision.detail})",
        )
        return EXIT["ok"] if decision.allowed else EXIT["denied"]

    def _check_limit(self, snapshot: Snapshot) -> int:
        name = self.args.limit
        decision = snapshot.explain_limit(name)
        if decision.reason is Reason.UNKNOWN:
            _, _, limits = self._catalog_keys()
            self._known("limit", name, limits)
        shown = "unlimited" if decision.value is None else decision.value
        return self.out(decision, f"{name}: {shown} ({decision.reason.value}: {decision.detail})")

    @staticmethod
    def _known(what: str, name: str, known: set[str]) -> None:
        """Refuse (`NotFound`, with a suggestion) a name no plan version defines."""
        if name not in known:
            raise NotFound(f"no plan version has a {what} {name!r}{suggestion(name, known)}")

    # -- contracts -----------------------------------------------------------------------

    def contracts_issue(self) -> int:
        a = self.args
        body = Path(a.body_file).read_text(encoding="utf-8") if a.body_file else a.body
        if not body:
            raise Usage("give the agreement with --body-file FILE or --body TEXT")
        contract = self._plan_call(
            lambda: self.ents.contracts.issue(
                a.owner,
                title=a.title,
                body=body,
                signers=a.signer,
                actor=self.actor,
                plan_key=a.plan,
                term=a.term,
                amount=a.amount,
                currency=a.currency,
                sequential=a.sequential,
                now=self.now,
                key=a.key,
            )
        )
        return self.out(
            contract, f"contract {contract.id} issued (content hash {contract.content_hash})"
        )

    def contracts_send(self) -> int:
        a = self.args
        if "{token}" not in a.link:
            raise Usage("--link: the template must contain {token}")
        tokens = self.ents.contracts.send(a.owner, a.id, actor=self.actor, now=self.now)
        links = {sid: a.link.replace("{token}", t) for sid, t in tokens.items()}
        human = "signing links (shown once; not stored):\n" + "\n".join(
            f"  {k}: {v}" for k, v in links.items()
        )
        return self.out(links, human)

    def contracts_list(self) -> int:
        a = self.args
        found = self._page(self.ents.contracts.list(a.owner, limit=a.page_size, cursor=a.cursor))
        rows = [
            {
                "id": c.id,
                "title": c.title,
                "status": c.status.value,
                "signed": f"{sum(s.status.value == 'signed' for s in c.signers)}/{len(c.signers)}",
                "plan": c.terms.plan_key,
                "issued": c.created_at.date(),
                "expires": c.expires_at.date(),
            }
            for c in found
        ]
        human = table(rows, ["id", "title", "status", "signed", "plan", "issued", "expires"])
        return self.out(rows, human)

    def contracts_show(self) -> int:
        a = self.args
        contract = self.ents.contracts.get(a.owner, a.id)
        personal = self.ents.contracts.evidence(a.owner, a.id)["personal_data"]
        signers = _signers(contract, personal)
        terms = contract.terms
        price = f"{terms.amount} {terms.currency}" if terms.amount is not None else "-"
        human = (
            f"{contract.title} ({contract.id}): {contract.status.value}\n"
            f"plan {terms.plan_key or '-'}, term {terms.term or '-'}, amount {price}; "
            f"issued {contract.created_at:%Y-%m-%d}, expires {contract.expires_at:%Y-%m-%d}"
            f"{', signed in order' if contract.sequential else ''}\n"
            f"content hash {contract.content_hash}\n\n"
            + table(signers, ["signer", "name", "email", "role", "order", "status"])
        )
        value = {
            "id": contract.id,
            "owner": str(contract.owner),
            "title": contract.title,
            "status": contract.status.value,
            "terms": {
                "plan_key": terms.plan_key,
                "term": terms.term,
                "amount": None if terms.amount is None else str(terms.amount),
                "currency": terms.currency,
            },
            "sequential": contract.sequential,
            "created_at": contract.created_at.isoformat(),
            "expires_at": contract.expires_at.isoformat(),
            "content_hash": contract.content_hash,
            "signers": signers,
        }
        return self.out(value, human)

    def contracts_verify(self) -> int:
        a = self.args
        result = self.ents.contracts.verify(a.owner, a.id)
        self.out(
            result,
            "verified: every hash and link holds"
            if result.ok
            else "BROKEN: " + "\n  ".join(result.problems),
        )
        return EXIT["ok"] if result.ok else EXIT["refused"]

    def contracts_convert(self) -> int:
        a = self.args
        sub = self.ents.contracts.convert(
            a.owner, a.id, actor=self.actor, seats=a.seats, notes=a.notes, now=self.now
        )
        return self._show(sub, f"converted from contract {a.id}")

    # -- migrations ------------------------------------------------------------------------

    def migrations_create(self) -> int:
        a = self.args
        migration = self._plan_call(
            lambda: self.ents.migrations.create(
                a.plan,
                to_version=a.to_version,
                from_versions=a.from_version,
                owners=a.owner,
                at=a.at,
                price_lock_until=a.price_lock_until,
                if_over_quota=self._policy(),
                tenant=a.tenant,
                **self.audited,
            )
        )
        progress = self.ents.migrations.get(migration.id, tenant=a.tenant)
        return self.out(
            progress,
            f"migration {migration.id}: {migration.plan_key} -> v{migration.to_version}, "
            f"{progress.total:,} subscriptions (draft: nothing moved; preview it, then run it)",
        )

    def migrations_preview(self) -> int:
        a = self.args
        preview = self.ents.migrations.preview(a.id, tenant=a.tenant, now=self.now)
        totals = ", ".join(f"{k} {v:,}" for k, v in preview.totals.items()) or "no items"
        rows = [_preview_row(p) for p in preview.items[: a.limit]]
        human = f"{len(preview.items):,} items: {totals}"
        if rows:
            human += "\n" + table(rows, ["owner", "version", "outcome", "diff"])
        return self.out(preview, human)

    def migrations_run(self) -> int:
        a = self.args
        before = self.ents.migrations.get(a.id, tenant=a.tenant)
        bar = _ProgressBar(before.total)
        done = before.total - before.pending

        def progress(handled: int) -> None:
            bar.show(done + handled)

        while True:
            report = self.ents.migrations.run(
                a.id,
                batch=a.batch,
                actor=self.actor,
                tenant=a.tenant,
                now=self.now,
                progress=progress,
            )
            done = report.total - report.pending
            if not a.all or report.done or report.handled == 0:
                break
        bar.end()
        counts = ", ".join(f"{k} {v:,}" for k, v in report.counts.items() if v)
        human = f"migration {a.id} is {report.migration.status.value}: {counts or 'no items'}"
        if report.pending:
            human += f" ({report.pending:,} pending: run it again)"
        self.out(report, human)
        return EXIT["refused"] if report.counts.get("failed") else EXIT["ok"]

    def migrations_cancel(self) -> int:
        a = self.args
        progress = self.ents.migrations.cancel(a.id, tenant=a.tenant, **self.audited)
        counts = ", ".join(f"{k} {v:,}" for k, v in progress.counts.items() if v)
        return self.out(progress, f"migration {a.id} canceled: {counts or 'no items'}")

    def migrations_show(self) -> int:
        a = self.args
        progress = self.ents.migrations.get(a.id, tenant=a.tenant)
        items = self.ents.migrations.items(a.id, status=a.status, limit=a.limit, tenant=a.tenant)
        m = progress.migration
        counts = ", ".join(f"{k} {v:,}" for k, v in progress.counts.items() if v)
        human = (
            f"migration {m.id}: {m.plan_key} -> v{m.to_version}, {m.status.value}, "
            f"by {m.actor} at {m.created_at.isoformat()}"
            + (f", price lock until {m.price_lock_until.isoformat()}" if m.price_lock_until else "")
            + f"\n{counts or 'no items'}"
        )
        rows = [
            {
                "#": i.seq,
                "owner": str(i.owner),
                "from": f"v{i.from_version}",
                "status": i.status.value,
                "why": i.why.value if i.why else i.error,
            }
            for i in items
        ]
        if rows:
            human += "\n" + table(rows, ["#", "owner", "from", "status", "why"])
        return self.out({"migration": progress, "items": list(items)}, human)

    def migrations_list(self) -> int:
        found = self.ents.migrations.list(tenant=self.args.tenant)
        rows = [
            {
                "id": p.migration.id,
                "plan": f"{p.migration.plan_key} -> v{p.migration.to_version}",
                "status": p.migration.status.value,
                "moved": p.counts["moved"],
                "pending": p.pending,
                "total": p.total,
                "created": p.migration.created_at.strftime("%Y-%m-%d %H:%M"),
            }
            for p in found
        ]
        columns = ["id", "plan", "status", "moved", "pending", "total", "created"]
        return self.out(list(found), table(rows, columns) if rows else "no migrations")

    # -- invoices ------------------------------------------------------------------------

    def _invoice(self, invoice: Invoice | None, verb: str) -> int:
        if invoice is None:
            return self.out(None, "nothing owed for that period: no invoice")
        human = _invoice_text(invoice)
        return self.out(invoice, f"{verb}\n{human}" if verb else human)

    def invoices_draft(self) -> int:
        a = self.args
        draft = self.ents.invoices.draft(a.owner, period=a.period, now=self.now)
        if draft is None:
            return self.out(None, f"{a.owner} is not billed in that period")
        human = (
            f"draft for {draft.period.start:%Y-%m-%d} to {draft.period.end:%Y-%m-%d}\n"
            + table(_line_rows(draft.lines), ["line", "quantity", "unit", "amount"])
            + f"\ntotal {draft.total} {draft.currency}"
        )
        return self.out(draft, human)

    def invoices_list(self) -> int:
        found = self.ents.invoices.list(self.args.owner)
        rows = [
            {
                "id": i.id,
                "number": i.number,
                "period": "-" if i.period is None else f"{i.period.start:%Y-%m-%d}",
                "total": f"{i.total} {i.currency}",
                "status": i.status.value,
                "due": f"{i.due_at:%Y-%m-%d}",
            }
            for i in found
        ]
        return self.out(
            list(found), table(rows, ["id", "number", "period", "total", "status", "due"])
        )

    def invoices_show(self) -> int:
        return self._invoice(self.ents.invoices.get(self.args.id, tenant=self.args.tenant), "")

    def invoices_finalize(self) -> int:
        a = self.args
        invoice = self.ents.invoices.finalize(
            a.owner, period=a.period, actor=self.actor, now=self.now
        )
        return self._invoice(invoice, "finalized")

    def invoices_mark_paid(self) -> int:
        a = self.args
        invoice = self.ents.invoices.mark_paid(
            a.id,
            actor=self.actor,
            reference=a.reference,
            at=a.paid_at,
            tenant=a.tenant,
            now=self.now,
        )
        return self._invoice(invoice, "paid")

    def invoices_void(self) -> int:
        a = self.args
        invoice = self.ents.invoices.void(
            a.id, actor=self.actor, reason=a.reason, tenant=a.tenant, now=self.now
        )
        return self._invoice(invoice, "voided")

    # -- audit, sweep ----------------------------------------------------------------------

    def audit_list(self) -> int:
        a = self.args
        events = self._page(self.ents.audit.for_owner(a.owner, limit=a.page_size, cursor=a.cursor))
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
        owner = self.args.owner
        results = {}
        page = self.ents.contracts.list(owner, limit=MAX_LIMIT)
        while True:
            results.update({c.id: self.ents.contracts.verify(owner, c.id) for c in page})
            if page.next is None:
                break
            page = self.ents.contracts.list(owner, limit=MAX_LIMIT, cursor=page.next)
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
        """Everything due, page by page; once the work spans more than one page, the
        running count on stderr."""
        batch = self.args.batch

        def progress(handled: int) -> None:
            if handled >= batch:
                say(f"sweep: {handled:,} items handled so far")

        report = self.ents.process_due(self.now, batch=batch, progress=progress)
        human = (
            f"sweep at {report.now.isoformat()}: {len(report.changes):,} subscription changes, "
            f"{len(report.expired_overrides):,} overrides expired, "
            f"{len(report.expired_reservations):,} reservations freed, "
            f"{len(report.expired_contracts):,} contracts expired; "
            f"{report.remaining:,} still due"
        )
        if report.remaining:
            human += " (failed, or being handled by another worker; the next run retries)"
        if report.failures:
            human += f"\n{len(report.failures):,} failed:" + "".join(
                f"\n  {f.item}: {f.error}: {f.message}" for f in report.failures
            )
        if self.args.dry_run:
            human += "".join(f"\n  {line}" for line in _sweep_lines(report))
        self.out(report, human)
        return EXIT["refused"] if report.failures else EXIT["ok"]


class _ProgressBar:
    """``[#####.....] 120/500`` on stderr, redrawn in place when it is a terminal, every
    tenth of the way otherwise."""

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.tty = sys.stderr.isatty()
        self.shown = -1

    def show(self, done: int) -> None:
        tenth = done * 10 // self.total
        if not self.tty and tenth == self.shown:
            return
        self.shown = tenth
        filled = done * 30 // self.total
        line = f"[{'#' * filled}{'.' * (30 - filled)}] {done:,}/{self.total:,}"
        sys.stderr.write(f"\r{line}" if self.tty else f"entitlements: {line}\n")
        sys.stderr.flush()

    def end(self) -> None:
        if self.tty and self.shown >= 0:
            sys.stderr.write("\n")


def _preview_row(preview: Any) -> dict[str, Any]:
    """One item of a migration preview as a table row."""
    outcome = preview.outcome
    change = preview.change
    diff = []
    if change is not None:
        diff += [f"+{c.key}" for c in change.features_gained]
        diff += [f"-{c.key}" for c in change.features_lost]
        diff += [f"{c.name} {c.before}->{c.after}" for c in change.limits_raised]
        diff += [f"{c.name} {c.before}->{c.after}" for c in change.limits_lowered]
        diff += [f"over: {o.metric} {o.used}>{o.limit}" for o in change.over_quota]
    return {
        "owner": str(preview.item.owner),
        "version": preview.current_version,
        "outcome": outcome.status.value + (f" ({outcome.why.value})" if outcome.why else ""),
        "diff": ", ".join(diff) or (outcome.error or ""),
    }


def _line_rows(lines: Iterable[InvoiceLine]) -> list[dict[str, Any]]:
    return [
        {
            "line": x.description,
            "quantity": x.quantity,
            "unit": f"{x.unit_amount.normalize():f}",
            "amount": x.amount,
        }
        for x in lines
    ]


def _invoice_text(invoice: Invoice) -> str:
    period = (
        "credit note"
        if invoice.period is None
        else f"{invoice.period.start:%Y-%m-%d} to {invoice.period.end:%Y-%m-%d}"
    )
    return (
        f"{invoice.number} ({invoice.id}) for {invoice.owner}: {invoice.status.value}\n"
        f"{period}; issued {invoice.issued_at:%Y-%m-%d}, due {invoice.due_at:%Y-%m-%d}\n"
        + table(_line_rows(invoice.lines), ["line", "quantity", "unit", "amount"])
        + f"\ntotal {invoice.total} {invoice.currency}\ncontent hash {invoice.content_hash}"
    )


def _sweep_lines(report: SweepReport) -> list[str]:
    """One line per item the sweep changed (what a dry run shows)."""
    return [
        *(
            f"{c.before.owner}: {c.event.value} at {c.at.isoformat()} "
            f"({c.before.status.value} -> {c.after.status.value})"
            for c in report.changes
        ),
        *(f"{o.owner}: override {o.kind.value} {o.key} expires" for o in report.expired_overrides),
        *(f"{r.owner}: reservation {r.id} freed" for r in report.expired_reservations),
        *(f"{c.owner}: contract {c.id} expires" for c in report.expired_contracts),
    ]


def _signers(contract: Any, personal: dict[str, Any]) -> list[dict[str, Any]]:
    def clear(commitment: str) -> str | None:
        entry = personal.get(commitment)
        if entry is None:
            return None
        return entry["value"] if entry["value"] is not None else "(erased)"

    return [
        {
            "signer": s.id,
            "name": clear(s.name),
            "email": clear(s.email),
            "role": s.role or None,
            "order": s.order,
            "status": s.status.value,
        }
        for s in contract.signers
    ]


def _login() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"
