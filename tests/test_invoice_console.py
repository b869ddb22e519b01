"""The console shows an owner's invoices, a printable invoice page, and — in the past-due
queue — owners an unpaid invoice made past due by time alone."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

pytest.importorskip("starlette", reason="the web extra is not installed")
pytest.importorskip("httpx2", reason="the test extra (httpx2) is not installed")

from starlette.testclient import TestClient

from entitlements import (
    Actor,
    Entitlements,
    InvoiceSettings,
    Limit,
    ManualClock,
    Owner,
    Plan,
    Price,
    SeatCharge,
)
from entitlements.service.authorization import PermissionRules
from web_host import make_host

STAFF = Actor("ann", "staff", {"subscriptions.manage"})
ACME = Owner("organization", "acme")
START = datetime(2026, 1, 31, 9, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def ents(request, make_store):
    clock = ManualClock(START)
    made = Entitlements(
        make_store(request.param),
        clock=clock,
        authorizer=PermissionRules(),
        max_staleness=0,
        invoicing=InvoiceSettings(staff_managed=True),
    )
    made.plans.define(
        Plan(
            "team",
            "Team",
            limits={"seats": Limit(3, kind="seats")},
            price=Price("90.00", "EUR"),
            charges=(SeatCharge("20.00", included=3),),
            status="active",
        ),
        actor=STAFF,
    )
    yield made, clock
    made.close()


def test_invoices_on_the_owner_page_a_printable_invoice_and_the_past_due_queue(ents):
    ents, clock = ents
    ents.subscriptions.subscribe(ACME, "team", actor=STAFF, seats=4)
    clock.advance(timedelta(days=28))
    invoice = ents.invoices.finalize(ACME, actor=STAFF)
    client = TestClient(make_host(ents), follow_redirects=True)
    client.get("/login?as=ann")
    page = client.get("/billing/owner?ref=organization:acme").text
    assert invoice.number in page
    assert "110.00 EUR" in page
    link = re.search(r'href="(/billing/invoice\?[^"]+)"', page).group(1).replace("&amp;", "&")
    printed = client.get(link)
    assert printed.status_code == 200
    assert f"Invoice {invoice.number}" in printed.text
    assert invoice.content_hash in printed.text
    assert "Seats beyond 3 included" in printed.text
    other = client.get("/billing/invoice?ref=organization:globex&id=" + invoice.id)
    assert other.status_code == 404
    before = client.get("/billing/queues/past-due").text
    assert re.findall(r'<tr data-owner="([^"]+)"', before) == []
    clock.set(invoice.due_at)  # unpaid at its due date; no sweep runs
    queue = client.get("/billing/queues/past-due").text
    assert re.findall(r'<tr data-owner="([^"]+)"', queue) == [str(ACME)]
    token = re.search(r'name="csrf_token" value="([^"]+)"', printed.text).group(1)
    paid = client.post(
        "/billing/owner/mark-invoice-paid",
        data={"csrf_token": token, "owner": str(ACME), "invoice": invoice.id, "reference": "B7"},
    )
    assert f"invoice {invoice.number} marked paid" in paid.text
    assert ents.invoices.get(invoice.id).payment_reference == "B7"
    assert ents.snapshot(ACME).status.value == "active"
