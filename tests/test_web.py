"""The console and the signing pages over HTTP (Starlette's test client), on every store
the pages are served from. The browser tests (test_web_browser.py) repeat the main flow in
Chromium; these pin the rules: refusals, CSRF, headers, repeat-safety, link pages."""

from __future__ import annotations

import base64
import html
import re
import struct
import zlib
from datetime import timedelta

import attrs
import pytest

pytest.importorskip("starlette", reason="the web extra is not installed")
pytest.importorskip("httpx2", reason="the test extra (httpx2) is not installed")

from starlette.testclient import TestClient

from entitlements import Actor, Delivery, Entitlements, ManualClock, Owner
from entitlements.web import BadTokenLimiter
from web_host import make_ents, make_host

KINDS = ["memory", "sqlite", "postgres"]
ACME = Owner("organization", "acme")
STAFF = Actor("ann", "staff", {"subscriptions.manage"})


def csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def heading(html: str) -> str:
    return re.search(r"<h1>([^<]+)</h1>", html).group(1).strip()


def alerts(html: str) -> list[str]:
    return re.findall(r'role="alert"[^>]*>([^<]+)<', html)


def staff_client(ents: Entitlements, **kw) -> TestClient:
    client = TestClient(make_host(ents, **kw), follow_redirects=True)
    client.get("/login?as=ann")
    return client


def signer_client(ents: Entitlements, **kw) -> TestClient:
    return TestClient(
        make_host(ents, **kw), follow_redirects=True, headers={"User-Agent": "Browser/1"}
    )


def issue(ents: Entitlements, signers: int = 2) -> list[str]:
    """A trial and a sent contract, through the library; returns the signing paths."""
    if ents.subscriptions.find(ACME) is None:
        ents.subscriptions.start_trial(ACME, "team", actor=STAFF, seats=3)
    from entitlements.domain.contracts.contract import SignerSpec

    contract = ents.contracts.issue(
        ACME,
        title="Team agreement",
        body="The customer subscribes to Team for 12 months.",
        signers=[SignerSpec(f"Signer {n}", f"s{n}@acme.test") for n in range(1, signers + 1)],
        plan_key="team",
        actor=STAFF,
    )
    tokens = ents.contracts.send(ACME, contract.id, actor=STAFF)
    return [f"/billing/sign/{tokens[s]}" for s in sorted(tokens)]


def opened(client: TestClient, link: str):
    """Open an e-mailed link: the visit page's path (the token is gone from it), and the
    token of its forms."""
    page = client.get(link)
    assert page.status_code == 200, page.text
    assert page.url.path.startswith("/billing/sign/v/")
    return page.url.path, csrf(page.text)


def sign_typed(client: TestClient, path: str, name: str = "Ada Lovelace") -> str:
    path, token = opened(client, path)
    client.post(path + "/consent", data={"csrf_token": token, "agree": "yes"})
    return client.post(
        path + "/sign", data={"csrf_token": token, "method": "typed", "typed_name": name}
    ).text


def png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    raw = b"\x00\x00\x00\x00\x00"
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw[:4]))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(params=KINDS)
def ents(request, make_store):
    made = make_ents(make_store(request.param))
    yield made
    made.close()


# -- the console ------------------------------------------------------------------------


def test_the_console_refuses_requests_without_an_actor(ents):
    client = TestClient(make_host(ents))
    for path in ("/billing/", "/billing/owner?ref=organization:acme", "/billing/plans"):
        refused = client.get(path)
        assert refused.status_code == 401
        assert heading(refused.text) == "Sign in required"
    posted = client.post(
        "/billing/owner/start-trial", data={"owner": "organization:acme", "plan": "team"}
    )
    assert posted.status_code == 401
    assert ents.subscriptions.find(ACME) is None


