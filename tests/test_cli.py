"""The staff command line, run as a real command (and, for the exhaustive checks, through
``main`` in this process)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import attrs
import pytest

from entitlements import Entitlements, Limit, LimitKind, Owner
from entitlements.adapters.sql import SqlStore, migrations
from entitlements.cli.main import main
from entitlements.cli.parser import EXIT, build, parse

CATALOG = """
[plans.free]
name = "Free"
status = "active"
limits = { seats = { value = 1, kind = "seats" } }

[plans.pro]
name = "Pro"
status = "active"
features = { sso = true, export = true }
limits = { seats = { value = 10, kind = "seats" }, projects = 20 }
"""
DOCUMENTED = set(EXIT.values()) - {EXIT["internal"]}
CONSENT = "I agree to use electronic records and signatures."


class Ran(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    """Run the command line in this process (``main``, exactly what the console script
    calls), in a working directory of its own."""
    (tmp_path / "plans.toml").write_text(CATALOG)
    (tmp_path / "msa.txt").write_text("The customer subscribes to Pro.\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ENTITLEMENTS_DATABASE_URL", raising=False)

    def invoke(*args: str, check: bool = True) -> Ran:
        capsys.readouterr()
        code = main(["--actor", "ann", *args] if args else [])
        out, err = capsys.readouterr()
        if check:
            assert code == 0, err
        return Ran(code, out, err)

    return invoke


def command(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real command, in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "entitlements", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


@pytest.fixture
def ready(run):
    run("db", "upgrade")
    run("plans", "load", "plans.toml")
    return run


def _library(tmp_path) -> Entitlements:
    """The same database, opened by the library (the signers' side of the flow)."""
    return Entitlements(SqlStore.from_url(f"sqlite:///{tmp_path / 'entitlements.db'}"))


def _sign(ents: Entitlements, token: str, name: str) -> None:
    ents.contracts.open(token)
    ents.contracts.consent(token, consent_text=CONSENT, consent_version="v1")
    ents.contracts.sign(token, typed_name=name)


def test_staff_run_a_trial_to_paid_by_hand(run, tmp_path):
    assert "created the schema" in run("db", "upgrade").stdout
    assert "defined: free, pro" in run("plans", "load", "plans.toml").stdout
    assert (tmp_path / "entitlements.db").exists()
    listed = json.loads(run("plans", "list", "--json").stdout)
    assert [p["key"] for p in listed] == ["free", "pro"]
    assert (
        "trialing"
        in run(
            "subs", "trial", "organization:acme", "pro", "--trial-days", "30", "--notes", "lead"
        ).stdout
    )
    assert "allowed (plan: plan pro v1)" in run("check", "organization:acme", "sso").stdout
    assert "projects: 20" in run("check", "organization:acme", "--limit", "projects").stdout
    run("overrides", "set", "organization:acme", "sso", "--off", "--reason", "DPA pending")
    denied = run("check", "organization:acme", "sso", check=False)
    assert denied.returncode == 10
    assert "DPA pending" in denied.stdout
    run("overrides", "remove", "organization:acme", "feature", "sso", "--reason", "DPA signed")

    issued = json.loads(
        run(
            "contracts",
            "issue",
            "organization:acme",
            "--title",
            "MSA",
            "--body-file",
            "msa.txt",
            "--signer",
            "Ada Lovelace <ada@acme.test> (CEO)",
            "--signer",
            "Bob Byte <bob@acme.test> (CFO)",
            "--plan",
            "pro",
            "--amount",
            "1200.00",
            "--currency",
            "EUR",
            "--json",
        ).stdout
    )
    links = json.loads(
        run(
            "contracts",
            "send",
            "organization:acme",
            issued["id"],
            "--link",
            "https://app.test/sign/{token}",
            "--json",
        ).stdout
    )
    assert links["s1"].startswith("https://app.test/sign/")
    tokens = {k: v.rsplit("/", 1)[1] for k, v in links.items()}
    signers = _library(tmp_path)
    _sign(signers, tokens["s1"], "Ada Lovelace")  # one of two

    refused = run("subs", "convert", "organization:acme", "--seats", "5", check=False)
    assert refused.returncode == EXIT["refused"]
    assert refused.stderr.count("\n") == 1
    assert f"contracts convert organization:acme {issued['id']}" in refused.stderr
    assert "--without-contract" in refused.stderr
    early = run("contracts", "convert", "organization:acme", issued["id"], check=False)
    assert early.returncode == EXIT["conflict"]
    assert "not completed" in early.stderr

    shown = run("contracts", "show", "organization:acme", issued["id"]).stdout
    assert "Ada Lovelace" in shown
    assert "Bob Byte" in shown
    ada, bob = (line for line in shown.splitlines() if line.startswith(("s1", "s2")))
    assert ada.split()[-1] == "signed"
    assert bob.split()[-1] == "sent"
    as_json = json.loads(
        run("contracts", "show", "organization:acme", issued["id"], "--json").stdout
    )
    assert [(s["name"], s["status"]) for s in as_json["signers"]] == [
        ("Ada Lovelace", "signed"),
        ("Bob Byte", "sent"),
    ]
    assert as_json["terms"] == {
        "plan_key": "pro",
        "term": None,
        "amount": "1200.00",
        "currency": "EUR",
    }
    listed = run("contracts", "list", "organization:acme").stdout
    assert issued["id"] in listed
    assert "1/2" in listed

    _sign(signers, tokens["s2"], "Bob Byte")
    signers.close()
    assert "verified" in run("contracts", "verify", "organization:acme", issued["id"]).stdout
    assert "ok" in run("audit", "verify", "organization:acme").stdout
    converted = run(
        "contracts", "convert", "organization:acme", issued["id"], "--seats", "5", "--json"
    ).stdout
    sub = json.loads(converted)
    assert (sub["status"], sub["plan_key"], sub["seats"]) == ("active", "pro", 5)
    assert sub["metadata"]["contract_id"] == issued["id"]

    run("subs", "seats", "organization:acme", "8")
    run("subs", "suspend", "organization:acme", "--reason", "chargeback")
    run("subs", "resume", "organization:acme")
    run("subs", "cancel", "organization:acme", "--at-period-end")
    swept = run("sweep", "--now", "2099-01-01", "--allow-future", "end of term").stdout
    assert "subscription changes" in swept
    assert "0 still due" in swept
    history = json.loads(run("subs", "show", "organization:acme", "--json").stdout)
    assert history[-1]["status"] == "canceled"
    actions = [
        e["action"] for e in json.loads(run("audit", "list", "organization:acme", "--json").stdout)
    ]
    assert actions[:2] == ["subscription.start_trial", "override.set"]
    assert "contract.convert" in actions
    first = run("audit", "list", "organization:acme", "--json", "--page-size", "2")
    more = first.stderr.split("more: --cursor ")[1].split()[0]
    rest = run("audit", "list", "organization:acme", "--json", "--cursor", more)
    paged = json.loads(first.stdout) + json.loads(rest.stdout)
    assert [e["action"] for e in paged] == actions
    assert "subscription.cancel" in actions
    assert "pro v1" in run("plans", "show", "pro").stdout
    run("plans", "status", "free", "archived")


def test_converting_without_the_contract_is_explicit(ready):
    ready("subs", "trial", "organization:acme", "pro")
    ready(
        "contracts", "issue", "organization:acme", "--title", "MSA", "--body", "Terms.",
        "--signer", "Ada Lovelace <ada@acme.test>",
    )  # fmt: skip
    assert ready("subs", "convert", "organization:acme", check=False).returncode == 1
    assert "converted" in ready("subs", "convert", "organization:acme", "--without-contract").stdout


def test_issuing_with_a_key_twice_issues_one_contract(ready):
    ready("subs", "trial", "organization:acme", "pro")
    issue = (
        "contracts", "issue", "organization:acme", "--title", "MSA", "--body", "Terms.",
        "--signer", "Ada Lovelace <ada@acme.test>", "--key", "msa-2027", "--json",
    )  # fmt: skip
    first, again = json.loads(ready(*issue).stdout), json.loads(ready(*issue).stdout)
    assert first["id"] == again["id"]
    listed = json.loads(ready("contracts", "list", "organization:acme", "--json").stdout)
    assert len(listed) == 1


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["subs", "trial", "acme", "pro"], 2, "owner: must look like"),
        (["subs", "trial", "organization:acme", "platinum"], 3, "plan 'platinum' does not exist"),
        (["subs", "trial", "organization:acme", "prp"], 3, "(did you mean 'pro'?)"),
        (["subs", "trial", "organization:acme", "pro", "--days", "3"], 2, "did you mean --trial-days?"),
        (["subs", "suspend", "organization:nobody"], 3, "has no subscription"),
        (["check", "organization:acme"], 2, "name a feature"),
        (["check", "organization:acme", "ssso"], 3, "no plan version has a feature 'ssso' (did you mean 'sso'?)"),
        (["check", "organization:acme", "--limit", "project"], 3, "(did you mean 'projects'?)"),
        (["subs", "trial", "organization:acme", "pro", "--seats", "-4"], 2, "argument --seats: must be zero or more"),
        (["subs", "trial", "organization:acme", "pro", "--seats", "x"], 2, "argument --seats: not a whole number"),
        (["overrides", "set", "organization:acme", "exprot", "--on", "--reason", "r"], 3, "no plan version has a feature 'exprot' (did you mean 'export'?); pass --force"),
        (["overrides", "set", "organization:acme", "sso", "--on", "--reason", "r", "--expires-at", "2020-01-01"], 2, "--expires-at: must be after"),
        (["overrides", "set", "organization:acme", "sso", "--on", "--reason", "r", "--expires-at", "soon"], 2, "argument --expires-at: not a date or time: 'soon'"),
        (["contracts", "issue", "organization:acme", "--title", "T", "--body", "B", "--signer", "A <a@b.test>", "--amount", "1,188.00", "--currency", "EUR"], 2, "argument --amount: not a decimal amount: '1,188.00' (no thousands separators"),
        (["contracts", "issue", "organization:acme", "--title", "T", "--body", "B", "--signer", "Ada"], 2, "argument --signer: write signers as"),
        (["contracts", "show", "organization:acme", "nope"], 3, "contract nope does not exist"),
        (["frobnicate"], 2, "usage:"),
        (["plan", "list"], 2, "did you mean 'plans'?"),
        (["plans", "load", "missing.toml"], 2, "missing.toml"),
        (["--db", "nosuchdb://x", "plans", "list"], 2, "cannot open"),
        (["sweep", "--now", "2027-02-30"], 2, "argument --now: not a date or time"),
    ],
)  # fmt: skip
def test_bad_input_is_one_clear_line_with_a_documented_code_and_changes_nothing(
    ready, args, code, message, tmp_path
):
    ready("subs", "trial", "organization:acme", "pro")
    before = (tmp_path / "entitlements.db").read_bytes()
    result = ready(*args, check=False)
    assert result.returncode == code, result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("entitlements: ")
    assert message in result.stderr
    assert result.stdout == ""
    assert (tmp_path / "entitlements.db").read_bytes() == before


