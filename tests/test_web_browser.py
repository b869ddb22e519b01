"""The console and the signing page in a real browser: Playwright driving Chromium against
the host app served by uvicorn, on SQLite and PostgreSQL.

Locally these skip when Playwright or Chromium is missing; ``.ci/run`` installs both, and
CI fails on any skip. Set ``ENTITLEMENTS_WEB_SCREENSHOTS=docs/images`` to refresh the
documentation's screenshots.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

pytest.importorskip("starlette", reason="the web extra is not installed")
pytest.importorskip("uvicorn", reason="uvicorn (test extra) is not installed")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright (test extra) is not installed"
)

import uvicorn  # noqa: E402

from entitlements import Owner  # noqa: E402
from web_host import make_ents, make_host  # noqa: E402

CHROMIUM = os.environ.get("ENTITLEMENTS_CHROMIUM", "/usr/bin/chromium")
ACME = Owner("organization", "acme")
LABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
    .filter(c => c.offsetParent !== null)
    .filter(c => c.labels.length === 0 && !c.getAttribute('aria-label'))
    .map(c => c.name)"""

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason=f"Chromium is not installed at {CHROMIUM} (apt-get install chromium; CI does)",
)


class Served:
    """The host app on a free port, in a thread, for the length of one test."""

    def __init__(self, app) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def shots(tmp_path):
    target = Path(os.environ.get("ENTITLEMENTS_WEB_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> None:
        page.screenshot(path=str(target / f"{name}.png"))

    return take


@pytest.fixture(params=["sqlite", "postgres"])
def served(request, make_store):
    from entitlements import InvoiceSettings

    ents = make_ents(make_store(request.param), invoicing=InvoiceSettings(staff_managed=True))
    with Served(make_host(ents)) as base:
        yield ents, base
    ents.close()


def heading(page) -> str:
    return page.locator("h1").inner_text().strip()


def fits(page, width: int) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "no sideways scroll"


def replay(page, form_selector: str, **extra: str):
    """Post the form's fields again, as a second click or a resent request would, sharing
    the browser's cookies (and bypassing its submit-once script)."""
    fields = page.eval_on_selector(
        form_selector,
        "f => Object.fromEntries([...new FormData(f)].filter(([k, v]) => typeof v === 'string'))",
    )
    action = page.eval_on_selector(form_selector, "f => f.action")
    return page.request.post(action, form={**fields, **extra})


def draw(page, strokes) -> None:
    box = page.locator("canvas[data-pad]").bounding_box()
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x, box["y"] + y)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=6)
        page.mouse.up()


