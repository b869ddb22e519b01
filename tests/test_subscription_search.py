"""`Subscriptions.search`: each owner's latest subscription, filtered, on every store."""

from __future__ import annotations

import pytest

from conftest import STORE_KINDS
from entitlements import Entitlements, InvalidInput, Limit, Owner, Plan


@pytest.fixture(params=STORE_KINDS)
def ents(request, make_store):
    made = Entitlements(make_store(request.param), max_staleness=0)
    for key in ("free", "team"):
        made.plans.define(
            Plan(key, key.title(), limits={"projects": Limit(3)}, status="active"), actor="staff"
        )
    yield made
    made.close()


def test_search_lists_each_owners_latest_subscription_newest_first(ents):
    acme, globex, initech = (Owner("organization", n) for n in ("acme", "globex", "initech"))
    ents.subscriptions.start_trial(acme, "team", actor="staff")
    ents.subscriptions.subscribe(globex, "free", actor="staff")
    ents.subscriptions.cancel(globex, actor="staff")
    ents.subscriptions.subscribe(globex, "team", actor="staff")
    ents.subscriptions.start_trial(initech, "free", actor="staff")
    ents.subscriptions.suspend(initech, actor="staff")
    ents.subscriptions.start_trial(
        Owner("organization", "other", "tenant-b"), "team", actor="staff"
    )

    everyone = ents.subscriptions.search()
    assert [s.owner for s in everyone] == [initech, globex, acme]
    assert [s.status.value for s in everyone] == ["suspended", "active", "trialing"]
    assert [s.owner for s in ents.subscriptions.search(statuses=["suspended", "trialing"])] == [
        initech,
        acme,
    ]
    assert [s.owner for s in ents.subscriptions.search("GLOB")] == [globex]
    assert [s.owner for s in ents.subscriptions.search("team")] == [globex, acme]
    assert ents.subscriptions.search("%") == []
    assert ents.subscriptions.search("_") == []
    assert len(ents.subscriptions.search(limit=2)) == 2
    assert [s.owner.id for s in ents.subscriptions.search(tenant="tenant-b")] == ["other"]


def test_search_refuses_bad_filters(ents):
    with pytest.raises(InvalidInput):
        ents.subscriptions.search(statuses=["nonsense"])
    with pytest.raises(InvalidInput):
        ents.subscriptions.search(limit=0)
    with pytest.raises(InvalidInput):
        ents.subscriptions.search("x" * 300)


def test_a_text_search_reads_a_bounded_window_per_page_and_its_cursors_find_every_match(
    ents, monkeypatch
):
    monkeypatch.setattr("entitlements.adapters.sql.subscriptions.SEARCHED", 4)
    owners = [Owner("organization", f"o{n:02d}") for n in range(12)]
    for owner in owners:
        ents.subscriptions.subscribe(owner, "free", actor="staff")
    wanted = {owners[1], owners[3], owners[10]}
    for owner in wanted:
        ents.subscriptions.change_plan(owner, "team", actor="staff")
    pages = [ents.subscriptions.search("team", limit=2)]
    while pages[-1].next is not None:
        pages.append(ents.subscriptions.search("team", limit=2, cursor=pages[-1].next))
    found = [s.owner for page in pages for s in page]
    assert sorted(found, key=str) == sorted(wanted, key=str)
    assert len(found) == len(set(found))
    assert all(len(page) <= 2 for page in pages)