def test_an_illegal_transition_is_refused_with_code_1(ready):
    ready("subs", "trial", "organization:acme", "pro")
    refused = ready("subs", "resume", "organization:acme", check=False)
    assert refused.returncode == 1
    assert "cannot resume" in refused.stderr


def test_an_override_on_a_key_no_plan_has_needs_force_and_warns(ready):
    forced = ready(
        "overrides", "set", "organization:acme", "exprot", "--on", "--reason", "r", "--force"
    )
    assert "override set" in forced.stdout
    assert forced.stderr.startswith("entitlements: warning: no plan version has a feature 'exprot'")
    limit = ready(
        "overrides",
        "set",
        "organization:acme",
        "seets",
        "--limit",
        "3",
        "--reason",
        "r",
        check=False,
    )
    assert limit.returncode == 3
    assert "no plan version has a limit 'seets' (did you mean 'seats'?)" in limit.stderr


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2027-01-01", "2027-01-01T00:00:00+00:00"),
        ("2027-01-01T09:30:00+02:00", "2027-01-01T07:30:00+00:00"),
        ("2027-01-01T09:30:00Z", "2027-01-01T09:30:00+00:00"),
        ("2027-01-01T09:30", "2027-01-01T09:30:00+00:00"),
    ],
)
def test_dates_are_days_at_midnight_utc_or_full_iso_times(ready, given, stored):
    override = json.loads(
        ready(
            "overrides", "set", "organization:acme", "sso", "--on", "--reason", "r",
            "--expires-at", given, "--json",
        ).stdout
    )  # fmt: skip
    assert override["expires_at"] == stored