def test_trial_contract_two_signers_typed_and_drawn_then_convert(served, browser, shots):
    ents, base = served
    staff = browser.new_context(viewport={"width": 1280, "height": 900})
    console = staff.new_page()
    console.goto(f"{base}/login?as=ann")
    assert heading(console) == "Owners"
    console.get_by_label("Open owner").fill("organization:acme")
    console.get_by_label("Open owner").press("Enter")
    assert heading(console) == "organization:acme"
    trial = console.locator("form[action$='/owner/start-trial']")
    trial.locator("select[name=plan]").select_option("team")
    trial.get_by_label("Seats (optional)").fill("3")
    trial.get_by_label("Reason (optional)").fill("sales call")
    trial.get_by_role("button", name="Start trial").click()
    assert console.locator("#sub-status").inner_text() == "trialing"
    assert console.evaluate(LABELLED) == []

    issue = console.locator("form[action$='/owner/issue-contract']")
    issue.get_by_label("Title").fill("Team plan agreement")
    issue.get_by_label("Agreement text").fill("Acme subscribes to Team for 12 months, 3 seats.")
    issue.locator("select[name=plan]").select_option("team")
    issue.get_by_label("Seats (optional)").fill("3")
    issue.get_by_label("Name 1").fill("Ada Lovelace")
    issue.get_by_label("Email 1").fill("ada@acme.test")
    issue.get_by_label("Role 1").fill("CEO")
    issue.get_by_label("Name 2").fill("Grace Hopper")
    issue.get_by_label("Email 2").fill("grace@acme.test")
    shots(console, "console-owner-trial")
    issue.get_by_role("button", name="Issue and make signing links").click()
    assert heading(console).startswith("Signing links")
    links = [console.locator(f"#link-s{n}").input_value() for n in (1, 2)]
    assert all(link.startswith(f"{base}/billing/sign/") for link in links)
    shots(console, "console-links")

    # signer 1, on a 375 px phone, with the keyboard only, signs typed
    phone = browser.new_context(viewport={"width": 375, "height": 740}, user_agent="Phone/1")
    first = phone.new_page()
    first.goto(links[0])
    assert heading(first) == "Team plan agreement"
    fits(first, 375)
    assert first.evaluate(LABELLED) == []
    shots(first, "signing-consent")
    first.focus("input[name=agree]")
    first.keyboard.press("Space")
    first.keyboard.press("Tab")
    first.keyboard.press("Enter")
    first.wait_for_selector("#sign-form")
    first.reload()
    assert first.locator("#sign-form").is_visible(), "refresh after consenting"
    first.focus("input[name=typed_name]")
    first.keyboard.type("   ")
    first.keyboard.press("Enter")
    first.wait_for_selector("#signing-error")
    assert "must be the signer" in first.locator("#signing-error").inner_text()
    first.fill("input[name=typed_name]", "")
    first.focus("input[name=typed_name]")
    first.keyboard.type("Ada Lovelace")
    shots(first, "signing-typed")
    first.keyboard.press("Enter")
    first.wait_for_selector("text=You have signed")
    first.reload()
    assert heading(first) == "You have signed", "refresh after signing"
    first.go_back()
    assert heading(first) == "You have signed", "back after signing"
    fits(first, 375)
    shots(first, "signing-done")

    # signer 2, on a desktop, double-clicks every step and draws with the mouse
    desk = browser.new_context(viewport={"width": 1024, "height": 800}, user_agent="Desk/1")
    second = desk.new_page()
    second.goto(links[1])
    second.reload()
    assert second.locator("#consent-form").is_visible(), "refresh before consenting"
    second.get_by_label("I agree").check()
    second.get_by_role("button", name="Continue").dblclick()
    second.wait_for_selector("#sign-form")
    second.go_back()
    second.reload()
    assert second.locator("#sign-form").is_visible(), "back to the consent step shows signing"
    second.get_by_label("Draw my signature").check()
    draw(second, [[(20, 120), (60, 60), (100, 140), (140, 70)]])
    second.get_by_role("button", name="Clear and redo").click()
    draw(second, [[(30, 130), (80, 50), (130, 150), (190, 60), (260, 120)], [(300, 80), (360, 90)]])
    shots(second, "signing-drawn")
    second.get_by_role("button", name="Sign", exact=True).dblclick()
    second.wait_for_selector("text=You have signed")
    assert heading(second) == "You have signed"

    contract = ents.contracts.list(ACME)[0]
    assert contract.status.value == "completed"
    events = ents.contracts.events(ACME, contract.id)
    signed = {e.signer_id: e for e in events if e.type.value == "signed"}
    assert signed["s1"].data["method"] == "typed"
    assert signed["s2"].data["method"] == "drawn"
    image_type, image = ents.contracts.drawing(ACME, contract.id, signed["s2"].data["image_sha256"])
    assert image_type == "image/png"
    assert len(image) > 500, "real strokes, not an empty canvas"
    assert sum(e.type.value == "consented" for e in events) == 2, "one consent each"
    assert sum(e.type.value == "signed" for e in events) == 2, "one signature each"
    people = {
        v["value"] for v in ents.contracts.evidence(ACME, contract.id)["personal_data"].values()
    }
    assert {"Phone/1", "Desk/1", "127.0.0.1"} <= people

    console.goto(f"{base}/billing/owner?ref=organization:acme")
    console.get_by_role("button", name="Convert to paid").click()
    assert console.locator("#sub-status").inner_text() == "active"
    assert console.locator("#sub-seats").inner_text() == "3"
    assert "Converted: team v1, active." in console.locator(".done").inner_text()
    shots(console, "console-owner-active")
    assert ents.subscriptions.get(ACME).seats == 3
    for context in (staff, phone, desk):
        context.close()


