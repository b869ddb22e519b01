"""The command line's grammar: every command with its description and an example.

Only argparse and the value parsers are imported here, so that ``entitlements --help``
(and every parse error) answers without loading SQLAlchemy or the library's services.

argparse rather than a third-party library: it is in the standard library (nothing to
install, nothing to import beyond ~5 ms), and the few things the command line needs on top
of it — one-line errors, ``--json`` anywhere, suggestions — are a few lines each.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from typing import Any, NoReturn

from entitlements import __version__
from entitlements.cli import inputs

__all__ = ["DEFAULT_DB", "EXIT", "CommandInfo", "Usage", "build"]

EXIT = {
    "ok": 0,
    "refused": 1,
    "usage": 2,
    "not_found": 3,
    "conflict": 4,
    "storage": 5,
    "no_schema": 6,
    "denied": 10,
    "internal": 70,
    "interrupted": 130,
}
DEFAULT_DB = "sqlite:///entitlements.db"

TOP_DESCRIPTION = """\
Run plans, subscriptions, overrides and contracts by hand: the staff console, in a
terminal. Every change is audited under --actor.

Owners are written kind:id, or tenant/kind:id inside a tenant. Dates are 2027-01-01
(midnight UTC) or full ISO 8601 times (2027-01-01T09:30:00+02:00)."""

TOP_EPILOG = f"""\
database:
  --db URL (or ENTITLEMENTS_DATABASE_URL; default {DEFAULT_DB}). Create or upgrade
  the schema with `entitlements db upgrade`; no other command creates or migrates it.

exit codes:
  0   done (for check: allowed)
  1   refused by a rule (an illegal transition, a limit, a contract out for signature,
      evidence that does not verify)
  2   bad command line or input
  3   not found (an owner, plan, contract, feature or limit)
  4   conflict: changed meanwhile, already exists, over quota
  5   storage unavailable or failed
  6   no schema at that database URL, or not at this version (run db upgrade)
  10  check answered "not allowed"
  70  internal error (a bug; please report it)
  130 interrupted

Errors are one line on stderr, starting "entitlements:", and nothing is changed.
Run `entitlements GROUP COMMAND --help` for a command's options and an example."""


class Usage(Exception):
    """A bad command line: exit 2."""


class _Parser(argparse.ArgumentParser):
    """Every parse error becomes one `Usage` line (subparsers inherit the class)."""

    def error(self, message: str) -> NoReturn:
        raise Usage(_with_suggestion(message))


_CHOICE = re.compile(r"invalid choice: '(?P<given>[^']*)' \(choose from (?P<options>.*)\)$")


def _with_suggestion(message: str) -> str:
    import difflib

    found = _CHOICE.search(message)
    if found is None:
        return message
    options = re.findall(r"'([^']*)'", found["options"])
    close = difflib.get_close_matches(found["given"], options, n=1)
    return f"{message}; did you mean {close[0]!r}?" if close else message