def test_json_is_accepted_anywhere_on_the_line(ready):
    before = ready("--json", "plans", "list").stdout
    assert ready("plans", "--json", "list").stdout == before
    assert ready("plans", "list", "--json").stdout == before
    assert json.loads(before)[0]["key"] == "free"


def test_read_only_commands_never_create_a_database(run, tmp_path):
    for args in (
        ["plans", "list"],
        ["subs", "show", "organization:acme"],
        ["--db", "sqlite:///entitlments.db", "subs", "show", "organization:acme"],
        ["db", "current"],
        ["check", "organization:acme", "sso"],
    ):
        result = run(*args, check=False)
        assert result.returncode == EXIT["no_schema"], result.stderr
        assert result.stderr.count("\n") == 1
        assert "no entitlements schema at sqlite:///" in result.stderr
        assert "db upgrade" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["msa.txt", "plans.toml"]


def test_a_schema_behind_this_version_is_named_and_upgraded(ready, tmp_path):
    store = SqlStore.from_url(f"sqlite:///{tmp_path / 'entitlements.db'}")
    with store.engine.begin() as connection:
        migrations.downgrade(connection, "0004")
    store.engine.dispose()
    behind = ready("plans", "list", check=False)
    assert behind.returncode == EXIT["no_schema"]
    assert f"at revision 0004, this version needs {migrations.HEAD}" in behind.stderr
    assert ready("db", "current", check=False).returncode == EXIT["no_schema"]
    assert f"from revision 0004 to {migrations.HEAD}" in ready("db", "upgrade").stdout
    assert json.loads(ready("db", "current", "--json").stdout) == {
        "revision": migrations.HEAD,
        "head": migrations.HEAD,
    }
    assert "up to date" in ready("db", "upgrade").stdout