def test_double_submits_replayed_by_the_browser_never_fail(served, browser):
    ents, base = served
    from test_web import issue

    path = issue(ents, signers=1)[0]
    context = browser.new_context()
    page = context.new_page()
    page.goto(base + path)
    page.get_by_label("I agree").check()
    first = replay(page, "#consent-form")
    second = replay(page, "#consent-form")
    assert (first.status, second.status) == (200, 200)
    page.reload()
    page.fill("input[name=typed_name]", "Ada Lovelace")
    signed = [replay(page, "#sign-form") for _ in range(2)]
    assert [r.status for r in signed] == [200, 200]
    assert all("You have signed" in r.text() for r in signed)
    declined_late = replay(page, "#decline-form")
    assert declined_late.status == 200
    assert "You have signed" in declined_late.text()
    contract = ents.contracts.list(ACME)[0]
    assert contract.status.value == "completed"
    assert sum(e.type.value == "signed" for e in ents.contracts.events(ACME, contract.id)) == 1
    context.close()


def test_voided_and_bad_links_forged_forms_and_strangers(served, browser, shots):
    ents, base = served
    from test_web import issue

    path = issue(ents, signers=1)[0]
    signer = browser.new_context(viewport={"width": 375, "height": 740})
    page = signer.new_page()
    page.goto(base + path)
    assert heading(page) == "Team agreement"

    staff = browser.new_context(viewport={"width": 1280, "height": 900})
    console = staff.new_page()
    console.goto(f"{base}/login?as=ann")
    shots(console, "console-owners")
    console.goto(f"{base}/billing/owner?ref=organization:acme")
    void = console.locator("form[action$='/owner/void']")
    void.get_by_label("Reason for voiding").fill("wrong price")
    void.get_by_role("button", name="Void").click()
    assert "Contract voided" in console.locator(".done").inner_text()

    page.reload()
    assert heading(page) == "This agreement was withdrawn"
    shots(page, "signing-voided")
    stranger = browser.new_context().new_page()
    answer = stranger.goto(base + path)
    assert answer.status == 404
    assert heading(stranger) == "This signing link does not open anything"
    bad = stranger.goto(base + "/billing/sign/" + "A" * 43)
    assert bad.status == 404
    assert heading(stranger) == "This signing link does not open anything"

    # a forged form: the console's own suspend form, without its CSRF token
    console.evaluate("document.querySelectorAll('input[name=csrf_token]').forEach(i => i.remove())")
    suspend = console.locator("form[action$='/owner/suspend']")
    with console.expect_navigation() as navigation:
        suspend.get_by_role("button", name="Suspend").click()
    assert navigation.value.status == 403
    assert heading(console) == "This form could not be accepted"
    assert ents.subscriptions.get(ACME).status.value == "trialing"

    anonymous = browser.new_context().new_page()
    refused = anonymous.goto(f"{base}/billing/owner?ref=organization:acme")
    assert refused.status == 401
    assert heading(anonymous) == "Sign in required"
    for context in (signer, staff):
        context.close()


def test_the_plan_change_preview_and_the_catalog_at_375px(served, browser, shots):
    ents, base = served
    from test_web import STAFF

    ents.subscriptions.start_trial(ACME, "team", actor=STAFF, seats=3)
    ents.usage.set_gauge(ACME, "projects", 7)
    staff = browser.new_context(viewport={"width": 375, "height": 800})
    page = staff.new_page()
    page.goto(f"{base}/login?as=ann")
    page.goto(f"{base}/billing/owner?ref=organization:acme")
    fits(page, 375)
    page.locator("form[action$='/owner/preview'] select[name=plan]").select_option("starter")
    page.get_by_role("button", name="Preview the change").click()
    assert "projects: 7 in use, the new limit is 3" in page.locator("#over-quota").inner_text()
    fits(page, 375)
    shots(page, "console-preview")
    page.get_by_label("Apply although usage is over the new limits").check()
    page.get_by_role("button", name="Confirm the change").click()
    assert re.search(r"starter v1", page.locator("#sub-plan").inner_text())
    page.goto(f"{base}/billing/plans")
    fits(page, 375)
    shots(page, "console-plans")
    staff.close()


