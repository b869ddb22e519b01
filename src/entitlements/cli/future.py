"""Writes dated in the future, only on purpose.

``--now`` lets staff catch a sweep up or replay a day; a date typed one year off
(``sweep --now 2027-06-01`` in 2026) would instead cancel live subscriptions and expire
contracts early, with audit rows dated in the future, and nothing can undo it. So a
command that stores refuses a ``--now`` ahead of the clock (beyond `SKEW`, for clocks a
little apart) unless the line says ``--dry-run`` (everything runs inside a transaction
that is rolled back: the output shows what would change) or ``--allow-future REASON``,
which puts the reason on record before the write.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from entitlements.cli.parser import Usage

if TYPE_CHECKING:
    from entitlements.domain.actor import Actor
    from entitlements.service.entitlements import Entitlements

__all__ = ["FUTURE_DATED", "SKEW", "ahead_of_clock", "check_not_future", "record_consent"]

SKEW = timedelta(minutes=5)
"""How far ahead of this machine's clock ``--now`` may be without consent: clocks of
machines a little apart, and a ``--now`` typed a moment before it runs."""

FUTURE_DATED = "cli.future_dated"
"""The audit action that records an ``--allow-future`` consent, with its reason."""


def ahead_of_clock(args: argparse.Namespace, clock: datetime | None = None) -> bool:
    """Whether the line stores something (it has ``--dry-run``) dated by a ``--now``
    later than the clock allows."""
    now: datetime | None = getattr(args, "now", None)
    if now is None or not hasattr(args, "dry_run"):
        return False
    return now > (clock or datetime.now(UTC)) + SKEW


def check_not_future(args: argparse.Namespace, clock: datetime | None = None) -> None:
    """Refuse (`Usage`, before the database is opened) a write dated in the future that
    the line neither rehearses nor consents to."""
    if not ahead_of_clock(args, clock) or args.dry_run or args.allow_future is not None:
        return
    now: datetime = args.now
    raise Usage(
        f"--now {now.isoformat()} is ahead of the clock "
        f"({(clock or datetime.now(UTC)).replace(microsecond=0).isoformat()}), and what it "
        "stores cannot be undone: rehearse with --dry-run, or pass --allow-future REASON"
    )


def record_consent(ents: Entitlements, args: argparse.Namespace, actor: Actor) -> None:
    """Put an ``--allow-future`` on record (dated by the clock, not by ``--now``): who
    consented, to which command, for which date, and why."""
    if getattr(args, "allow_future", None) is None or not ahead_of_clock(args):
        return
    owner = getattr(args, "owner", None)
    with ents.runtime.transaction(owner.tenant if owner is not None else None) as tx:
        tx.record(
            actor,
            FUTURE_DATED,
            f"cli:{args.handler}",
            owner=owner,
            after={"now": args.now.isoformat(), "command": args.handler},
            reason=args.allow_future,
        )