def test_version_bare_command_and_group_help(run, tmp_path):
    assert run("--version").stdout.strip() == "entitlements 0.1.0"
    bare = run()
    assert bare.stdout.startswith("usage: entitlements")
    assert "exit codes" in bare.stdout
    assert "``" not in bare.stdout
    group = run("contracts", check=False)
    assert group.returncode == EXIT["usage"]
    assert group.stdout == ""
    assert group.stderr.startswith("usage: entitlements contracts")
    assert "convert" in group.stderr
    assert "issue" in group.stderr
    subs = command("subs", cwd=tmp_path)
    assert subs.returncode == EXIT["usage"]
    assert "usage: entitlements subs" in subs.stderr
    helped = run("contracts", "convert", "--help").stdout
    assert "example:\n  entitlements contracts convert" in helped


def test_help_documents_the_exit_codes(run):
    out = run("--help").stdout
    assert "exit codes" in out
    for code in DOCUMENTED:
        assert f"\n  {code} " in out


def test_every_command_has_a_description_and_an_example_that_parses():
    _, commands = build()
    assert len(commands) >= 27
    for info in commands:
        assert info.parser.description, info.words
        assert len(info.parser.description.split("\n\n", 1)[1]) > 20, info.words
        assert info.example.startswith(f"entitlements {' '.join(info.words)}"), info.words
        words = shlex.split(info.example)[1:]
        args = parse(words)
        assert args.command_parser is not None
        assert info.example in (info.parser.epilog or "")