def test_a_finger_draws_on_a_touch_screen(served, browser):
    ents, base = served
    from test_web import issue

    path = issue(ents, signers=1)[0]
    phone = browser.new_context(
        viewport={"width": 375, "height": 740}, has_touch=True, is_mobile=True
    )
    page = phone.new_page()
    page.goto(base + path)
    page.get_by_label("I agree").check()
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Draw my signature").check()
    box = page.locator("canvas[data-pad]").bounding_box()
    cdp = phone.new_cdp_session(page)
    points = [(box["x"] + 20 + 12 * n, box["y"] + 40 + (n % 4) * 25) for n in range(20)]
    touch = lambda kind, pts: cdp.send(  # noqa: E731
        "Input.dispatchTouchEvent",
        {"type": kind, "touchPoints": [{"x": x, "y": y} for x, y in pts]},
    )
    touch("touchStart", points[:1])
    for point in points[1:]:
        touch("touchMove", [point])
    touch("touchEnd", [])
    page.get_by_role("button", name="Sign", exact=True).click()
    page.wait_for_selector("text=You have signed")
    contract = ents.contracts.list(ACME)[0]
    signed = next(e for e in ents.contracts.events(ACME, contract.id) if e.type.value == "signed")
    assert signed.data["method"] == "drawn"
    phone.close()


def from_another_site(page, base: str, target: str) -> None:
    """Follow a link to ``target`` from a page of another site (``localhost`` and
    ``127.0.0.1`` are different sites to the browser)."""
    elsewhere = base.replace("127.0.0.1", "localhost")
    page.goto(f"{elsewhere}/elsewhere?to={quote(target, safe='')}")
    with page.expect_navigation():
        page.click("#go")


def test_arriving_from_another_site_keeps_forms_open_in_other_tabs_working(served, browser):
    ents, base = served
    from test_web import STAFF

    ents.subscriptions.start_trial(ACME, "team", actor=STAFF, seats=3)
    staff = browser.new_context()
    first_tab = staff.new_page()
    first_tab.goto(f"{base}/login?as=ann")
    first_tab.goto(f"{base}/billing/owner?ref=organization:acme")
    second_tab = staff.new_page()
    from_another_site(second_tab, base, f"{base}/billing/owner?ref=organization:acme")
    assert heading(second_tab) == "organization:acme"
    suspend = first_tab.locator("form[action$='/owner/suspend']")
    suspend.get_by_label("Reason (optional)").fill("chargeback")
    with first_tab.expect_navigation() as navigation:
        suspend.get_by_role("button", name="Suspend").click()
    assert navigation.value.status == 200
    assert ents.subscriptions.get(ACME).status.value == "suspended"
    staff.close()


def test_a_signer_who_opens_the_mailed_link_twice_signs_in_the_first_tab(served, browser):
    ents, base = served
    from test_web import issue

    link = base + issue(ents, signers=1)[0]
    signer = browser.new_context()
    first = signer.new_page()
    from_another_site(first, base, link)
    assert heading(first) == "Team agreement"
    token = link.rsplit("/", 1)[1]
    assert token not in first.url, "the token left the address bar"
    second = signer.new_page()
    from_another_site(second, base, link)
    assert second.url == first.url, "the same visit"
    first.get_by_label("I agree").check()
    first.get_by_role("button", name="Continue").click()
    first.wait_for_selector("#sign-form")
    first.fill("input[name=typed_name]", "Signer 1")
    first.get_by_role("button", name="Sign", exact=True).click()
    first.wait_for_selector("text=You have signed")
    contract = ents.contracts.list(ACME)[0]
    assert contract.status.value == "completed"
    events = ents.contracts.events(ACME, contract.id)
    assert sum(e.type.value == "viewed" for e in events) == 1, "one visit, one view"
    signer.close()


def listed(page) -> list[str]:
    return page.eval_on_selector_all("tr[data-owner]", "rows => rows.map(r => r.dataset.owner)")


