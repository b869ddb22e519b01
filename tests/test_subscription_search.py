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


def _all_pages(ents: Entitlements, text: str, tenant: str | None) -> list[Owner]:
    found: list[Owner] = []
    cursor = None
    for _ in range(1000):
        page = ents.subscriptions.search(text, tenant=tenant, limit=3, cursor=cursor)
        found += [s.owner for s in page]
        cursor = page.next
        if cursor is None:
            return found
    raise AssertionError("the pages never ended")


def _populate(ents: Entitlements, rng, alphabet: str, externals: str) -> list[Owner]:
    def word(chars: str, low: int, high: int) -> str:
        return "".join(rng.choice(chars) for _ in range(rng.randint(low, high)))

    owners = []
    for n in range(24):
        owner = Owner("organization", f"{word(alphabet, 0, 6)}{n}", rng.choice([None, "tb"]))
        owners.append(owner)
        ents.subscriptions.subscribe(owner, rng.choice(["free", "team"]), actor="staff")
        if rng.random() < 0.6:
            ents.subscriptions.amend(owner, external_id=word(externals, 3, 9), actor="staff")
        if rng.random() < 0.3:
            ents.subscriptions.cancel(owner, actor="staff")
            ents.subscriptions.subscribe(owner, rng.choice(["free", "team"]), actor="staff")
        if rng.random() < 0.3:
            ents.subscriptions.amend(owner, external_id=word(externals, 3, 9), actor="staff")
    return owners


def _needles(ents: Entitlements, owners: list[Owner], rng, alphabet: str) -> list[str]:
    values = ["free", "team"]
    for owner in owners:
        current = ents.subscriptions.get(owner)
        values += [owner.id, current.external_id or ""]
    found = []
    for _ in range(40):
        value = rng.choice(values)
        if len(value) >= 3 and rng.random() < 0.8:
            start = rng.randrange(len(value) - 2)
            piece = value[start : rng.randint(start + 3, len(value))]
        else:
            piece = "".join(rng.choice(alphabet) for _ in range(rng.randint(3, 5)))
        found.append("".join(c.upper() if rng.random() < 0.3 else c for c in piece))
    return found


@pytest.mark.parametrize("weighed", ["as shipped", "tiny", "two windows"])
def test_property_a_text_search_of_three_ascii_characters_finds_exactly_the_holders(
    ents, weighed, monkeypatch
):
    """Every page of a search of three or more characters, together, holds exactly the
    owners whose latest subscription's owner id, external id or plan key holds the text,
    whatever the case: the trigram postings miss none and keep none extra. With tiny
    bounds, common trigrams are read through the windowed path a large tenant takes;
    with two windows, a page is read from a first window of a few candidates and then
    the rest (as SQLite and MariaDB read it; here every engine does)."""
    import random

    from entitlements.adapters.sql import subscriptions as sql_subscriptions

    if weighed == "tiny":
        monkeypatch.setattr(sql_subscriptions, "_WEIGHED", 2)
        monkeypatch.setattr(sql_subscriptions, "SEARCHED", 3)
    if weighed == "two windows":
        monkeypatch.setattr(sql_subscriptions, "_WEIGHED", 2)
        monkeypatch.setattr(sql_subscriptions, "SEARCHED", 7)
        monkeypatch.setattr(sql_subscriptions, "_FIRST_WINDOW", 1)
        monkeypatch.setattr(sql_subscriptions.SqlSubscriptions, "_walks_lazily", lambda s: False)

    rng = random.Random(28)
    alphabet = "abXY_%-.19"
    owners = _populate(ents, rng, alphabet, alphabet)
    for needle in _needles(ents, owners, rng, alphabet):
        for tenant in (None, "tb"):
            expected = set()
            for owner in owners:
                current = ents.subscriptions.get(owner)
                held = (owner.id, current.external_id or "", current.plan_key)
                if owner.tenant == tenant and any(needle.lower() in v.lower() for v in held):
                    expected.add(owner)
            found = _all_pages(ents, needle, tenant)
            assert len(found) == len(set(found)), needle
            assert set(found) == expected, needle


@pytest.mark.parametrize("kind", [k for k in STORE_KINDS if k != "memory"])
def test_the_postings_find_what_the_scan_finds_in_any_text(kind, make_store, monkeypatch):
    """External ids in any script: the postings (each value lowered as Python, SQLite and
    without accents) find the same owners as each engine's own ``lower() LIKE`` scan."""
    import random

    from entitlements.adapters.sql import subscriptions as sql_subscriptions

    made = Entitlements(make_store(kind), max_staleness=0)
    for key in ("free", "team"):
        made.plans.define(
            Plan(key, key.title(), limits={"projects": Limit(3)}, status="active"), actor="staff"
        )
    rng = random.Random(19)
    alphabet = "abkE_1"
    kelvin, dotted, dotless = "\u212a", "\u0130", "\u0131"
    owners = _populate(made, rng, alphabet, f"aeAEéÉßsK{kelvin}{dotted}i{dotless}çC_1")
    needles = [*_needles(made, owners, rng, alphabet), "cafe", "KAF", "ss1", "ies", "ÉÉÉ"]
    with_postings = {n: set(_all_pages(made, n, None)) for n in needles}
    monkeypatch.setattr(sql_subscriptions, "needle_grams", lambda needle: None)
    for needle in needles:
        assert set(_all_pages(made, needle, None)) == with_postings[needle], needle
    made.close()