GARBAGE = ["acme", "x", "-4", "1,188.00", "2027-02-30", ""]


def _malformed_lines():
    """Each command's example with one value at a time replaced by garbage, with an
    unknown option, and with its arguments left out."""
    _, commands = build()
    for info in commands:
        words = shlex.split(info.example)[1:]
        if "--db" in words:
            at = words.index("--db")
            del words[at : at + 2]
        fixed = len(info.words)
        for i in range(fixed, len(words)):
            if words[i].startswith("--"):
                continue
            for garbage in GARBAGE:
                yield [*words[:i], garbage, *words[i + 1 :]]
        yield [*words, "--frobnicate"]
        yield list(info.words[:fixed]) + (["--seats"] if "--seats" in words else [])


def test_every_command_given_malformed_values_fails_in_one_line_with_a_documented_code(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plans.toml").write_text(CATALOG)
    (tmp_path / "msa.txt").write_text("The customer subscribes to Pro.\n")
    db = f"sqlite:///{tmp_path / 'entitlements.db'}"
    assert main(["--db", db, "db", "upgrade"]) == 0
    assert main(["--db", db, "plans", "load", "plans.toml"]) == 0
    assert main(["--db", db, "subs", "trial", "organization:acme", "pro"]) == 0
    capsys.readouterr()
    tried = 0
    for line in _malformed_lines():
        code = main(["--db", db, "--actor", "ann", *line])
        _, err = capsys.readouterr()
        tried += 1
        assert code in DOCUMENTED, (line, err)
        assert "Traceback" not in err, line
        if code not in (EXIT["ok"], EXIT["denied"]):
            assert err.count("\n") == 1, (line, err)
            assert err.startswith("entitlements: "), (line, err)
    assert tried > 300


def test_sweep_works_through_a_backlog_in_batches_with_progress(ready, tmp_path):
    ents = _library(tmp_path)
    for i in range(25):
        ents.subscriptions.start_trial(ents_owner(i), "pro", actor="staff", trial_days=1)
    ents.close()
    swept = ready(*FAST_FORWARD, "--batch", "10", "--json")
    report = json.loads(swept.stdout)
    assert len(report["changes"]) >= 25
    assert report["remaining"] == 0
    assert report["conflicts"] == []
    assert report["failures"] == []
    progress = swept.stderr.splitlines()
    assert len(progress) >= 2
    assert progress[0] == "entitlements: sweep: 10 items handled so far"
    assert progress[-1] == "entitlements: sweep: 25 items handled so far"
    again = ready(*FAST_FORWARD)
    assert "0 subscription changes" in again.stdout
    assert "0 still due" in again.stdout
    assert again.stderr == ""


FAST_FORWARD = ("sweep", "--now", "2099-01-01", "--allow-future", "backlog test")


def _dump(tmp_path):
    store = SqlStore.from_url(f"sqlite:///{tmp_path / 'entitlements.db'}")
    try:
        return store.dump()
    finally:
        store.engine.dispose()


@pytest.fixture
def live(ready):
    """A trial, a subscription canceling at period end and a contract out for signature:
    what a sweep dated years ahead would end."""
    ready("subs", "trial", "organization:acme", "pro", "--trial-days", "30")
    ready("subs", "trial", "organization:beta", "pro")
    ready("subs", "convert", "organization:beta", "--seats", "3")
    ready("subs", "cancel", "organization:beta", "--at-period-end")
    ready(
        "contracts", "issue", "organization:acme", "--title", "MSA", "--body", "Terms.",
        "--signer", "Ada Lovelace <ada@acme.test>",
    )  # fmt: skip
    return ready


@pytest.mark.parametrize(
    "line",
    [
        ["sweep", "--now", "2099-01-01"],
        ["sweep", "--now", "2099-01-01", "--json"],
        ["subs", "cancel", "organization:acme", "--now", "2099-01-01"],
        ["--now", "2099-01-01", "overrides", "set", "organization:acme", "sso", "--off", "--reason", "r"],
    ],
)  # fmt: skip
def test_a_write_dated_in_the_future_is_refused_and_changes_nothing(live, tmp_path, line):
    before = _dump(tmp_path)
    refused = live(*line, check=False)
    assert refused.returncode == EXIT["usage"]
    assert refused.stderr.count("\n") == 1
    assert "ahead of the clock" in refused.stderr
    assert "--dry-run" in refused.stderr
    assert "--allow-future REASON" in refused.stderr
    assert refused.stdout == ""
    assert _dump(tmp_path) == before


def test_reads_and_writes_within_the_skew_take_any_now(live):
    from datetime import UTC, datetime, timedelta

    assert live("check", "organization:acme", "sso", "--now", "2099-01-01", check=False).stdout
    soon = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert "0 still due" in live("sweep", "--now", soon).stdout


def test_a_dry_run_prints_the_changes_and_stores_nothing(live, tmp_path):
    before = _dump(tmp_path)
    rehearsed = live("sweep", "--now", "2099-01-01", "--dry-run")
    assert rehearsed.stderr.endswith("entitlements: dry run: nothing was stored\n")
    lines = rehearsed.stdout.splitlines()
    assert lines[0].startswith("sweep at 2099-01-01T00:00:00+00:00: ")
    assert any(
        line.startswith("  organization:beta: cancel at ") and line.endswith("(active -> canceled)")
        for line in lines
    ), lines
    assert any(line.startswith("  organization:acme: end_trial at ") for line in lines), lines
    assert any(line.startswith("  organization:acme: contract ") for line in lines), lines
    assert _dump(tmp_path) == before
    report = json.loads(live("sweep", "--now", "2099-01-01", "--dry-run", "--json").stdout)
    assert {c["event"] for c in report["changes"]} >= {"end_trial", "cancel"}
    canceled = live("subs", "cancel", "organization:acme", "--dry-run")
    assert "canceled" in canceled.stdout
    assert _dump(tmp_path) == before


def test_allow_future_writes_and_puts_the_reason_on_record(live, tmp_path):
    live("overrides", "set", "organization:beta", "sso", "--off", "--reason", "audit",
         "--now", "2099-01-01", "--allow-future", "replaying the 2099 incident")  # fmt: skip
    events = json.loads(live("audit", "list", "organization:beta", "--json").stdout)
    consent = next(e for e in events if e["action"] == "cli.future_dated")
    assert consent["reason"] == "replaying the 2099 incident"
    assert consent["actor"] == "staff:ann"
    assert consent["after"]["now"] == "2099-01-01T00:00:00+00:00"
    assert consent["at"] < "2099"
    assert events[-1]["action"] == "override.set"
    assert events[-1]["at"].startswith("2099-01-01")
    swept = live("sweep", "--now", "2099-01-01", "--allow-future", "year-end drill", "--json")
    assert json.loads(swept.stdout)["changes"]
    ents = _library(tmp_path)
    try:
        (note,) = ents.audit.for_target("cli:sweep")
    finally:
        ents.close()
    assert (note.action, note.reason) == ("cli.future_dated", "year-end drill")
    blank = live("sweep", "--now", "2099-01-02", "--allow-future", " ", check=False)
    assert blank.returncode == EXIT["usage"]
    assert "give a reason" in blank.stderr


def ents_owner(i: int):
    from entitlements import Owner

    return Owner("organization", f"o{i}")


def test_a_long_catalog_load_shows_progress(run, tmp_path):
    run("db", "upgrade")
    many = "".join(f'[plans.p{i:02}]\nname = "P{i}"\nstatus = "active"\n\n' for i in range(25))
    (tmp_path / "many.toml").write_text(many)
    loaded = run("plans", "load", "many.toml")
    assert loaded.stderr.splitlines() == [
        "entitlements: plans load: 10/25 plans applied",
        "entitlements: plans load: 20/25 plans applied",
        "entitlements: plans load: 25/25 plans applied",
    ]
    assert "defined: p00" in loaded.stdout
    assert loaded.stdout.count("\n") == 3


def test_the_real_command_prints_one_line_and_no_traceback(tmp_path):
    assert command("db", "upgrade", cwd=tmp_path).returncode == 0
    for args, code in (
        (["contracts", "issue", "organization:acme", "--title", "T", "--body", "B", "--signer", "A <a@b.test>", "--amount", "1,188.00"], EXIT["usage"]),
        (["--db", "sqlite:///entitlments.db", "subs", "show", "organization:acme"], EXIT["no_schema"]),
    ):  # fmt: skip
        result = command(*args, cwd=tmp_path)
        assert result.returncode == code, result.stderr
        assert result.stderr.count("\n") == 1
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "entitlments.db").exists()
    assert command("--version", cwd=tmp_path).stdout == "entitlements 0.1.0\n"
    assert command(cwd=tmp_path).stdout.startswith("usage: entitlements")