def test_a_form_without_the_csrf_token_changes_nothing(ents):
    ents.subscriptions.start_trial(ACME, "team", actor=STAFF)
    client = staff_client(ents)
    token = csrf(client.get("/billing/owner?ref=organization:acme").text)
    forged = client.post(
        "/billing/owner/suspend", data={"owner": "organization:acme", "reason": "x"}
    )
    assert forged.status_code == 403
    client.get("/login?as=eve")
    eves = csrf(client.get("/billing/owner?ref=organization:acme").text)
    client.get("/login?as=ann")
    assert eves != token
    assert (
        client.post(
            "/billing/owner/suspend", data={"owner": "organization:acme", "csrf_token": eves}
        ).status_code
        == 403
    ), "a token made for another actor"
    cross_site = client.post(
        "/billing/owner/suspend",
        data={"owner": "organization:acme", "csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert cross_site.status_code == 403
    assert ents.subscriptions.get(ACME).status.value == "trialing"
    done = client.post(
        "/billing/owner/suspend", data={"owner": "organization:acme", "csrf_token": token}
    )
    assert done.status_code == 200
    assert ents.subscriptions.get(ACME).status.value == "suspended"


def test_staff_start_a_trial_issue_a_contract_and_convert(ents):
    client = staff_client(ents)
    page = client.get("/billing/owner?ref=organization:acme")
    token = csrf(page.text)
    started = client.post(
        "/billing/owner/start-trial",
        data={
            "csrf_token": token,
            "owner": "organization:acme",
            "plan": "team",
            "seats": "3",
            "reason": "sales call",
        },
    )
    assert 'id="sub-status">trialing<' in started.text
    issued = client.post(
        "/billing/owner/issue-contract",
        data={
            "csrf_token": token,
            "owner": "organization:acme",
            "title": "Team agreement",
            "body": "Twelve months of Team.",
            "plan": "team",
            "signer_name_1": "Ada Lovelace",
            "signer_email_1": "ada@acme.test",
            "signer_name_2": "Grace Hopper",
            "signer_email_2": "grace@acme.test",
            "seats": "3",
        },
    )
    links = re.findall(
        r'class="link" readonly value="http://testserver(/billing/sign/[^"]+)"', issued.text
    )
    assert len(links) == 2
    assert "will not show them again" in issued.text
    again = client.get("/billing/owner?ref=organization:acme").text
    assert all(link.rsplit("/", 1)[1] not in again for link in links), "links are shown once"
    for n, link in enumerate(links):
        assert heading(sign_typed(signer_client(ents), link, f"Signer {n}")) == "You have signed"
    contract = ents.contracts.list(ACME)[0]
    assert contract.status.value == "completed"
    converted = client.post(
        "/billing/owner/convert",
        data={
            "csrf_token": token,
            "owner": "organization:acme",
            "contract": contract.id,
            "seats": "3",
        },
    )
    assert 'id="sub-status">active<' in converted.text
    assert 'id="sub-seats">3<' in converted.text
    audit = [a.action for a in ents.audit.for_owner(ACME)]
    assert "contract.convert" in audit
    assert any(
        a.actor == "staff:ann" and a.reason == "sales call" for a in ents.audit.for_owner(ACME)
    )


def test_the_owner_list_filters_by_status_and_text(ents):
    ents.subscriptions.start_trial(ACME, "team", actor=STAFF)
    ents.subscriptions.start_trial(Owner("organization", "globex"), "starter", actor=STAFF)
    ents.subscriptions.suspend(Owner("organization", "globex"), actor=STAFF)
    client = staff_client(ents)
    suspended = client.get("/billing/?status=suspended").text
    assert "organization:globex" in suspended
    assert "organization:acme" not in suspended
    by_text = client.get("/billing/?q=ACM").text
    assert "organization:acme" in by_text
    assert "organization:globex" not in by_text
    assert client.get("/billing/?status=nonsense").status_code == 400


def test_a_plan_change_shows_the_over_quota_preview_before_it_applies(ents):
    ents.subscriptions.start_trial(ACME, "team", actor=STAFF)
    ents.usage.set_gauge(ACME, "projects", 7)
    client = staff_client(ents)
    token = csrf(client.get("/billing/owner?ref=organization:acme").text)
    preview = client.get("/billing/owner/preview?ref=organization:acme&plan=starter")
    assert preview.status_code == 200
    assert "projects: 7 in use, the new limit is 3" in preview.text
    assert ents.subscriptions.get(ACME).plan_key == "team", "a preview changes nothing"
    refused = client.post(
        "/billing/owner/change-plan",
        data={"csrf_token": token, "owner": "organization:acme", "plan": "starter"},
    )
    assert refused.status_code == 409
    assert alerts(refused.text), "the library's refusal is shown on the form"
    applied = client.post(
        "/billing/owner/change-plan",
        data={
            "csrf_token": token,
            "owner": "organization:acme",
            "plan": "starter",
            "allow_over_quota": "on",
        },
    )
    assert "Now over quota: projects (7 used, limit 3)" in applied.text
    assert ents.subscriptions.get(ACME).plan_key == "starter"


def test_library_errors_are_shown_on_the_form(ents):
    ents.subscriptions.start_trial(ACME, "team", actor=STAFF)
    client = staff_client(ents)
    token = csrf(client.get("/billing/owner?ref=organization:acme").text)
    seats = client.post(
        "/billing/owner/change-seats",
        data={"csrf_token": token, "owner": "organization:acme", "seats": "many"},
    )
    assert seats.status_code == 400
    assert 'id="error-change-seats">seats: must be a whole number' in seats.text
    override = client.post(
        "/billing/owner/set-override",
        data={
            "csrf_token": token,
            "owner": "organization:acme",
            "kind": "feature",
            "key": "sso",
            "reason": " ",
        },
    )
    assert override.status_code == 400
    assert "an override needs a reason" in override.text.replace("&#39;", "'")
    unknown = client.get("/billing/owner?ref=not-an-owner")
    assert unknown.status_code == 400


def test_overrides_set_and_remove_with_a_reason(ents):
    ents.subscriptions.start_trial(ACME, "starter", actor=STAFF)
    client = staff_client(ents)
    token = csrf(client.get("/billing/owner?ref=organization:acme").text)
    client.post(
        "/billing/owner/set-override",
        data={
            "csrf_token": token,
            "owner": "organization:acme",
            "kind": "limit",
            "key": "projects",
            "value": "9",
            "reason": "pilot",
        },
    )
    assert ents.limit(ACME, "projects") == 9
    client.post(
        "/billing/owner/remove-override",
        data={
            "csrf_token": token,
            "owner": "organization:acme",
            "kind": "limit",
            "key": "projects",
            "reason": "pilot over",
        },
    )
    assert ents.limit(ACME, "projects") == 3


def test_the_plan_catalog_counts_owners_per_version(ents):
    ents.subscriptions.start_trial(ACME, "team", actor=STAFF)
    page = staff_client(ents).get("/billing/plans")
    assert page.status_code == 200
    row = re.search(
        r"<tr><td>v1</td>\s*<td>projects: 50, seats: 10</td>.*?<td>(\d+)</td></tr>", page.text, re.S
    )
    assert row
    assert row.group(1) == "1"


# -- the signing page -------------------------------------------------------------------


def test_every_signing_step_is_safe_to_repeat(ents):
    path = issue(ents, signers=1)[0]
    client = signer_client(ents)
    first = client.get(path)
    assert first.status_code == 200
    assert "I agree" in first.text
    path = first.url.path
    assert client.get(path).status_code == 200, "refresh before consenting"
    token = csrf(first.text)
    for _ in range(2):  # double submit of the consent
        consented = client.post(path + "/consent", data={"csrf_token": token, "agree": "yes"})
        assert consented.status_code == 200
        assert 'id="sign-form"' in consented.text
    assert 'id="sign-form"' in client.get(path).text, "refresh after consenting: the sign step"
    for _ in range(2):  # double submit of the signature
        signed = client.post(
            path + "/sign", data={"csrf_token": token, "method": "typed", "typed_name": "Ada"}
        )
        assert signed.status_code == 200
        assert heading(signed.text) == "You have signed"
    assert heading(client.get(path).text) == "You have signed", "coming back after signing"
    late = client.post(path + "/decline", data={"csrf_token": token, "reason": "changed my mind"})
    assert heading(late.text) == "You have signed", "a decline after signing changes nothing"
    assert ents.contracts.list(ACME)[0].status.value == "completed"


def test_decline_is_safe_to_repeat_and_says_so(ents):
    path = issue(ents, signers=1)[0]
    client = signer_client(ents)
    path, token = opened(client, path)
    for _ in range(2):
        declined = client.post(path + "/decline", data={"csrf_token": token, "reason": "price"})
        assert declined.status_code == 200
        assert heading(declined.text) == "You declined"
    assert ents.contracts.list(ACME)[0].status.value == "declined"


def test_a_name_of_only_spaces_and_an_unticked_consent_are_form_errors(ents):
    path = issue(ents, signers=1)[0]
    client = signer_client(ents)
    path, token = opened(client, path)
    unticked = client.post(path + "/consent", data={"csrf_token": token})
    assert unticked.status_code == 400
    assert alerts(unticked.text)
    client.post(path + "/consent", data={"csrf_token": token, "agree": "yes"})
    spaces = client.post(
        path + "/sign", data={"csrf_token": token, "method": "typed", "typed_name": "   "}
    )
    assert spaces.status_code == 400
    assert "must be the signer" in alerts(spaces.text)[0].replace("&#39;", "'")
    empty_drawing = client.post(
        path + "/sign", data={"csrf_token": token, "method": "drawn", "drawing": ""}
    )
    assert empty_drawing.status_code == 400
    garbage = client.post(
        path + "/sign",
        data={"csrf_token": token, "method": "drawn", "drawing": "data:image/png;base64,@@@"},
    )
    assert garbage.status_code == 400
    assert ents.contracts.list(ACME)[0].signers[0].status.value == "consented"


def test_a_drawn_signature_is_stored_with_ip_and_user_agent(ents):
    path = issue(ents, signers=1)[0]
    client = signer_client(ents)
    path, token = opened(client, path)
    client.post(path + "/consent", data={"csrf_token": token, "agree": "yes"})
    image = png()
    data_url = "data:image/png;base64," + base64.b64encode(image).decode()
    signed = client.post(
        path + "/sign", data={"csrf_token": token, "method": "drawn", "drawing": data_url}
    )
    assert heading(signed.text) == "You have signed"
    contract = ents.contracts.list(ACME)[0]
    signed_event = next(
        e for e in ents.contracts.events(ACME, contract.id) if e.type.value == "signed"
    )
    assert signed_event.data["method"] == "drawn"
    assert ents.contracts.drawing(ACME, contract.id, signed_event.data["image_sha256"]) == (
        "image/png",
        image,
    )
    people = {
        v["value"] for v in ents.contracts.evidence(ACME, contract.id)["personal_data"].values()
    }
    assert {"Browser/1", "testclient"} <= people
    assert ents.contracts.verify(ACME, contract.id).ok


def test_a_signing_form_without_the_csrf_token_records_nothing(ents):
    path = issue(ents, signers=1)[0]
    client = signer_client(ents)
    path, _ = opened(client, path)
    forged = client.post(path + "/consent", data={"agree": "yes"})
    assert forged.status_code == 403
    assert ents.contracts.list(ACME)[0].signers[0].status.value == "viewed"


def test_voided_replaced_and_expired_links_say_so_to_the_browser_that_opened_them(make_store):
    clock = ManualClock()
    ents = make_ents(make_store("sqlite"))
    ents.runtime.clock = clock
    ents.runtime.timestamp = lambda: clock.now().timestamp()
    made = []
    for _ in range(3):
        before = {c.id for c in ents.contracts.list(ACME)}
        path = issue(ents, signers=1)[0]
        (contract_id,) = {c.id for c in ents.contracts.list(ACME)} - before
        made.append((contract_id, path))
    (voided_id, voided), (replaced_id, replaced), (_, expired) = made
    client = signer_client(ents)
    for path in (voided, replaced, expired):
        assert client.get(path).status_code == 200
    ents.contracts.void(ACME, voided_id, actor=STAFF, reason="wrong price")
    ents.contracts.resend(ACME, replaced_id, "s1", actor=STAFF)
    assert heading(client.get(voided).text) == "This agreement was withdrawn"
    assert client.get(voided).status_code == 410
    assert heading(client.get(replaced).text) == "This link was replaced"
    clock.advance(timedelta(days=8))
    assert heading(client.get(expired).text) == "This link has expired"
    stranger = signer_client(ents)
    bad = stranger.get("/billing/sign/" + "x" * 43)
    for path in (voided, replaced, expired):
        seen = stranger.get(path)
        assert (seen.status_code, seen.text) == (bad.status_code, bad.text), "nothing is revealed"
    assert bad.status_code == 404
    ents.close()


def test_bad_tokens_are_rate_limited_but_never_lock_out_a_valid_link(ents):
    """One office, one address: a colleague's mistyped links (or a guesser behind the same
    NAT) must not stop anyone else there from opening the link they were sent."""
    good = issue(ents, signers=1)[0]
    app = make_host(ents, limiter=BadTokenLimiter(attempts=3, window=600))
    guesser = TestClient(app, follow_redirects=True)
    for n in range(3):
        assert guesser.get(f"/billing/sign/{'y' * 40}{n}").status_code == 404
    blocked = guesser.get("/billing/sign/" + "z" * 43)
    assert blocked.status_code == 429
    assert blocked.headers["retry-after"] == "600"
    colleague = TestClient(app, follow_redirects=True)  # same address: testclient
    assert colleague.get("/billing/sign/" + "w" * 43).status_code == 429
    path, _token = opened(colleague, good)
    assert "I agree" in colleague.get(path).text
    assert ents.contracts.list(ACME)[0].signers[0].status.value == "viewed"


def test_pages_carry_the_security_headers_and_no_inline_script(ents):
    path = issue(ents, signers=1)[0]
    staff = staff_client(ents)
    pages = [
        staff.get("/billing/"),
        staff.get("/billing/owner?ref=organization:acme"),
        staff.get("/billing/plans"),
        signer_client(ents).get(path),
        signer_client(ents).get("/billing/sign/" + "q" * 43),
    ]
    for page in pages:
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["cache-control"] == "no-store"
        assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), "inline script"
        assert not re.search(r"\son[a-z]+=", page.text), "inline event handler"
    script = staff.get("/billing/static/entitlements.js")
    assert script.status_code == 200
    assert "pointerdown" in script.text


def test_create_app_has_no_open_default(ents):
    from entitlements import InvalidInput
    from entitlements.web import create_app

    with pytest.raises(TypeError):
        create_app(ents, secret_key="x" * 32)  # type: ignore[call-arg]
    with pytest.raises(InvalidInput):
        create_app(ents, authenticator=None, secret_key="x" * 32)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        create_app(ents, authenticator=lambda r: None, secret_key="short")


def test_sequential_signers_wait_their_turn(ents):
    from entitlements.domain.contracts.contract import SignerSpec

    ents.subscriptions.start_trial(ACME, "team", actor=STAFF)
    contract = ents.contracts.issue(
        ACME,
        title="In order",
        body="First the CEO, then the CFO.",
        signers=[
            SignerSpec("Ceo", "ceo@acme.test", order=1),
            SignerSpec("Cfo", "cfo@acme.test", order=2),
        ],
        sequential=True,
        actor=STAFF,
    )
    tokens = ents.contracts.send(ACME, contract.id, actor=STAFF)
    second = signer_client(ents)
    path = f"/billing/sign/{tokens['s2']}"
    path, token = opened(second, path)
    waiting = second.post(path + "/consent", data={"csrf_token": token, "agree": "yes"})
    assert "Earlier signers must sign first" in waiting.text
    early = second.post(
        path + "/sign", data={"csrf_token": token, "method": "typed", "typed_name": "Cfo"}
    )
    assert early.status_code == 200
    assert "Earlier signers must sign first" in early.text
    sign_typed(signer_client(ents), f"/billing/sign/{tokens['s1']}", "Ceo")
    assert 'id="sign-form"' in second.get(path).text
    assert heading(sign_typed(second, path, "Cfo")) == "You have signed"


def test_resend_from_the_console_shows_the_new_link_once_and_retires_the_old(ents):
    old = issue(ents, signers=1)[0]
    signer = signer_client(ents)
    assert signer.get(old).status_code == 200
    client = staff_client(ents)
    token = csrf(client.get("/billing/owner?ref=organization:acme").text)
    contract = ents.contracts.list(ACME)[0]
    resent = client.post(
        "/billing/owner/resend",
        data={
            "csrf_token": token,
            "owner": "organization:acme",
            "contract": contract.id,
            "signer": "s1",
        },
    )
    new = re.findall(
        r'class="link" readonly value="http://testserver(/billing/sign/[^"]+)"', resent.text
    )
    assert len(new) == 1
    assert new[0] != old
    assert heading(signer.get(old).text) == "This link was replaced"
    assert heading(sign_typed(signer, new[0])) == "You have signed"


def test_the_bad_token_limit_forgets_old_failures():
    now = [0.0]
    limiter = BadTokenLimiter(attempts=2, window=60, clock=lambda: now[0])
    limiter.failed("10.0.0.1")
    limiter.failed("10.0.0.1")
    assert limiter.blocked("10.0.0.1")
    assert not limiter.blocked("10.0.0.2")
    now[0] = 61.0
    assert not limiter.blocked("10.0.0.1")


def test_an_issue_form_sent_twice_issues_one_contract_and_shows_working_links(ents):
    ents.subscriptions.start_trial(ACME, "team", actor=STAFF, seats=3)
    client = staff_client(ents)
    page = client.get("/billing/owner?ref=organization:acme").text
    request_key = re.search(r'name="request" value="([^"]+)"', page).group(1)
    form = {
        "csrf_token": csrf(page),
        "owner": "organization:acme",
        "request": request_key,
        "title": "Team agreement",
        "body": "Twelve months of Team.",
        "signer_name_1": "Ada Lovelace",
        "signer_email_1": "ada@acme.test",
    }
    link = r'class="link" readonly value="http://testserver(/billing/sign/[^"]+)"'
    first = re.findall(link, client.post("/billing/owner/issue-contract", data=form).text)
    second = re.findall(link, client.post("/billing/owner/issue-contract", data=form).text)
    assert len(ents.contracts.list(ACME)) == 1, "the double submit issued one contract"
    assert len(first) == len(second) == 1
    signer = signer_client(ents)
    assert heading(signer.get(first[0]).text) == "This signing link does not open anything"
    assert heading(sign_typed(signer, second[0])) == "You have signed", "the links shown work"
    third = client.post("/billing/owner/issue-contract", data=form)
    assert "this form was sent already" in " ".join(alerts(third.text))
    assert len(ents.contracts.list(ACME)) == 1
    fresh = client.get("/billing/owner?ref=organization:acme").text
    assert re.search(r'name="request" value="([^"]+)"', fresh).group(1) != request_key


# -- hardening: who may read, visits, origins ----------------------------------------------

HIDDEN = Owner("organization", "hidden-co")


def hide(ents: Entitlements) -> None:
    """Staff member "ann" may not read HIDDEN (the host's read rule says so)."""
    from entitlements.service.authorization import PermissionRules

    ents.subscriptions.start_trial(HIDDEN, "team", actor=STAFF, seats=7)
    ents.runtime.authorizer = PermissionRules(
        can_read=lambda actor, owner: not (actor.id == "ann" and owner == HIDDEN)
    )


def test_lists_search_counts_and_previews_show_only_owners_the_actor_may_read(ents):
    ents.subscriptions.start_trial(ACME, "starter", actor=STAFF)
    hide(ents)
    client = staff_client(ents)
    listed = client.get("/billing/").text
    assert "acme" in listed
    assert "hidden-co" not in listed, "the owner list"
    assert "hidden-co" not in client.get("/billing/?q=hidden").text, "its search"
    assert "hidden-co" not in client.get("/billing/?status=trialing&q=hidden").text

    def owners_on(plans: str, key: str) -> str:
        section = plans[plans.index(f'id="plan-{key}"') :]
        return re.search(r"<td>v1</td>.*?<td>([^<]*)</td></tr>", section, re.S).group(1)

    plans = client.get("/billing/plans").text
    assert owners_on(plans, "team") == "0", "hidden-co (on team) is not counted"
    assert owners_on(plans, "starter") == "1"
    preview = client.get("/billing/owner/preview?ref=organization:hidden-co&plan=starter")
    assert preview.status_code == 403, "not previewed"
    assert "Seats" not in preview.text
    assert "7" not in alerts(preview.text)
    assert client.get("/billing/owner?ref=organization:hidden-co").status_code == 403
    client.get("/login?as=bob")
    assert "hidden-co" in client.get("/billing/?q=hidden").text, "others still see it"


def test_a_visit_records_viewed_once_however_often_the_page_loads(ents):
    link = issue(ents, signers=1)[0]
    client = signer_client(ents)
    path, _ = opened(client, link)
    for _ in range(5):
        assert client.get(path).status_code == 200
    for _ in range(2):  # the e-mail's link clicked again: the same visit
        assert opened(client, link)[0] == path
    contract = ents.contracts.list(ACME)[0]
    viewed = [e for e in ents.contracts.events(ACME, contract.id) if e.type.value == "viewed"]
    assert len(viewed) == 1
    other_browser = signer_client(ents)
    opened(other_browser, link)
    viewed = [e for e in ents.contracts.events(ACME, contract.id) if e.type.value == "viewed"]
    assert len(viewed) == 2, "a new visit (another browser) is a new view"


def test_recording_viewed_reads_only_the_last_event_of_the_chain(make_store):
    from sqlalchemy import event

    ents = make_ents(make_store("sqlite"))
    link = issue(ents, signers=1)[0]
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        statements.append(" ".join(statement.split()))

    event.listen(ents.runtime.store.engine, "before_cursor_execute", seen)
    ents.contracts.open(link.rsplit("/", 1)[1], ip="10.0.0.1")
    event.remove(ents.runtime.store.engine, "before_cursor_execute", seen)
    chain_reads = [
        s for s in statements if s.startswith("SELECT") and "FROM ent_contract_events" in s
    ]
    assert chain_reads, "the last event is read"
    assert all("LIMIT" in s or "count(" in s for s in chain_reads), chain_reads
    ents.close()


def test_the_token_leaves_the_url_for_a_short_lived_visit_cookie(ents):
    link = issue(ents, signers=1)[0]
    client = signer_client(ents)
    first = client.get(link, follow_redirects=False)
    assert first.status_code == 303
    target = first.headers["location"]
    token = link.rsplit("/", 1)[1]
    assert token not in target
    assert target.startswith("/billing/sign/v/")
    cookie = next(c for c in first.headers.get_list("set-cookie") if c.startswith("ent_visit_"))
    assert token not in cookie.split(";")[0].split("=", 1)[0]
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    max_age = int(re.search(r"Max-Age=(\d+)", cookie).group(1))
    assert 0 < max_age <= 4 * 3600
    page = client.get(target)
    assert token not in page.text, "nor in the page's forms"
    stranger = signer_client(ents)
    assert stranger.get(target).status_code == 410, "the visit URL is nothing without the cookie"


def test_a_post_from_another_site_is_refused_without_touching_open_forms(ents):
    link = issue(ents, signers=1)[0]
    client = signer_client(ents)
    path, token = opened(client, link)
    opened(client, link)  # a second tab
    forged = client.post(
        path + "/consent",
        data={"csrf_token": token, "agree": "yes"},
        headers={"Origin": "https://evil.example"},
    )
    assert forged.status_code == 403
    ok = client.post(path + "/consent", data={"csrf_token": token, "agree": "yes"})
    assert 'id="sign-form"' in ok.text, "the first tab's form still posts"


def test_create_app_needs_a_base_url_or_trusted_hosts(ents):
    from entitlements.errors import InvalidInput
    from entitlements.web import create_app
    from web_host import SECRET, staff

    with pytest.raises(InvalidInput, match="base_url"):
        create_app(ents, authenticator=staff, secret_key=SECRET)
    with pytest.raises(InvalidInput):
        create_app(ents, authenticator=staff, secret_key=SECRET, base_url="billing.example")
    trusted = TestClient(make_host(ents))
    spoofed = trusted.get("/billing/sign/" + "x" * 43, headers={"Host": "evil.example"})
    assert spoofed.status_code == 400, "a Host outside trusted_hosts is refused"


def test_behind_a_tls_proxy_links_origins_and_cookies_follow_the_base_url(ents):
    """The proxy speaks plain HTTP to the app, passes neither scheme nor host, and adds
    X-Forwarded-For; the app still builds https links, accepts the browser's https
    Origin, marks cookies Secure and records the client's address, not the proxy's."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from entitlements.web import create_app, forwarded_for
    from web_host import SECRET, STAFF_COOKIE, staff

    web = create_app(
        ents,
        authenticator=staff,
        secret_key=SECRET,
        base_url="https://billing.example.com/billing",
        client_ip=forwarded_for(1),
    )
    host = Starlette(routes=[Mount("/billing", app=web)])
    proxy = {"Host": "app:8000", "X-Forwarded-For": "6.6.6.6, 203.0.113.9"}
    client = TestClient(host, base_url="http://app:8000", headers=proxy, follow_redirects=True)
    client.cookies.set(STAFF_COOKIE, "ann")
    ents.subscriptions.start_trial(ACME, "team", actor=STAFF, seats=3)
    page = client.get("/billing/owner?ref=organization:acme").text
    issued = client.post(
        "/billing/owner/issue-contract",
        data={
            "owner": "organization:acme",
            "csrf_token": csrf(page),
            "title": "Team",
            "body": "Terms.",
            "signer_name_1": "Ada",
            "signer_email_1": "ada@acme.test",
        },
        headers={"Origin": "https://billing.example.com"},
    )
    assert issued.status_code == 200, issued.text
    (link,) = re.findall(r'class="link" readonly value="([^"]+)"', issued.text)
    assert link.startswith("https://billing.example.com/billing/sign/")
    first = client.get("/billing/sign/" + link.rsplit("/", 1)[1], follow_redirects=False)
    visit_cookie = next(c for c in first.headers.get_list("set-cookie") if "ent_visit_" in c)
    assert "Secure" in visit_cookie
    forged = client.post(
        "/billing/owner/suspend",
        data={"owner": "organization:acme", "csrf_token": csrf(page)},
        headers={"Origin": "http://app:8000"},
    )
    assert forged.status_code == 403, "the origin is the public one, not the proxy's"
    contract = ents.contracts.list(ACME)[0]
    events = ents.contracts.evidence(ACME, contract.id)
    assert "203.0.113.9" in {v["value"] for v in events["personal_data"].values()}


# -- lists, search and queues -------------------------------------------------------------

GLOBEX = Owner("organization", "globex")
INITECH = Owner("organization", "initech", "eu")


def rows(html: str) -> list[str]:
    return re.findall(r'<tr data-owner="([^"]+)"', html)


def customers(ents: Entitlements) -> None:
    """Acme trialing, Globex past due (Team), Initech active in tenant "eu"."""
    ents.subscriptions.start_trial(ACME, "team", actor=STAFF, seats=3)
    ents.subscriptions.subscribe(GLOBEX, "team", actor=STAFF)
    ents.subscriptions.mark_past_due(GLOBEX, actor=STAFF)
    ents.subscriptions.subscribe(INITECH, "starter", actor=STAFF)


def test_owners_are_found_by_id_name_and_email_across_tenants(ents):
    customers(ents)
    client = staff_client(ents)
    everyone = client.get("/billing/").text
    assert sorted(rows(everyone)) == sorted(map(str, (ACME, GLOBEX, INITECH)))
    assert "Acme Inc." in everyone, "the host's name for the owner"
    assert 'href="/admin/customers/acme"' in everyone, "and its own admin page"
    assert rows(client.get("/billing/?q=billing@acme.test").text) == [str(ACME)]
    assert rows(client.get("/billing/?q=globex corp").text) == [str(GLOBEX)]
    assert rows(client.get("/billing/?q=initech").text) == [str(INITECH)], "by id, in tenant eu"
    assert rows(client.get("/billing/?plan=starter").text) == [str(INITECH)]
    assert rows(client.get("/billing/?tenant=eu").text) == [str(INITECH)]
    assert rows(client.get("/billing/?status=past_due").text) == [str(GLOBEX)]
    assert rows(client.get("/billing/?q=finance@&status=trialing").text) == []
    counts = client.get("/billing/").text
    for status, n in (("trialing", 1), ("past_due", 1), ("active", 1)):
        assert f'id="count-{status}">{n}<' in counts


def test_the_owner_list_pages_by_fifty_and_exports_all_of_it(ents):
    for n in range(53):
        ents.subscriptions.start_trial(Owner("organization", f"o{n:02d}"), "team", actor=STAFF)
    client = staff_client(ents)
    first = client.get("/billing/").text
    after = re.search(r'href="/billing/\?after=([^"]+)" rel="next"', first)
    assert after is not None
    second = client.get(f"/billing/?after={html.unescape(after.group(1))}").text
    assert len(rows(first)) == 50
    assert len(rows(second)) == 3
    assert not set(rows(first)) & set(rows(second))
    assert 'rel="next"' in first
    assert 'rel="next"' not in second
    exported = client.get("/billing/?format=csv")
    assert exported.headers["content-type"].startswith("text/csv")
    lines = exported.text.strip().splitlines()
    assert lines[0].startswith("Owner,Name,Email,Tenant,Plan,Status")
    assert [line.split(",")[0] for line in lines[1:]] == rows(first) + rows(second)


def test_csv_cells_that_look_like_formulas_are_defused():
    from entitlements.web.lists import as_csv

    assert as_csv(["a"], [["=HYPERLINK(1)"], ["-1"], ["ok"]]).splitlines() == [
        "a",
        "'=HYPERLINK(1)",
        "'-1",
        "ok",
    ]


def test_the_past_due_queue_suspends_and_settles_in_place(ents):
    clock = ManualClock()
    ents.runtime.clock = clock
    customers(ents)
    late = Owner("organization", "late")
    ents.subscriptions.subscribe(late, "team", actor=STAFF)
    ents.subscriptions.mark_past_due(late, actor=STAFF)
    ents.subscriptions.cancel(late, actor=STAFF, at_period_end=True)
    client = staff_client(ents)
    queue = client.get("/billing/queues/past-due").text
    assert sorted(rows(queue)) == sorted([str(GLOBEX), str(late)])
    clock.advance(timedelta(days=40))  # late's period ended: canceled by time, unswept
    queue = client.get("/billing/queues/past-due").text
    assert rows(queue) == [str(GLOBEX)]
    token = csrf(queue)
    settled = client.post(
        "/billing/owner/settle",
        data={"csrf_token": token, "owner": str(GLOBEX), "back": "past-due"},
    )
    assert settled.url.path == "/billing/queues/past-due", "back to the queue"
    assert "organization:globex: marked settled." in settled.text
    assert rows(settled.text) == []
    assert ents.subscriptions.get(GLOBEX).status.value == "active"
    again = client.post(
        "/billing/owner/settle",
        data={"csrf_token": token, "owner": str(GLOBEX), "back": "past-due"},
    )
    assert again.status_code == 409
    assert heading(again.text) == "Past due"
    assert 'id="page-error"' in again.text, "the error, at the top of the queue"
    assert "settle" in alerts(again.text)[0]


def test_trials_contracts_and_failed_commands_have_their_queues(ents):
    customers(ents)
    issue(ents, signers=2)
    client = staff_client(ents)
    trials = client.get("/billing/queues/trials?days=31").text
    assert rows(trials) == [str(ACME)]
    assert rows(client.get("/billing/queues/trials?days=3").text) == []
    from entitlements.domain.contracts.contract import SignerSpec

    prospect = Owner("organization", "prospect")  # no subscription yet
    offer = ents.contracts.issue(
        prospect,
        title="Offer",
        body="Terms.",
        signers=[SignerSpec("P", "p@prospect.test")],
        actor=STAFF,
        valid_for=timedelta(days=3),
    )
    ents.contracts.send(prospect, offer.id, actor=STAFF)
    waiting = client.get("/billing/queues/signatures").text
    assert rows(waiting) == [str(prospect), str(ACME)], "nearest deadline first"
    assert "Team agreement" in waiting
    assert 'id="empty"' in client.get("/billing/queues/provider").text
    assert client.get("/billing/queues/nothing").status_code == 404


def test_convert_is_not_offered_once_converted(ents):
    path = issue(ents, signers=1)[0]
    sign_typed(signer_client(ents), path)
    client = staff_client(ents)
    page = client.get("/billing/owner?ref=organization:acme").text
    assert "Convert to paid" in page
    client.post(
        "/billing/owner/convert",
        data={
            "csrf_token": csrf(page),
            "owner": "organization:acme",
            "contract": ents.contracts.list(ACME)[0].id,
        },
    )
    assert ents.subscriptions.get(ACME).status.value == "active"
    assert "Convert to paid" not in client.get("/billing/owner?ref=organization:acme").text


def test_an_action_error_shows_at_the_top_of_the_page(ents):
    ents.subscriptions.start_trial(ACME, "team", actor=STAFF)
    client = staff_client(ents)
    page = client.get("/billing/owner?ref=organization:acme").text
    refused = client.post(
        "/billing/owner/change-seats",
        data={"csrf_token": csrf(page), "owner": "organization:acme", "seats": "-1"},
    )
    assert refused.status_code == 400
    top = refused.text.index('id="page-error"')
    assert top < refused.text.index('id="sub-h"'), "above the first section"
    assert 'href="#error-change-seats"' in refused.text


def test_the_sign_in_page_links_to_the_hosts_login(ents):
    refused = TestClient(make_host(ents)).get("/billing/")
    assert refused.status_code == 401
    assert 'id="login-link"' in refused.text
    assert 'href="/login?next=/billing/"' in refused.text


def test_mark_settled_is_offered_only_while_past_due(ents):
    customers(ents)
    client = staff_client(ents)
    page = client.get("/billing/owner?ref=organization:globex").text
    assert 'id="settle-h"' in page
    settled = client.post(
        "/billing/owner/settle",
        data={"csrf_token": csrf(page), "owner": "organization:globex", "reason": "wire came in"},
    )
    assert "marked settled" in settled.text
    assert 'id="settle-h"' not in settled.text
    assert ents.subscriptions.get(GLOBEX).status.value == "active"
    assert 'id="settle-h"' not in client.get("/billing/owner?ref=organization:acme").text


def test_a_mail_scanner_that_keeps_no_cookies_records_no_view(ents):
    link = issue(ents, signers=1)[0]
    scanner = signer_client(ents)
    first = scanner.get(link, follow_redirects=False)
    scanner.cookies.clear()
    assert scanner.get(first.headers["location"]).status_code == 410
    contract = ents.contracts.list(ACME)[0]
    assert [e for e in ents.contracts.events(ACME, contract.id) if e.type.value == "viewed"] == []
    assert contract.signers[0].status.value == "sent"
    opened(signer_client(ents), link)  # the signer's own click still works


def test_the_owner_page_schedules_and_cancels_a_pending_change_and_the_queue_lists_it(ents):
    clock = ManualClock()
    ents.runtime.clock = clock
    ents.subscriptions.subscribe(GLOBEX, "team", actor=STAFF)
    client = staff_client(ents)
    page = client.get("/billing/owner?ref=organization:globex").text
    assert 'id="schedule-h"' in page
    scheduled = client.post(
        "/billing/owner/schedule-change",
        data={
            "csrf_token": csrf(page),
            "owner": str(GLOBEX),
            "plan": "starter",
            "when": "period_end",
            "reason": "downgrade at renewal",
        },
    )
    assert "Scheduled a change to plan starter" in scheduled.text
    assert "downgrade at renewal" in scheduled.text
    assert ents.subscriptions.pending_change(GLOBEX) is not None
    queue = client.get("/billing/queues/later?days=40").text
    assert rows(queue) == [str(GLOBEX)]
    assert rows(client.get("/billing/queues/later?days=1").text) == []
    canceled = client.post(
        "/billing/owner/cancel-pending",
        data={"csrf_token": csrf(queue), "owner": str(GLOBEX), "back": "later"},
    )
    assert canceled.url.path == "/billing/queues/later"
    assert rows(canceled.text) == []
    assert ents.subscriptions.pending_change(GLOBEX) is None
    paused = client.post(
        "/billing/owner/pause",
        data={"csrf_token": csrf(queue), "owner": str(GLOBEX), "reason": "holiday"},
    )
    assert "Subscription paused." in paused.text
    assert 'id="unpause-h"' in paused.text
    assert ents.subscriptions.get(GLOBEX).status.value == "paused"


def test_the_owner_page_shows_notifications_and_staff_retry_a_failed_one(ents):
    setup = Actor("setup", "staff", {"subscriptions.manage"})
    ents.subscriptions.start_trial(ACME, "team", actor=setup)
    ents.subscriptions.convert(ACME, actor=setup)
    (converted,) = ents.notifications.list(ACME)
    with ents.atomic() as uow:  # the host's handler failed every attempt: parked
        uow.notifications.update(
            attrs.evolve(converted, attempts=8, failed_at=converted.created_at, last_error="smtp"),
            None,
        )
    client = staff_client(ents)
    page = client.get("/billing/owner?ref=organization:acme")
    assert "subscription.trial_converted" in page.text
    assert "handler gave up" in page.text
    assert "smtp" in page.text
    retried = client.post(
        "/billing/owner/retry-notification",
        data={
            "csrf_token": csrf(page.text),
            "owner": "organization:acme",
            "notification": converted.id,
        },
    )
    assert "back in line" in retried.text
    assert "handler gave up" not in retried.text
    assert ents.notifications.get(converted.id).delivery is Delivery.PENDING
    refused = client.post(
        "/billing/owner/retry-notification",
        data={"csrf_token": csrf(page.text), "owner": "organization:acme", "notification": "x"},
    )
    assert refused.status_code == 404


# -- plan-version migrations ----------------------------------------------------------------


def test_staff_preview_and_run_a_migration_in_batches_from_the_console(ents):
    for n in range(3):
        ents.subscriptions.subscribe(Owner("organization", f"m{n}"), "team", actor=STAFF)
    ents.plans.revise("team", actor=STAFF, features={"reports": True, "sso": True, "api": True})
    migration = ents.migrations.create("team", actor=STAFF, reason="api for everyone")
    client = staff_client(ents)
    listed = client.get("/billing/migrations")
    assert listed.status_code == 200
    assert migration.id[:12] in listed.text
    page = client.get(f"/billing/migrations/{migration.id}")
    assert "moved 3" in page.text  # the preview's totals
    assert "+api" in page.text
    forged = client.post(f"/billing/migrations/{migration.id}/run", data={"batch": "2"})
    assert forged.status_code == 403
    ran = client.post(
        f"/billing/migrations/{migration.id}/run",
        data={"batch": "2", "csrf_token": csrf(page.text)},
    )
    assert ran.status_code == 200
    assert "Handled 2 items; 1 pending" in ran.text
    assert ents.migrations.get(migration.id).counts["moved"] == 2
    canceled = client.post(
        f"/billing/migrations/{migration.id}/cancel",
        data={"reason": "enough", "csrf_token": csrf(ran.text)},
    )
    assert "Canceled: 1 pending" in canceled.text
    missing = client.get("/billing/migrations/" + "f" * 32)
    assert missing.status_code == 404


def test_a_migration_of_another_tenant_is_listed_shown_and_run_from_the_console(ents):
    for n in range(2):
        ents.subscriptions.subscribe(Owner("organization", f"e{n}", "eu"), "team", actor=STAFF)
    ents.plans.revise("team", actor=STAFF, features={"reports": True, "sso": True, "api": True})
    migration = ents.migrations.create("team", actor=STAFF, tenant="eu")
    client = staff_client(ents)
    listed = client.get("/billing/migrations")
    assert f"/billing/migrations/{migration.id}?tenant=eu" in listed.text
    page = client.get(f"/billing/migrations/{migration.id}?tenant=eu")
    assert page.status_code == 200
    assert "moved 2" in page.text
    assert client.get(f"/billing/migrations/{migration.id}").status_code == 404
    ran = client.post(
        f"/billing/migrations/{migration.id}/run?tenant=eu",
        data={"batch": "5", "csrf_token": csrf(page.text)},
    )
    assert "Handled 2 items; 0 pending" in ran.text
    assert ents.migrations.get(migration.id, tenant="eu").counts["moved"] == 2


def test_a_migration_at_period_end_is_scheduled_and_taken_back_from_the_console(ents):
    for n in range(2):
        ents.subscriptions.subscribe(Owner("organization", f"p{n}"), "team", actor=STAFF)
    ents.plans.revise("team", actor=STAFF, features={"reports": True, "sso": True, "api": True})
    migration = ents.migrations.create("team", actor=STAFF, at="period_end")
    client = staff_client(ents)
    page = client.get(f"/billing/migrations/{migration.id}")
    assert "moves at each subscriber" in page.text
    assert "scheduled 2" in page.text
    ran = client.post(
        f"/billing/migrations/{migration.id}/run",
        data={"batch": "10", "csrf_token": csrf(page.text)},
    )
    assert "(completed)" in ran.text
    assert "takes back the scheduled moves" in ran.text
    canceled = client.post(
        f"/billing/migrations/{migration.id}/cancel",
        data={"csrf_token": csrf(ran.text)},
    )
    assert "Canceled: 2 pending or scheduled" in canceled.text
    assert ents.subscriptions.pending_change(Owner("organization", "p0")) is None