def test_staff_find_an_owner_by_email_and_export_the_list(served, browser, shots):
    ents, base = served
    from test_web import customers

    customers(ents)
    staff = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = staff.new_page()
    page.goto(f"{base}/login?as=ann")
    assert page.locator("#count-past_due").inner_text() == "1"
    assert sorted(listed(page)) == [
        "eu/organization:initech",
        "organization:acme",
        "organization:globex",
    ]
    shots(page, "console-owners")
    page.get_by_label("Search").fill("billing@acme.test")
    page.get_by_label("Search").press("Enter")
    page.wait_for_url("**q=billing%40acme.test**")
    assert listed(page) == ["organization:acme"]
    assert page.get_by_role("link", name="Acme Inc.").get_attribute("href") == (
        "/admin/customers/acme"
    )
    with page.expect_download() as download:
        page.click("#csv")
    exported = Path(download.value.path()).read_text().strip().splitlines()
    assert exported[0].startswith("Owner,Name,Email")
    assert [line.split(",")[0] for line in exported[1:]] == listed(page)
    page.get_by_role("link", name="organization:acme").click()
    assert heading(page) == "organization:acme"
    assert page.locator("#owner-card").inner_text().startswith("Acme Inc.")
    staff.close()


def test_the_past_due_queue_lists_exactly_the_past_due_and_acts_in_place(served, browser, shots):
    ents, base = served
    from entitlements import ManualClock, Plan, Price
    from test_web import GLOBEX, STAFF, customers

    clock = ManualClock()
    ents.runtime.clock = clock
    customers(ents)
    billed = Plan("billed", "Billed", price=Price("90.00", "EUR"), net_days=1, status="active")
    ents.plans.define(billed, actor=STAFF)
    late, unpaid = Owner("organization", "late"), Owner("organization", "unpaid")
    overdue = Owner("organization", "overdue")
    for owner in (late, unpaid):
        ents.subscriptions.subscribe(owner, "team", actor=STAFF)
        ents.subscriptions.mark_past_due(owner, actor=STAFF)
    ents.subscriptions.subscribe(overdue, "billed", actor=STAFF)
    ents.subscriptions.cancel(late, actor=STAFF, at_period_end=True)
    clock.advance(timedelta(days=40))  # late is canceled by time alone, unswept; the
    # others have been past due beyond their grace, still unswept
    invoice = ents.invoices.finalize(overdue, actor=STAFF)  # its first month, due in a day
    assert ents.subscriptions.get(overdue).status.value == "active"
    clock.set(invoice.due_at)  # unpaid at its due date: past due by time alone, unswept
    staff = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = staff.new_page()
    page.goto(f"{base}/login?as=ann")
    page.get_by_role("link", name="Past due", exact=True).click()
    assert heading(page) == "Past due"
    expected = sorted(
        str(s.owner)
        for s in list(ents.subscriptions.search(statuses=["past_due"], tenant=None))
        + list(ents.subscriptions.search(statuses=["past_due"], tenant="eu"))
    )
    assert sorted(listed(page)) == expected
    assert expected == ["organization:globex", "organization:overdue", "organization:unpaid"]
    with page.expect_download() as download:
        page.click("#csv")
    exported = Path(download.value.path()).read_text().strip().splitlines()
    assert sorted(line.split(",")[0] for line in exported[1:]) == expected
    shots(page, "console-queue-past-due")
    page.set_viewport_size({"width": 375, "height": 800})
    fits(page, 375)
    assert page.evaluate(LABELLED) == []
    page.set_viewport_size({"width": 1280, "height": 900})
    page.get_by_role("button", name="Mark organization:globex settled").click()
    page.wait_for_selector(".done")
    assert "organization:globex: marked settled." in page.locator(".done").inner_text()
    assert sorted(listed(page)) == ["organization:overdue", "organization:unpaid"]
    page.get_by_role("button", name="Suspend organization:unpaid").click()
    page.wait_for_selector(".done")
    assert listed(page) == ["organization:overdue"]
    assert ents.subscriptions.get(GLOBEX).status.value == "active"
    assert ents.subscriptions.get(unpaid).status.value == "suspended"
    ents.invoices.mark_paid(invoice.id, actor=STAFF, reference="bank")
    page.reload()
    assert listed(page) == []
    staff.close()


def test_the_sign_in_page_sends_staff_to_the_hosts_login(served, browser):
    _, base = served
    anonymous = browser.new_context().new_page()
    refused = anonymous.goto(f"{base}/billing/queues/past-due")
    assert refused.status == 401
    anonymous.get_by_role("link", name="Sign in").click()
    anonymous.wait_for_url(f"{base}/billing/")
    assert heading(anonymous) == "Owners", "the host's login signed us in and sent us back"