def test_the_console_script_is_installed():
    script = Path(sys.executable).parent / "entitlements"
    assert script.exists()
    assert subprocess.run([str(script), "--help"], capture_output=True, check=False).returncode == 0


def test_the_docs_list_every_exit_code():
    page = (Path(__file__).parent.parent / "docs" / "cli.md").read_text(encoding="utf-8")
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", page, re.M)}
    assert documented == set(EXIT.values())


def test_staff_schedule_pause_and_cancel_pending_changes(ready):
    ready("subs", "trial", "organization:acme", "pro")
    ready("subs", "convert", "organization:acme", "--seats", "3")
    done = ready("subs", "schedule", "organization:acme", "--plan", "free", "--reason", "down")
    assert "scheduled a change to plan free v1" in done.stdout
    refused = ready("subs", "schedule", "organization:acme", "--seats", "2", check=False)
    assert refused.returncode != 0
    assert "plan free" in refused.stderr
    assert "plan free" in ready("subs", "pending", "organization:acme").stdout
    assert "plan free" in ready("subs", "show", "organization:acme").stdout
    pending = json.loads(ready("subs", "pending", "organization:acme", "--json").stdout)
    assert pending["plan_key"] == "free"
    ready("subs", "cancel-pending", "organization:acme")
    assert "no pending change" in ready("subs", "pending", "organization:acme").stdout
    paused = ready("subs", "pause", "organization:acme", "--reason", "holiday")
    assert "paused" in paused.stdout
    assert "unpaused" in ready("subs", "unpause", "organization:acme").stdout