class CommandInfo:
    """What the help shows for one command, kept for the tests that hold every command
    to having a description and an example that parses."""

    def __init__(self, words: tuple[str, ...], parser: argparse.ArgumentParser, example: str):
        self.words = words
        self.parser = parser
        self.example = example


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Options accepted before or after the command words (``--json`` anywhere)."""
    default: Any = None if top else argparse.SUPPRESS
    options = parser.add_argument_group("common options")
    options.add_argument(
        "--db",
        metavar="URL",
        default=os.environ.get("ENTITLEMENTS_DATABASE_URL", DEFAULT_DB) if top else default,
        help=f"database URL (default: ENTITLEMENTS_DATABASE_URL, else {DEFAULT_DB})",
    )
    options.add_argument(
        "--json",
        action="store_true",
        default=False if top else default,
        help="machine-readable output on stdout",
    )
    options.add_argument(
        "--actor", metavar="NAME", default=default, help="who is acting (audited; default: you)"
    )
    options.add_argument(
        "--now",
        metavar="TIME",
        type=inputs.instant,
        default=default,
        help="act as of this date or time (tests, catching up the sweep)",
    )


_TAKES_VALUE = frozenset({"--db", "--actor", "--now"})

READS = frozenset(
    {
        "plans_list",
        "plans_show",
        "subs_show",
        "subs_pending",
        "overrides_list",
        "check",
        "contracts_list",
        "contracts_show",
        "contracts_verify",
        "audit_list",
        "audit_verify",
        "notifications_list",
        "migrations_preview",
        "migrations_show",
        "migrations_list",
        "invoices_draft",
        "invoices_list",
        "invoices_show",
        "db_current",
        "db_upgrade",
    }
)
"""Commands that store nothing (``db upgrade`` changes the schema, never the data), so
they take neither ``--dry-run`` nor ``--allow-future``."""


def _writes(parser: argparse.ArgumentParser) -> None:
    """The options of a command that stores: a rehearsal, and the explicit consent a write
    dated in the future needs (a ``--now`` ahead of the clock would otherwise cancel
    subscriptions and expire contracts early, for good)."""
    options = parser.add_argument_group("writing")
    options.add_argument(
        "--dry-run",
        action="store_true",
        help="show what the command would change, and store nothing",
    )
    options.add_argument(
        "--allow-future",
        metavar="REASON",
        type=inputs.reason,
        help="store a write dated by a --now ahead of the clock (the reason is audited)",
    )


def group_named(argv: Sequence[str]) -> str | None:
    """The group (or top-level command) the line names: its first word that is not an
    option or an option's value."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word == "--":
            return None
        elif word.startswith("-"):
            skip = word in _TAKES_VALUE
        else:
            return word
    return None


def build(
    argv: Sequence[str] | None = None,
) -> tuple[argparse.ArgumentParser, list[CommandInfo]]:
    """The parser, and every command it knows. Given the line, only the commands of the
    group it names are built (the top level lists every group either way): ``--help``
    and most lines need one group, and building all of them costs more than Python's
    start-up."""
    chosen = None if argv is None else (group_named(argv) or "")

    def want(*names: str) -> bool:
        return chosen is None or chosen in names

    top = _Parser(
        prog="entitlements",
        description=TOP_DESCRIPTION,
        epilog=TOP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"entitlements {__version__}")
    _common(top, top=True)
    top.set_defaults(handler=None, help_parser=top)
    g = _Grammar(top.add_subparsers(title="commands", dest="group", metavar="GROUP"))

    plans = g.group("plans", "the plan catalog", "Define, list and retire plans.")
    if want("plans"):
        _plans(g, plans)
    subs = g.group(
        "subs",
        "subscriptions",
        "Trials, conversions, plan and seat changes, suspension and cancellation.",
        aliases=["subscriptions"],
    )
    if want("subs", "subscriptions"):
        _subscriptions(g, subs)
    overrides = g.group(
        "overrides", "per-owner overrides", "Features and limits set for one owner."
    )
    if want("overrides"):
        _overrides(g, overrides)
    _check(g)
    contracts = g.group(
        "contracts",
        "contracts and signatures",
        "Issue an agreement, send signing links, follow signers, convert when signed.",
    )
    if want("contracts"):
        _contracts(g, contracts)
    migrations = g.group(
        "migrations",
        "plan-version migrations",
        "Move a plan's subscribers to one of its versions: create a draft, preview it,\n"
        "run it in batches (resumable, from any process), cancel it.",
    )
    if want("migrations"):
        _migrations(g, migrations)
    invoices = g.group(
        "invoices", "invoices", "What each owner owes: drafts, finalized invoices, payments."
    )
    if want("invoices"):
        _invoices(g, invoices)
    audit = g.group("audit", "the audit trail", "What was done to an owner, and its evidence.")
    if want("audit"):
        _audit(g, audit)
    notifications = g.group(
        "notifications",
        "what the host hears about",
        "Thresholds crossed, trials ending...: list them, hand them over, retry failed ones.",
    )
    if want("notifications"):
        _notifications(g, notifications)
    _sweep(g)
    db = g.group("db", "the database schema", "Create, upgrade and inspect the schema.")
    if want("db"):
        _db(g, db)
    return top, g.commands


