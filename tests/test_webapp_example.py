"""The web example's request-path checks, through Flask's test client."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("flask", reason="the web extra is not installed")
sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))

import webapp


@pytest.fixture
def client():
    return webapp.create_app(webapp.demo()).test_client()


def test_free_plan_reads_but_may_not_create(client):
    assert client.get("/reports", headers={"X-Organization": "small"}).status_code == 200
    denied = client.post("/reports", headers={"X-Organization": "small"})
    assert denied.status_code == 402
    assert denied.json["reason"] == "action_restricted"


def test_team_plan_creates_and_has_no_project_limit(client):
    assert client.post("/reports", headers={"X-Organization": "big"}).status_code == 201
    assert (
        client.get("/limits/projects", headers={"X-Organization": "big"}).json["limit"]
        == "unlimited"
    )


def test_unknown_organizations_get_nothing(client):
    denied = client.get("/reports", headers={"X-Organization": "nobody"})
    assert denied.status_code == 402
    assert denied.json["reason"] == "no_subscription"


def test_the_public_signing_page_takes_a_signature():
    ents = webapp.demo()
    token = webapp.demo_contract(ents)
    client = webapp.create_app(ents).test_client()
    page = client.get(f"/sign/{token}", headers={"User-Agent": "Browser/1"})
    assert page.status_code == 200
    assert "The customer subscribes to Team" in page.text
    assert "I agree" in page.text
    consented = client.post(f"/sign/{token}/consent")
    assert "Type your full name" in consented.text
    signed = client.post(f"/sign/{token}/sign", data={"typed_name": "Ada Lovelace"})
    assert signed.text == "Signed. The contract is completed."
    assert client.get(f"/sign/{token}").status_code == 404, "a used link opens nothing"
    owner = webapp.Owner("organization", "trial")
    contract = ents.contracts.list(owner)[0]
    assert ents.contracts.verify(owner, contract.id).ok
    assert ents.contracts.convert(owner, contract.id, actor="staff").status.value == "active"


def test_a_forged_link_is_a_404(client):
    assert client.get("/sign/" + "x" * 43).status_code == 404