def test_staff_list_deliver_and_retry_notifications(ready, tmp_path):
    ready("subs", "trial", "organization:acme", "pro", "--trial-days", "30")
    ready("subs", "convert", "organization:acme")
    listed = json.loads(ready("notifications", "list", "organization:acme", "--json").stdout)
    assert [n["kind"] for n in listed] == ["subscription.trial_converted"]
    failing = ready("notifications", "deliver", "--command", "exit 3")
    assert "0 delivered" in failing.stderr
    shown = ready("notifications", "list").stdout
    assert "CalledProcessError" in shown
    assert "pending" in shown
    ents = _library(tmp_path)
    with ents.atomic() as uow:  # a handler that failed every attempt: parked
        stored = uow.notifications.get(listed[0]["id"])
        uow.notifications.update(
            attrs.evolve(stored, failed_at=stored.created_at, next_attempt_at=None), None
        )
    ents.close()
    assert listed[0]["id"] in ready("notifications", "list", "--failed").stdout
    assert "back in line" in ready("notifications", "retry", listed[0]["id"]).stdout
    delivered = ready("notifications", "deliver")
    (line,) = delivered.stdout.splitlines()
    assert json.loads(line)["id"] == listed[0]["id"]
    assert "1 delivered" in delivered.stderr
    missing = ready("notifications", "retry", "nope", check=False)
    assert missing.returncode == EXIT["not_found"]
    ready("overrides", "set", "organization:acme", "projects", "--limit", "30", "--alerts",
          "80,100", "--reason", "pilot")  # fmt: skip
    (override,) = json.loads(ready("overrides", "list", "organization:acme", "--json").stdout)
    assert override["alerts"] == [80, 100]
    wrong = ready("overrides", "set", "organization:acme", "sso", "--on", "--alerts", "80",
                  "--reason", "x", check=False)  # fmt: skip
    assert wrong.returncode == EXIT["usage"]
    bad = ready("overrides", "set", "organization:acme", "projects", "--limit", "3",
                "--alerts", "0", "--reason", "x", check=False)  # fmt: skip
    assert bad.returncode == EXIT["usage"]