class _Grammar:
    """Adds groups and commands to the top parser, and keeps every command it added."""

    def __init__(self, groups: Any) -> None:
        self.groups = groups
        self.commands: list[CommandInfo] = []

    def group(self, name: str, summary: str, description: str, **kw: Any) -> Any:
        p = self.groups.add_parser(
            name,
            help=summary,
            description=description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            **kw,
        )
        _common(p, top=False)
        p.set_defaults(help_parser=p)
        return p.add_subparsers(title="commands", dest="command", metavar="COMMAND")

    def command(
        self,
        parent: Any,
        words: tuple[str, ...],
        handler: str,
        summary: str,
        description: str,
        example: str,
        **kw: Any,
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(
            words[-1],
            help=summary,
            description=f"{summary[0].upper()}{summary[1:]}.\n\n{description}",
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
            **kw,
        )
        _common(p, top=False)
        p.set_defaults(handler=handler, help_parser=p, command_parser=p)
        if handler not in READS:
            _writes(p)
        self.commands.append(CommandInfo(words, p, example))
        return p


def _reason(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    p.add_argument("--reason", required=required, help="why (kept in the audit trail)")


def _owner(p: argparse.ArgumentParser) -> None:
    p.add_argument("owner", type=inputs.owner, help="kind:id or tenant/kind:id")


def _purchase(p: argparse.ArgumentParser) -> None:
    """What a subscription is taken with: its seats and the notes kept on it."""
    p.add_argument("--seats", type=inputs.count, help="purchased seats")
    p.add_argument("--notes", help="free text kept on the subscription")


def _lowering(p: argparse.ArgumentParser) -> None:
    """A change that may leave the owner over a limit: refused unless allowed, audited
    with its reason."""
    p.add_argument("--allow-over-quota", action="store_true", help="apply even if over a limit")
    _reason(p)


def _paged(p: argparse.ArgumentParser) -> None:
    """A list read a page at a time: the next page's cursor is said on stderr."""
    p.add_argument(
        "--page-size", type=inputs.whole_number, default=100, help="items per page (1-1000)"
    )
    p.add_argument("--cursor", help="where the page starts (said after the page before it)")


def _plans(g: _Grammar, plans: Any) -> None:
    """Define, list and retire plans."""
    p = g.command(
        plans,
        ("plans", "load"),
        "plans_load",
        "make the stored catalog match a TOML or JSON file",
        "New plans are defined, changed terms become new versions, statuses and names are\n"
        "updated; plans missing from the file are left alone and listed. One transaction;\n"
        "progress on stderr.",
        'entitlements plans load plans.toml --reason "2027 prices"',
    )
    p.add_argument("file", help="the catalog (.toml or .json)")
    _reason(p)
    g.command(
        plans,
        ("plans", "list"),
        "plans_list",
        "list the plans, latest version of each",
        "Key, name, status, version, price and how many limits and features each has.",
        "entitlements plans list --json",
    )
    p = g.command(
        plans,
        ("plans", "show"),
        "plans_show",
        "show a plan's limits and features",
        "The latest version unless --version names another.",
        "entitlements plans show pro --version 2",
    )
    p.add_argument("key", help="the plan key")
    p.add_argument("--version", type=inputs.whole_number, help="a plan version (default: latest)")
    p = g.command(
        plans,
        ("plans", "status"),
        "plans_status",
        "activate, archive or retire a plan",
        "Archived plans keep their subscribers but take no new ones; retired plans are\n"
        "refused everywhere.",
        'entitlements plans status pro archived --reason "replaced by pro-2027"',
    )
    p.add_argument("key", help="the plan key")
    p.add_argument("status", choices=["draft", "active", "archived", "retired"])
    _reason(p)


def _subscriptions(g: _Grammar, subs: Any) -> None:
    """Trials, conversions, plan and seat changes, suspension and cancellation."""
    p = g.command(
        subs,
        ("subs", "trial"),
        "subs_trial",
        "start a trial",
        "The trial lasts the plan's trial days unless --trial-days says otherwise.",
        'entitlements subs trial organization:acme pro --trial-days 30 --notes "met at the fair"',
    )
    _owner(p)
    p.add_argument("plan", help="the plan key")
    p.add_argument("--trial-days", type=inputs.count, help="length of the trial in days")
    _purchase(p)
    p = g.command(
        subs,
        ("subs", "convert"),
        "subs_convert",
        "convert a trial to paid, without a contract",
        "Refused while the owner has a contract out for signature: convert from the\n"
        "contract once it is completed (`entitlements contracts convert`), or pass\n"
        "--without-contract to convert regardless.",
        'entitlements subs convert organization:acme --seats 5 --notes "paid by card"',
    )
    _owner(p)
    p.add_argument("--plan", help="another plan to convert onto (default: the trial's)")
    _purchase(p)
    p.add_argument(
        "--without-contract",
        action="store_true",
        help="convert even though a contract is out for signature",
    )
    _reason(p)
    p = g.command(
        subs,
        ("subs", "change-plan"),
        "subs_change_plan",
        "upgrade or downgrade",
        "Refused if current usage would exceed a new limit, unless --allow-over-quota.",
        "entitlements subs change-plan organization:acme growth --allow-over-quota",
    )
    _owner(p)
    p.add_argument("plan", help="the plan key")
    _lowering(p)
    p = g.command(
        subs,
        ("subs", "seats"),
        "subs_seats",
        "set the purchased seats",
        "Refused if more seats are assigned than the new count, unless --allow-over-quota.",
        "entitlements subs seats organization:acme 15",
    )
    _owner(p)
    p.add_argument("seats", type=inputs.count, help="the new seat count")
    _lowering(p)
    for event, summary, description, example in (
        (
            "suspend",
            "suspend a subscription",
            "The owner keeps read-only access until it is resumed.",
            'entitlements subs suspend organization:acme --reason "chargeback"',
        ),
        (
            "resume",
            "lift a suspension",
            "The subscription returns to the status it had.",
            "entitlements subs resume organization:acme",
        ),
        (
            "cancel",
            "end the subscription",
            "Now, or at the end of the current period with --at-period-end.",
            "entitlements subs cancel organization:acme --at-period-end",
        ),
    ):
        p = g.command(subs, ("subs", event), "subs_lifecycle", summary, description, example)
        p.set_defaults(event=event)
        _owner(p)
        _reason(p)
        if event == "cancel":
            p.add_argument(
                "--at-period-end", action="store_true", help="cancel when the period ends"
            )
    p = g.command(
        subs,
        ("subs", "show"),
        "subs_show",
        "show an owner's subscriptions",
        "Every subscription the owner has had, oldest first, a page at a time.",
        "entitlements subs show organization:acme",
    )
    _owner(p)
    _paged(p)
    _later(g, subs)


def _later(g: _Grammar, subs: Any) -> None:
    """Pending changes and pauses."""
    p = g.command(
        subs,
        ("subs", "schedule"),
        "subs_schedule",
        "schedule a plan or seat change for later",
        "Takes effect at the end of the current period, or at --at; one change is pending\n"
        "at a time (--replace replaces it).",
        "entitlements subs schedule organization:acme --plan free --reason downgrade",
    )
    _owner(p)
    p.add_argument("--plan", help="the plan key to move to")
    p.add_argument("--version", type=inputs.whole_number, help="the plan version to move to")
    p.add_argument("--seats", type=inputs.count, help="the seats to hold")
    p.add_argument("--at", type=inputs.instant, help="when (default: the period end)")
    p.add_argument("--replace", action="store_true", help="replace the pending change")
    _lowering(p)
    p = g.command(
        subs,
        ("subs", "pending"),
        "subs_pending",
        "show the pending change",
        "The change waiting for its instant: a scheduled change, a pause, a cancellation.",
        "entitlements subs pending organization:acme",
    )
    _owner(p)
    p = g.command(
        subs,
        ("subs", "cancel-pending"),
        "subs_cancel_pending",
        "drop the pending change",
        "Nothing in force changes; a cancellation at period end is undone.",
        "entitlements subs cancel-pending organization:acme",
    )
    _owner(p)
    _reason(p)
    p = g.command(
        subs,
        ("subs", "pause"),
        "subs_pause",
        "pause a subscription",
        "Now or from --at, until --resume-at or until unpaused; read-only meanwhile.",
        "entitlements subs pause organization:acme --at 2026-06-01 --resume-at 2026-09-01",
    )
    _owner(p)
    p.add_argument("--at", type=inputs.instant, help="when it begins (default: now)")
    p.add_argument("--resume-at", type=inputs.instant, help="when it ends by itself")
    p.add_argument(
        "--restart-period", action="store_true", help="restart the billing period on unpause"
    )
    _reason(p)
    p = g.command(
        subs,
        ("subs", "unpause"),
        "subs_unpause",
        "end a pause",
        "Now, or at --at; for a pause still to begin, drop it.",
        "entitlements subs unpause organization:acme",
    )
    _owner(p)
    p.add_argument("--at", type=inputs.instant, help="when it ends (default: now)")
    _reason(p)


def _overrides(g: _Grammar, overrides: Any) -> None:
    """Features and limits set for one owner."""
    p = g.command(
        overrides,
        ("overrides", "set"),
        "overrides_set",
        "turn a feature on or off, or set a limit, for one owner",
        "The key must be one some plan version defines (a typo is refused with a\n"
        "suggestion); --force sets it anyway, with a warning.",
        'entitlements overrides set organization:acme sso --off --reason "DPA pending"',
    )
    _owner(p)
    p.add_argument("key", help="the feature or limit")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--on", dest="on", action="store_const", const=True, help="feature on")
    what.add_argument("--off", dest="on", action="store_const", const=False, help="feature off")
    what.add_argument("--limit", type=inputs.whole_number, help="limit value")
    what.add_argument("--unlimited", action="store_true", help="no limit")
    _reason(p, required=True)
    p.add_argument(
        "--expires-at", type=inputs.instant, metavar="TIME", help="the override ends then"
    )
    p.add_argument(
        "--force", action="store_true", help="set it even if no plan version has the key"
    )
    p.add_argument(
        "--alerts",
        type=inputs.percentages,
        metavar="PERCENTS",
        help='with --limit: alert thresholds for this owner, e.g. 80,100 ("" for none)',
    )
    p = g.command(
        overrides,
        ("overrides", "remove"),
        "overrides_remove",
        "remove an override",
        "The owner's plan decides again.",
        'entitlements overrides remove organization:acme feature sso --reason "DPA signed"',
    )
    _owner(p)
    p.add_argument("kind", choices=["feature", "limit"])
    p.add_argument("key", help="the feature or limit")
    _reason(p, required=True)
    p = g.command(
        overrides,
        ("overrides", "list"),
        "overrides_list",
        "list an owner's overrides",
        "Kind, key, value, who set it, why and until when.",
        "entitlements overrides list organization:acme",
    )
    _owner(p)


def _check(g: _Grammar) -> None:
    """May the owner use a feature, and why."""
    p = g.command(
        g.groups,
        ("check",),
        "check",
        "may the owner use a feature, or what is its limit, and why",
        "Exit 0 when allowed, 10 when not; a feature or limit no plan defines is\n"
        "refused with a suggestion (exit 3).",
        "entitlements check organization:acme sso --action create",
    )
    _owner(p)
    p.add_argument("feature", nargs="?", help="the feature")
    p.add_argument("--action", choices=["read", "create", "update", "delete"])
    p.add_argument("--limit", metavar="NAME", help="ask for this limit instead of a feature")


def _contracts(g: _Grammar, contracts: Any) -> None:
    """Issue, send, follow and convert contracts."""
    p = g.command(
        contracts,
        ("contracts", "issue"),
        "contracts_issue",
        "issue a contract",
        "Give the agreement's text with --body-file or --body, and one --signer per\n"
        "signer; --plan, --term, --amount and --currency are the terms it is signed on.",
        'entitlements contracts issue organization:acme --title MSA --body-file msa.txt --signer "Ada Lovelace <ada@acme.test> (CEO)" --plan pro --amount 1200.00 --currency EUR',
    )
    _owner(p)
    p.add_argument("--title", required=True)
    p.add_argument("--body-file", metavar="FILE", help="the agreement's text, from a file")
    p.add_argument("--body", help="the agreement's text")
    p.add_argument(
        "--signer",
        action="append",
        required=True,
        type=inputs.signer,
        help="'Name <email>' or 'Name <email> (role)'; repeat for each signer",
    )
    p.add_argument("--plan", help="the plan the contract converts to")
    p.add_argument("--term", help="e.g. '12 months'")
    p.add_argument("--amount", type=inputs.amount, help="e.g. 1188.00")
    p.add_argument("--currency", help="ISO 4217, e.g. EUR")
    p.add_argument("--sequential", action="store_true", help="signers sign in order")
    p.add_argument(
        "--key",
        help="an idempotency key: the same command run again returns the first contract",
    )
    p = g.command(
        contracts,
        ("contracts", "send"),
        "contracts_send",
        "send signing links",
        "Prints each signer's link once; the links are not stored.",
        'entitlements contracts send organization:acme c-1 --link "https://app.example/sign/{token}"',
    )
    _contract(p)
    p.add_argument(
        "--link",
        default="https://example.invalid/sign/{token}",
        help="link template with {token}",
    )
    p = g.command(
        contracts,
        ("contracts", "list"),
        "contracts_list",
        "list an owner's contracts",
        "Id, title, status, how many signers have signed, and the plan each converts to;\n"
        "oldest first, a page at a time.",
        "entitlements contracts list organization:acme",
    )
    _owner(p)
    _paged(p)
    p = g.command(
        contracts,
        ("contracts", "show"),
        "contracts_show",
        "show a contract, its terms and its signers by name and state",
        "Signer names come from the personal data kept apart from the evidence\n"
        "(shown as 'erased' once erased).",
        "entitlements contracts show organization:acme c-1",
        aliases=["status"],
    )
    _contract(p)
    p = g.command(
        contracts,
        ("contracts", "verify"),
        "contracts_verify",
        "recompute every hash of a contract",
        "Exit 0 when the evidence holds, 1 when a hash or link is broken.",
        "entitlements contracts verify organization:acme c-1",
    )
    _contract(p)
    p = g.command(
        contracts,
        ("contracts", "convert"),
        "contracts_convert",
        "convert the owner's trial from a completed contract",
        "Onto the contract's plan and terms, linked to the contract and audited; refused\n"
        "(nothing changed) unless every signer has signed and the evidence verifies.",
        'entitlements contracts convert organization:acme c-1 --seats 12 --notes "MSA signed"',
    )
    _contract(p)
    _purchase(p)


def _contract(p: argparse.ArgumentParser) -> None:
    """A contract is named by its owner and its id (an id from another owner is refused
    as missing)."""
    _owner(p)
    p.add_argument("id", help="the contract id")


def _audit(g: _Grammar, audit: Any) -> None:
    """The audit trail and its evidence."""
    p = g.command(
        audit,
        ("audit", "list"),
        "audit_list",
        "everything done to an owner",
        "Oldest first, a page at a time: when, who, what and why.",
        "entitlements audit list organization:acme --json",
    )
    _owner(p)
    _paged(p)
    p = g.command(
        audit,
        ("audit", "verify"),
        "audit_verify",
        "verify the evidence chains of an owner's contracts",
        "Exit 0 when every chain holds, 1 when one is broken.",
        "entitlements audit verify organization:acme",
    )
    _owner(p)


def _tenant(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tenant", help="the tenant (default: none)")


def _notifications(g: _Grammar, notifications: Any) -> None:
    """List, deliver and retry notifications."""
    p = g.command(
        notifications,
        ("notifications", "list"),
        "notifications_list",
        "recent notifications, newest first",
        "Of one owner, or of every owner of a tenant; --failed shows the ones parked after\n"
        "failing every attempt (retry them once the handler is fixed).",
        "entitlements notifications list organization:acme",
    )
    p.add_argument("owner", nargs="?", type=inputs.owner, help="kind:id or tenant/kind:id")
    p.add_argument("--failed", action="store_true", help="only the ones parked as failed")
    p.add_argument("--limit", type=inputs.count, default=50, help="how many (default 50)")
    _tenant(p)
    p = g.command(
        notifications,
        ("notifications", "deliver"),
        "notifications_deliver",
        "hand every notification due to a handler",
        "Each notification is printed as one JSON line on stdout, or, with --command, written\n"
        "as JSON to the command's stdin (run once per notification; a non-zero exit is a\n"
        "failed attempt, retried later). Marked delivered once handed over.",
        "entitlements notifications deliver --command ./send-mail.sh",
    )
    p.add_argument("--command", dest="run", metavar="CMD", help="a command to run for each")
    p.add_argument("--batch", type=inputs.whole_number, default=100, help="per claim (100)")
    p = g.command(
        notifications,
        ("notifications", "retry"),
        "notifications_retry",
        "put a failed notification back in line",
        "Its attempts start again from zero; audited.",
        "entitlements notifications retry 4f2a9c...",
    )
    p.add_argument("id", help="the notification id")
    _tenant(p)


def _migration_id(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", help="the migration's id (from migrations create or list)")
    _tenant(p)


def _migrations(g: _Grammar, migrations: Any) -> None:
    """Plan-version migrations."""
    p = g.command(
        migrations,
        ("migrations", "create"),
        "migrations_create",
        "record a draft migration of a plan's subscribers",
        "Every live subscription on an older version of PLAN (or on --from-version, or\n"
        "of --owner) is an item; nothing moves until `migrations run`. Revising a plan\n"
        "never moves anyone by itself. With --at period_end or a date, the run schedules\n"
        "each move as a pending change of the subscription instead of making it.",
        "entitlements migrations create pro --at period_end --price-lock-until 2027-01-01"
        " --reason 'v4'",
    )
    p.add_argument("plan", help="the plan key")
    p.add_argument("--to-version", type=inputs.count, help="the version to move to (latest)")
    p.add_argument(
        "--from-version",
        type=inputs.count,
        action="append",
        help="a version to move from (repeatable; default: every older one)",
    )
    p.add_argument(
        "--owner", type=inputs.owner, action="append", help="only this owner (repeatable)"
    )
    p.add_argument(
        "--at",
        type=inputs.move_at,
        default="now",
        help="when each subscriber moves: now (as the run reaches it; default), period_end"
        " (at the end of its own current period) or a date or time (a scheduled change)",
    )
    p.add_argument(
        "--price-lock-until",
        type=inputs.instant,
        help="moved subscriptions keep the old version's price until then",
    )
    p.add_argument(
        "--allow-over-quota",
        action="store_true",
        help="move owners whose usage passes a lowered limit (default: skip them)",
    )
    _tenant(p)
    _reason(p)
    p = g.command(
        migrations,
        ("migrations", "preview"),
        "migrations_preview",
        "what a run would do, without doing it",
        "Totals per outcome, then one line per item: version held, features and limits\n"
        "that change, usage that would be over a lowered limit.",
        "entitlements migrations preview 3f2a... --limit 50",
    )
    _migration_id(p)
    p.add_argument(
        "--limit", type=inputs.whole_number, default=20, help="items listed (default 20)"
    )
    p = g.command(
        migrations,
        ("migrations", "run"),
        "migrations_run",
        "move the next batch (or, with --all, everything pending)",
        "Resumable: run it again, from any process, after a crash too; several workers\n"
        "may run one migration at once. A progress bar on stderr. Exit 0 when the\n"
        "items handled all moved or were skipped, 1 when some failed.",
        "entitlements migrations run 3f2a... --all",
    )
    _migration_id(p)
    p.add_argument(
        "--batch", type=inputs.whole_number, default=500, help="items per batch (default 500)"
    )
    p.add_argument("--all", action="store_true", help="run batches until nothing is pending")
    p = g.command(
        migrations,
        ("migrations", "cancel"),
        "migrations_cancel",
        "stop a migration",
        "Moved items stay moved; pending ones are canceled.",
        "entitlements migrations cancel 3f2a... --reason 'wrong version'",
    )
    _migration_id(p)
    _reason(p)
    p = g.command(
        migrations,
        ("migrations", "show"),
        "migrations_show",
        "a migration's status, counts and items",
        "Items listed with --status (moved, skipped, failed...).",
        "entitlements migrations show 3f2a... --status failed",
    )
    _migration_id(p)
    p.add_argument("--status", help="list the items in this status")
    p.add_argument(
        "--limit", type=inputs.whole_number, default=20, help="items listed (default 20)"
    )
    p = g.command(
        migrations,
        ("migrations", "list"),
        "migrations_list",
        "the migrations, newest first",
        "With their status and counts.",
        "entitlements migrations list --json",
    )
    _tenant(p)


def _invoice_id(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", help="the invoice id")
    p.add_argument("--tenant", help="the tenant the invoice belongs to")


def _invoices(g: _Grammar, invoices: Any) -> None:
    """Drafts, finalized invoices and their payment."""
    p = g.command(
        invoices,
        ("invoices", "draft"),
        "invoices_draft",
        "what an owner owes for a period, as it stands",
        "The period holding --now (or starting at --period); nothing is stored.",
        "entitlements invoices draft organization:acme",
    )
    _owner(p)
    p.add_argument("--period", type=inputs.instant, help="the start of the period")
    p = g.command(
        invoices,
        ("invoices", "list"),
        "invoices_list",
        "an owner's invoices and credit notes",
        "Oldest first: number, period, total, status, due date.",
        "entitlements invoices list organization:acme",
    )
    _owner(p)
    p = g.command(
        invoices,
        ("invoices", "show"),
        "invoices_show",
        "one invoice with its lines",
        "Every line with the stretch of the period it covers; the content hash.",
        "entitlements invoices show 3f1c... --json",
    )
    _invoice_id(p)
    p = g.command(
        invoices,
        ("invoices", "finalize"),
        "invoices_finalize",
        "issue the invoice of an ended period",
        "The last period ended by --now (or the one starting at --period); once per owner\n"
        "and period: run again, it shows the invoice issued before.",
        "entitlements invoices finalize organization:acme",
    )
    _owner(p)
    p.add_argument("--period", type=inputs.instant, help="the start of the period")
    p = g.command(
        invoices,
        ("invoices", "mark-paid"),
        "invoices_mark_paid",
        "record an invoice's payment",
        "A past-due subscription with nothing else overdue is active again (staff-managed\n"
        "billing).",
        "entitlements invoices mark-paid 3f1c... --reference BANK-2026-118",
    )
    _invoice_id(p)
    p.add_argument("--reference", help="the payment's reference (a bank transfer id)")
    p.add_argument("--paid-at", type=inputs.instant, help="when it was paid (default: now)")
    p = g.command(
        invoices,
        ("invoices", "void"),
        "invoices_void",
        "void an unpaid invoice",
        "A paid invoice is corrected by a credit note instead.",
        'entitlements invoices void 3f1c... --reason "billed twice"',
    )
    _invoice_id(p)
    _reason(p, required=True)


def _sweep(g: _Grammar) -> None:
    """Apply what time has made due."""
    p = g.command(
        g.groups,
        ("sweep",),
        "sweep",
        "apply what time has made due",
        "Trial ends, scheduled cancellations, renewals, override, reservation and contract\n"
        "expiries, in batches until nothing due is left; progress on stderr, and a final\n"
        "count of what remains (changes that conflicted and wait for the next run).\n"
        "Run it from cron. A --now ahead of the clock is refused unless --dry-run (see\n"
        "what it would change) or --allow-future REASON (audited).",
        "entitlements sweep --dry-run",
    )
    p.add_argument(
        "--batch",
        type=inputs.whole_number,
        default=500,
        help="items of each kind per tenant per batch (default 500)",
    )


def _db(g: _Grammar, db: Any) -> None:
    """Create, upgrade and inspect the schema."""
    g.command(
        db,
        ("db", "upgrade"),
        "db_upgrade",
        "create the schema, or upgrade it to this version's",
        "Runs the shipped migrations; the only command that creates or changes the schema.",
        "entitlements db upgrade --db postgresql+psycopg://app@db/app",
    )
    g.command(
        db,
        ("db", "current"),
        "db_current",
        "show the schema's revision and this version's",
        "Exit 0 when up to date, 6 when there is no schema or it is behind.",
        "entitlements db current",
    )


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parse the line; unknown options get a suggestion from the command's own."""
    import difflib

    top, _ = build(argv)
    args, extra = top.parse_known_args(argv)
    if extra:
        own = getattr(args, "command_parser", None) or top
        words = [w for w in extra if w.startswith("--")]
        known = list(own._option_string_actions)
        for word in words:
            close = difflib.get_close_matches(word.split("=", 1)[0], known, n=1, cutoff=0.6)
            if close:
                raise Usage(f"unrecognized arguments: {' '.join(extra)}; did you mean {close[0]}?")
        raise Usage(f"unrecognized arguments: {' '.join(extra)}")
    return args
