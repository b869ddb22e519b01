"""The Flask example: the host's own request-path checks, and entitlements.web mounted
beside them through the WSGI adapter (Flask's test client, no server)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("flask", reason="flask is not installed")
pytest.importorskip("starlette", reason="the web extra is not installed")
pytest.importorskip("a2wsgi", reason="the web extra is not installed")
sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))

import webapp

from entitlements.domain.contracts.contract import SignerSpec


@pytest.fixture
def ents():
    made = webapp.demo()
    yield made
    made.close()


@pytest.fixture
def client(ents):
    return webapp.create_host(ents).test_client()


def test_free_plan_reads_but_may_not_create(client):
    assert client.get("/reports", headers={"X-Organization": "small"}).status_code == 200
    denied = client.post("/reports", headers={"X-Organization": "small"})
    assert denied.status_code == 402
    assert denied.json["reason"] == "action_restricted"


def test_team_plan_creates(client):
    assert client.post("/reports", headers={"X-Organization": "big"}).status_code == 201


def test_unknown_organizations_get_nothing(client):
    denied = client.get("/reports", headers={"X-Organization": "nobody"})
    assert denied.status_code == 402
    assert denied.json["reason"] == "no_subscription"


def test_the_console_is_mounted_under_billing_for_signed_in_staff_only(client):
    assert client.get("/billing/").status_code == 401
    client.get("/login?as=ann")
    owners = client.get("/billing/?q=small")
    assert owners.status_code == 200
    assert 'href="/billing/owner?ref=organization%3Asmall"' in owners.text
    assert 'src="/billing/static/entitlements.js"' in owners.text
    assert client.get("/billing/static/entitlements.js").status_code == 200
    page = client.get("/billing/owner?ref=organization:small")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    changed = client.post(
        "/billing/owner/change-seats",
        data={"csrf_token": token, "owner": "organization:small", "seats": "4", "reason": "grew"},
        follow_redirects=True,
    )
    assert 'id="sub-seats">4<' in changed.text


def test_the_signing_page_is_mounted_too(ents, client):
    trial = webapp.Owner("organization", "trial")
    staff = webapp.Actor("ann", "staff", {"subscriptions.manage"})
    ents.subscriptions.start_trial(trial, "team", actor=staff)
    contract = ents.contracts.issue(
        trial,
        title="Team plan agreement",
        body="Twelve months of Team.",
        signers=[SignerSpec("Ada Lovelace", "ada@trial.test")],
        plan_key="team",
        actor=staff,
    )
    token = ents.contracts.send(trial, contract.id, actor=staff)["s1"]
    page = client.get(
        f"/billing/sign/{token}", headers={"User-Agent": "Browser/1"}, follow_redirects=True
    )
    assert page.status_code == 200
    visit = page.request.path
    assert visit.startswith("/billing/sign/v/"), "the token left the URL"
    assert f'action="{visit}/consent"' in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    client.post(f"{visit}/consent", data={"csrf_token": csrf, "agree": "yes"})
    signed = client.post(
        f"{visit}/sign",
        data={"csrf_token": csrf, "method": "typed", "typed_name": "Ada Lovelace"},
        follow_redirects=True,
    )
    assert "You have signed" in signed.text
    assert ents.contracts.get(trial, contract.id).status.value == "completed"