# -- migrations ------------------------------------------------------------------------


def _grandfathered(tmp_path, count: int = 3) -> None:
    ents = _library(tmp_path)
    for n in range(count):
        ents.subscriptions.subscribe(Owner("organization", f"o{n}"), "pro", actor="staff")
    ents.plans.revise("pro", actor="staff", limits={"projects": Limit(40, kind=LimitKind.GAUGE)})
    ents.close()


def test_a_migration_from_the_command_line(ready, tmp_path):
    _grandfathered(tmp_path)
    created = json.loads(ready("migrations", "create", "pro", "--reason", "v2", "--json").stdout)
    migration_id = created["migration"]["id"]
    assert created["counts"]["pending"] == 3
    preview = ready("migrations", "preview", migration_id)
    assert "3 items: moved 3" in preview.stdout
    assert "projects 20->40" in preview.stdout
    first = ready("migrations", "run", migration_id, "--batch", "1")
    assert "running" in first.stdout
    assert "2 pending: run it again" in first.stdout
    rest = ready("migrations", "run", migration_id, "--batch", "1", "--all")
    assert "is completed: moved 3" in rest.stdout
    assert "3/3" in rest.stderr  # the progress bar
    shown = ready("migrations", "show", migration_id, "--status", "moved")
    assert shown.stdout.count("organization:o") == 3
    listed = json.loads(ready("migrations", "list", "--json").stdout)
    assert [m["migration"]["id"] for m in listed] == [migration_id]
    again = ready("migrations", "cancel", migration_id, check=False)
    assert again.returncode == EXIT["usage"]


def test_cancel_and_the_exit_codes(ready, tmp_path):
    _grandfathered(tmp_path)
    created = json.loads(ready("migrations", "create", "pro", "--json").stdout)
    migration_id = created["migration"]["id"]
    canceled = ready("migrations", "cancel", migration_id, "--reason", "not yet")
    assert "canceled 3" in canceled.stdout
    missing = ready("migrations", "show", "f" * 32, check=False)
    assert missing.returncode == EXIT["not_found"]
    unknown = ready("migrations", "create", "prp", check=False)
    assert unknown.returncode == EXIT["not_found"]
    assert "did you mean 'pro'" in unknown.stderr


def test_a_migration_at_period_end_from_the_command_line(ready, tmp_path):
    _grandfathered(tmp_path, count=2)
    created = json.loads(
        ready("migrations", "create", "pro", "--at", "period_end", "--json").stdout
    )
    migration_id = created["migration"]["id"]
    assert created["migration"]["move"] == "period_end"
    preview = ready("migrations", "preview", migration_id)
    assert "2 items: scheduled 2" in preview.stdout
    ran = ready("migrations", "run", migration_id, "--all")
    assert "scheduled 2" in ran.stdout
    canceled = ready("migrations", "cancel", migration_id, "--reason", "not yet")
    assert "canceled 2" in canceled.stdout
    for bad in ("2001-01-01", "tomorrow"):
        refused = ready("migrations", "create", "pro", "--at", bad, check=False)
        assert refused.returncode == EXIT["usage"], bad
