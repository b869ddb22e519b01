"""The staff command line, run as a real command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CATALOG = """
[plans.free]
name = "Free"
status = "active"
limits = { seats = { value = 1, kind = "seats" } }

[plans.pro]
name = "Pro"
status = "active"
features = { sso = true }
limits = { seats = { value = 10, kind = "seats" }, projects = 20 }
"""


@pytest.fixture
def run(tmp_path):
    (tmp_path / "plans.toml").write_text(CATALOG)
    (tmp_path / "msa.txt").write_text("The customer subscribes to Pro.\n")

    def invoke(*args: str, check: bool = True):
        result = subprocess.run(
            [sys.executable, "-m", "entitlements", "--actor", "ann", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            check=False,
        )
        if check:
            assert result.returncode == 0, result.stderr
        return result

    return invoke


def test_staff_run_a_trial_to_paid_by_hand(run, tmp_path):
    assert "defined: free, pro" in run("plans", "load", "plans.toml").stdout
    assert (tmp_path / "entitlements.db").exists(), "the default database is a SQLite file here"
    listed = json.loads(run("--json", "plans", "list").stdout)
    assert [p["key"] for p in listed] == ["free", "pro"]
    assert (
        "trialing"
        in run("subs", "trial", "organization:acme", "pro", "--notes", "fair lead").stdout
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
            "--json",
            "contracts",
            "issue",
            "organization:acme",
            "--title",
            "MSA",
            "--body-file",
            "msa.txt",
            "--signer",
            "Ada Lovelace <ada@acme.test> (CEO)",
            "--plan",
            "pro",
            "--amount",
            "1200.00",
            "--currency",
            "EUR",
        ).stdout
    )
    links = json.loads(
        run(
            "--json",
            "contracts",
            "send",
            "organization:acme",
            issued["id"],
            "--link",
            "https://app.test/sign/{token}",
        ).stdout
    )
    assert links["s1"].startswith("https://app.test/sign/")
    assert "sent" in run("contracts", "status", "organization:acme", issued["id"]).stdout
    assert "verified" in run("contracts", "verify", "organization:acme", issued["id"]).stdout
    assert "ok" in run("audit", "verify", "organization:acme").stdout

    assert (
        "converted"
        in run(
            "subs", "convert", "organization:acme", "--seats", "5", "--notes", "MSA signed"
        ).stdout
    )
    run("subs", "seats", "organization:acme", "8")
    run("subs", "suspend", "organization:acme", "--reason", "chargeback")
    run("subs", "resume", "organization:acme")
    run("subs", "cancel", "organization:acme", "--at-period-end")
    swept = run("sweep", "--now", "2099-01-01T00:00:00+00:00").stdout
    assert "subscription changes" in swept
    history = json.loads(run("--json", "subs", "show", "organization:acme").stdout)
    assert history[-1]["status"] == "canceled"
    actions = [
        e["action"] for e in json.loads(run("--json", "audit", "list", "organization:acme").stdout)
    ]
    assert actions[:2] == ["subscription.start_trial", "override.set"]
    assert "subscription.cancel" in actions
    assert "pro v1" in run("plans", "show", "pro").stdout
    run("plans", "status", "free", "archived")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["subs", "trial", "acme", "pro"], 2, "owner: must look like"),
        (["subs", "trial", "organization:acme", "platinum"], 3, "plan 'platinum' does not exist"),
        (["subs", "suspend", "organization:nobody"], 3, "has no subscription"),
        (["check", "organization:acme"], 2, "name a feature"),
        (["subs", "trial", "organization:acme", "pro", "--seats", "-4"], 2, "seats"),
        (["frobnicate"], 2, "usage:"),
        (["plans", "load", "missing.toml"], 2, "missing.toml"),
        (["--db", "nosuchdb://x", "plans", "list"], 2, "cannot open"),
    ],
)
def test_bad_input_is_one_clear_line_with_a_documented_code_and_changes_nothing(
    run, args, code, message, tmp_path
):
    run("plans", "load", "plans.toml")
    before = (tmp_path / "entitlements.db").read_bytes()
    result = run(*args, check=False)
    assert result.returncode == code, result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("entitlements: ")
    assert message in result.stderr
    assert result.stdout == ""
    assert (tmp_path / "entitlements.db").read_bytes() == before


def test_an_illegal_transition_is_refused_with_code_1(run):
    run("plans", "load", "plans.toml")
    run("subs", "trial", "organization:acme", "pro")
    refused = run("subs", "resume", "organization:acme", check=False)
    assert refused.returncode == 1
    assert "cannot resume" in refused.stderr


def test_help_documents_the_exit_codes(run):
    out = run("--help").stdout
    assert "Exit codes" in out
    assert "10" in out


def test_the_console_script_is_installed():
    script = Path(sys.executable).parent / "entitlements"
    assert script.exists()
    assert subprocess.run([str(script), "--help"], capture_output=True, check=False).returncode == 0
