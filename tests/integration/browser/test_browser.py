"""The example app in a real browser: headless Chromium (Debian's ``chromium`` package)
driven by Playwright against the example app under a real ``uvicorn`` on loopback.

What only a browser can show: the HttpOnly cookies really are invisible to page JavaScript,
the browser itself drops the access cookie at its ``Max-Age`` and the server refreshes from
the refresh cookie alone, the ``Set-Cookie`` headers on a navigation and on a ``fetch``
response really rotate the browser's cookie jar, and the page's own JavaScript sends the
CSRF header. The auth cookies are ``Secure``; Chromium accepts them on ``http://127.0.0.1``
(a potentially trustworthy origin).

And the signed-in page itself, feature by feature: the access token counting down and the
timeline of silent refreshes (old -> new token id) as they happen, the list of sessions
with "revoke" and "sign out everywhere" across three browsers, and the switch that makes
the token endpoint fail: the 503 + Retry-After period, then recovery of the same session.
Each leaves a screenshot in test-artifacts/.

No browser is ever downloaded: ``bash scripts/test`` installs Debian's ``chromium``, and a
missing ``/usr/bin/chromium`` is a failure, not a skip.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Response, expect, sync_playwright

from tests.support.example_server import run_example_app
from tests.support.processes import REPO_ROOT

pytestmark = pytest.mark.realserver

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in a container
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ACCESS_TTL = 2  # seconds; the example app refreshes once the token has expired
SECRET = "browser-test-secret-0123456789abcdef0123"
AUTH_COOKIES = ("_auth", "_auth_type", "_auth_state", "_auth_refresh", "_auth_csrf")
ARTIFACTS = REPO_ROOT / "test-artifacts"
TIMEOUT_MS = 10_000  # every Playwright wait, and every fetch made from the page

# Page-side helpers. Every fetch carries its own timeout: page.evaluate has none.
FETCH_JS = """
async ([method, path, csrf, timeoutMs]) => {
  const headers = csrf === null ? {} : {"X-CSRF-Token": csrf};
  const r = await fetch(path, {method, headers, credentials: "include",
                               signal: AbortSignal.timeout(timeoutMs)});
  return {status: r.status, body: await r.text()};
}
"""
CSRF_JS = """
() => {
  const m = document.cookie.match(/(?:^|; )_auth_csrf=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : null;
}
"""


PHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1"
)
TABLET_UA = (
    "Mozilla/5.0 (Linux; Android 15; Pixel Tablet) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/139.0.0.0 Safari/537.36"
)
VIEWPORT = {"width": 1200, "height": 900}


@contextmanager
def example_site(tmp_path: Path, access_ttl: int) -> Iterator[str]:
    env = {"AUTHKIT_SECRET": SECRET, "AUTHKIT_ACCESS_TTL": str(access_ttl)}
    with run_example_app(tmp_path, env) as base_url:
        yield base_url


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with example_site(tmp_path, ACCESS_TTL) as base_url:
        yield base_url


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: run `bash scripts/test`, which installs Debian's "
            "chromium package (apt-get install chromium); Playwright's own browser "
            "download is not used",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser: Browser, server: str) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=server)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    try:
        yield context
    finally:
        context.close()


def new_context(browser: Browser, server: str, user_agent: str | None = None) -> BrowserContext:
    context = browser.new_context(base_url=server, user_agent=user_agent, viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    return context


def sign_in(context: BrowserContext, server: str, errors: list[str]) -> Page:
    """Sign in through the form, as a person would: the signed-in page (its script errors
    are appended to ``errors``)."""
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/login")
    page.fill("input[name=username]", "demo")
    page.fill("input[name=password]", "demo")
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/")
    expect(page.locator("#user")).to_have_text("Demo User")
    return page


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.unlink(missing_ok=True)
    page.screenshot(path=path, full_page=True)
    assert path.is_file()
    assert path.stat().st_size > 10_000  # a rendered page, not an empty one
    return path


def claims(token: str) -> dict[str, Any]:
    """The payload of a JWT (no verification: the browser's own cookie, read back)."""
    payload = token.split(".")[1]
    parsed: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return parsed


def jar(context: BrowserContext) -> dict[str, Any]:
    """The browser's own cookie jar: name -> cookie."""
    return {cookie["name"]: cookie for cookie in context.cookies()}


def session_id(context: BrowserContext) -> str:
    """The session id (``sid``) of the context's access cookie. The cookie lives only
    ACCESS_TTL seconds and the page renews it on its next fetch, so on a busy machine it
    may be briefly absent: wait for it (bounded); the sid is the same across refreshes."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while (cookie := jar(context).get("_auth")) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"no access cookie in the browser for {TIMEOUT_MS} ms")
        time.sleep(0.1)
    sid: str = claims(cookie["value"])["sid"]
    return sid


def wait_for_the_browser_to_drop_the_access_cookie(context: BrowserContext) -> None:
    """Real time passes: the access cookie's Max-Age is the token's remaining life (its
    ``exp`` is rounded up to a whole second), so it goes within ACCESS_TTL + 1 seconds."""
    deadline = time.monotonic() + ACCESS_TTL + 5
    while "_auth" in jar(context):
        if time.monotonic() > deadline:
            pytest.fail(f"the browser kept the access cookie past {ACCESS_TTL + 5}s")
        time.sleep(0.1)


def page_fetch(page: Page, method: str, path: str, csrf: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(FETCH_JS, [method, path, csrf, TIMEOUT_MS])
    return result


def test_sign_in_refresh_csrf_and_sign_out_in_chromium(
    context: BrowserContext, server: str
) -> None:
    # This test is about the refreshes that navigations and fetch() bring about, so the
    # page's own polling (the countdown, the sessions list, the switch) is held back.
    context.route(re.compile(r".*/api/(token|sessions|token-endpoint)$"), lambda r: r.abort())
    page = context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))

    # Sign in through the form, as a person would.
    page.goto("/login")
    page.fill("input[name=username]", "demo")
    page.fill("input[name=password]", "demo")
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/")
    expect(page.locator("#user")).to_have_text("Demo User")

    # HttpOnly: page JavaScript sees the CSRF cookie and none of the tokens.
    visible = {
        pair.split("=", 1)[0] for pair in page.evaluate("document.cookie").split("; ") if pair
    }
    assert "_auth_csrf" in visible
    assert not visible & {"_auth", "_auth_refresh", "_auth_state", "_auth_type"}, visible
    issued = jar(context)
    assert set(AUTH_COOKIES) <= set(issued), issued
    for name in AUTH_COOKIES:
        assert issued[name]["secure"] is True, name
        assert issued[name]["httpOnly"] is (name != "_auth_csrf"), name
        assert issued[name]["sameSite"] == "Lax", name

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "signed-in.png"
    screenshot.unlink(missing_ok=True)
    page.screenshot(path=screenshot, full_page=True)
    assert screenshot.is_file()
    assert screenshot.stat().st_size > 0

    # Past the access token's lifetime the browser drops the access cookie itself; a reload
    # still lands signed in, refreshed on the server from the refresh cookie.
    wait_for_the_browser_to_drop_the_access_cookie(context)
    assert "_auth_refresh" in jar(context)
    response = page.reload()
    assert response is not None
    assert response.status == 200
    assert page.url == f"{server}/"
    expect(page.locator("#user")).to_have_text("Demo User")
    after_reload = jar(context)
    assert after_reload["_auth"]["value"] != issued["_auth"]["value"]
    assert after_reload["_auth_refresh"]["value"] != issued["_auth_refresh"]["value"]

    # Again, now through fetch() from page JavaScript: the refresh happens on an API call
    # and the browser applies the Set-Cookie headers of the fetch response.
    wait_for_the_browser_to_drop_the_access_cookie(context)
    me = page_fetch(page, "GET", "/api/me")
    assert me["status"] == 200, me
    assert json.loads(me["body"])["user"] == {"username": "demo", "name": "Demo User"}
    after_fetch = jar(context)
    assert after_fetch["_auth"]["value"] not in (
        issued["_auth"]["value"],
        after_reload["_auth"]["value"],
    )
    assert after_fetch["_auth_refresh"]["value"] not in (
        issued["_auth_refresh"]["value"],
        after_reload["_auth_refresh"]["value"],
    )

    # CSRF: an unsafe request from page JavaScript needs the header.
    csrf = page.evaluate(CSRF_JS)
    assert csrf
    ping = page_fetch(page, "POST", "/api/ping", csrf)
    assert ping["status"] == 200, ping
    refused = page_fetch(page, "POST", "/api/ping")
    assert refused["status"] == 403, refused

    # The page's own Sign out button: POST /logout with the header, then off to /login.
    with page.expect_response(lambda r: r.url == f"{server}/logout") as logout_info:
        page.click("#logout")
    logout = logout_info.value
    assert logout.status == 200  # its body is gone: the page navigates away at once
    cleared = {value.split("=", 1)[0] for value in logout.header_values("set-cookie")}
    assert cleared == set(AUTH_COOKIES), cleared
    page.wait_for_url(f"{server}/login")
    left = set(jar(context)) & set(AUTH_COOKIES)
    assert not left, left

    # Signed out: the home page sends the browser to the login form.
    response = page.goto("/")
    assert response is not None
    assert page.url == f"{server}/login"
    redirected_from = response.request.redirected_from
    assert redirected_from is not None
    assert redirected_from.url == f"{server}/"
    redirect = redirected_from.response()
    assert redirect is not None
    assert redirect.status == 303

    assert page_errors == []


# --- the signed-in page, feature by feature ----------------------------------------------------


def timeline(page: Page, kind: str) -> list[dict[str, str]]:
    """The timeline's entries of one kind, newest first: their data attributes."""
    entries: list[dict[str, str]] = page.eval_on_selector_all(
        f"#timeline li.ev-{kind}", "items => items.map(item => ({...item.dataset}))"
    )
    return entries


def wait_for_entries(page: Page, kind: str, count: int, within: float) -> list[dict[str, str]]:
    deadline = time.monotonic() + within
    while len(entries := timeline(page, kind)) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"fewer than {count} {kind!r} entries after {within}s: {entries}")
        time.sleep(0.1)
    return entries


def test_the_countdown_and_the_timeline_of_silent_refreshes(browser: Browser, server: str) -> None:
    context = new_context(browser, server)
    errors: list[str] = []
    page = sign_in(context, server, errors)
    first = claims(jar(context)["_auth"]["value"])
    assert page.locator("#jti").inner_text() == first["jti"]
    assert page.locator("#sid").inner_text() == first["sid"]

    # The countdown runs: whole seconds down to 0.
    seen = set()
    deadline = time.monotonic() + ACCESS_TTL + 1
    while time.monotonic() < deadline:
        seen.add(int(page.locator("#remaining").inner_text()))
        time.sleep(0.1)
    assert len(seen) >= 2, seen
    assert seen <= set(range(ACCESS_TTL + 2)), seen  # exp is rounded up

    # The page only asks GET /api/token; the server refreshes silently on one of those
    # requests, and every new token id shows up as "old -> new".
    refreshes = wait_for_entries(page, "refresh", 3, within=6 * (ACCESS_TTL + 1))
    loaded = timeline(page, "loaded")
    assert [entry["to"] for entry in loaded] == [first["jti"]]
    chain = [first["jti"], *(entry["to"] for entry in reversed(refreshes))]
    assert [entry["from"] for entry in reversed(refreshes)] == chain[:-1]
    assert len(set(chain)) == len(chain)  # a new token each time
    # The newest entry is the token the browser holds (once the page has seen the latest
    # response), in the same session.
    deadline = time.monotonic() + 5
    while (held := jar(context).get("_auth")) is None or (
        claims(held["value"])["jti"] != page.locator("#jti").inner_text()
    ):
        assert time.monotonic() < deadline, "the page does not show the token the browser holds"
        time.sleep(0.05)
    assert claims(held["value"])["sid"] == first["sid"]
    expect(page.locator("#refresh-count")).not_to_have_text("0")
    expect(page.locator("#timeline li.ev-refresh").first).to_contain_text("same session")
    screenshot(page, "timeline.png")
    assert errors == []
    context.close()


def session_rows(page: Page) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = page.eval_on_selector_all(
        "#sessions tr",
        """rows => rows.map(row => ({id: row.dataset.id, current: row.classList.contains("current"),
                                     text: row.innerText}))""",
    )
    return rows


def wait_for_rows(page: Page, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while len(rows := session_rows(page)) != count:
        if time.monotonic() > deadline:
            pytest.fail(f"the sessions list shows {len(rows)} sessions, not {count}: {rows}")
        time.sleep(0.1)
    return rows


def test_the_sessions_list_revoke_and_sign_out_everywhere(browser: Browser, server: str) -> None:
    errors: list[str] = []
    laptop_context = new_context(browser, server)
    phone_context = new_context(browser, server, PHONE_UA)
    tablet_context = new_context(browser, server, TABLET_UA)
    phone = sign_in(phone_context, server, errors)
    tablet = sign_in(tablet_context, server, errors)
    laptop = sign_in(laptop_context, server, errors)
    sid = {
        name: session_id(context)
        for name, context in (
            ("laptop", laptop_context),
            ("phone", phone_context),
            ("tablet", tablet_context),
        )
    }

    # The laptop's page lists all three, its own first and marked as this browser.
    laptop.reload()  # without waiting for the list's next round
    rows = wait_for_rows(laptop, 3)
    assert rows[0]["id"] == sid["laptop"]
    assert [row["current"] for row in rows] == [True, False, False]
    assert "this browser" in rows[0]["text"]
    by_id = {row["id"]: row["text"] for row in rows}
    assert "Safari on iPhone" in by_id[sid["phone"]]
    assert "Chrome on Android" in by_id[sid["tablet"]]
    assert "127.0.0.1" in by_id[sid["phone"]]  # the address uvicorn put in the scope
    screenshot(laptop, "sessions.png")

    # Revoke the phone from the laptop: the row goes, and the phone's page (which asks
    # every second) is signed out and sent to the login form.
    with laptop.expect_response(lambda r: "/api/sessions/" in r.url) as revoked:
        laptop.click(f"#sessions tr[data-id='{sid['phone']}'] button.revoke")
    assert revoked.value.status == 200
    assert revoked.value.request.headers.get("x-csrf-token")  # the page sent the header
    rows = wait_for_rows(laptop, 2)
    assert sid["phone"] not in {row["id"] for row in rows}
    # (expect polls the URL: wait_for_url fails when one of two navigations to /login, the
    # page's own and its poller's, is aborted by the other.)
    expect(phone).to_have_url(f"{server}/login", timeout=15_000)
    assert not set(jar(phone_context)) & set(AUTH_COOKIES)
    # The other two are untouched.
    assert laptop.url == f"{server}/"
    expect(tablet.locator("#user")).to_have_text("Demo User")

    # "Sign out everywhere" from the laptop ends the tablet's session too.
    laptop.click("#logout-everywhere")
    expect(laptop).to_have_url(f"{server}/login", timeout=15_000)
    expect(tablet).to_have_url(f"{server}/login", timeout=15_000)
    assert not set(jar(laptop_context)) & set(AUTH_COOKIES)
    assert not set(jar(tablet_context)) & set(AUTH_COOKIES)
    assert errors == []
    for context in (laptop_context, phone_context, tablet_context):
        context.close()


OUTAGE_TTL = 9  # refreshed in its last 3 s: a failed refresh shows while it is still valid


def test_a_failing_token_endpoint_keeps_you_signed_in(browser: Browser, tmp_path: Path) -> None:
    with example_site(tmp_path, OUTAGE_TTL) as server:
        context = new_context(browser, server)
        errors: list[str] = []
        page = sign_in(context, server, errors)
        before = jar(context)
        session = claims(before["_auth"]["value"])["sid"]

        # Switch the token endpoint to fail (a PUT with the CSRF header).
        page.click("label.switch")
        expect(page.locator("#switch-label")).to_contain_text("Failing")
        # Its refresh fails while the token is still valid: the page keeps working...
        wait_for_entries(page, "failed", 1, within=OUTAGE_TTL + 2)
        expect(page.locator("#timeline li.ev-failed").first).to_contain_text("still valid")
        # ...then it expires, and protected routes answer 503 with Retry-After.
        [unavailable] = wait_for_entries(page, "unavailable", 1, within=OUTAGE_TTL + 2)
        assert unavailable["retry"] == "5"  # create_store's retry_after
        expect(page.locator("#outage-title")).to_have_text("503 with Retry-After: 5")
        expect(page.locator("#status")).to_contain_text("503")
        # Still signed in: nothing cleared, the refresh token not consumed.
        during = jar(context)
        assert during["_auth_refresh"]["value"] == before["_auth_refresh"]["value"]
        assert during["_auth_state"]["value"] == before["_auth_state"]["value"]
        assert page.url == f"{server}/"
        screenshot(page, "outage.png")

        # The endpoint comes back: the next request refreshes the same session.
        page.click("label.switch")
        expect(page.locator("#switch-label")).to_have_text("Working")
        [recovered] = wait_for_entries(page, "recovered", 1, within=12)
        expect(page.locator("#outage")).to_be_hidden()
        expect(page.locator("#status")).to_have_text("valid")
        after = jar(context)
        assert after["_auth_refresh"]["value"] != before["_auth_refresh"]["value"]
        renewed = claims(after["_auth"]["value"])
        assert renewed["sid"] == session
        assert recovered["to"] in {renewed["jti"], *(e["to"] for e in timeline(page, "refresh"))}
        expect(page.locator("#timeline li.ev-recovered")).to_contain_text("same session")
        screenshot(page, "recovered.png")
        assert errors == []
        context.close()


@pytest.mark.parametrize("remember", [True, False], ids=["remembered", "not-remembered"])
def test_remember_me_decides_whether_closing_the_browser_signs_out(
    server: str, tmp_path: Path, remember: bool
) -> None:
    """A real browser closed and opened again, on one profile: Chromium keeps the
    persistent cookies on disk and drops the session cookies, so "Remember me" unticked
    (session cookies, on the refreshed cookies too) signs out, and the default does not."""
    profile = tmp_path / "profile"
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/test`", pytrace=False)
    with sync_playwright() as playwright:

        def open_browser() -> BrowserContext:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_ARGS,
                timeout=30_000,
                base_url=server,
                viewport=VIEWPORT,
            )
            context.set_default_timeout(TIMEOUT_MS)
            context.set_default_navigation_timeout(TIMEOUT_MS)
            return context

        context = open_browser()
        try:
            page = context.new_page()
            page.goto("/login")
            page.fill("input[name=username]", "demo")
            page.fill("input[name=password]", "demo")
            if not remember:
                page.uncheck("input[name=remember][type=checkbox]")
            page.click("button[type=submit]")
            page.wait_for_url(f"{server}/")
            expect(page.locator("#user")).to_have_text("Demo User")
            # A silent refresh first: the refreshed cookies keep the choice made at sign-in.
            first = jar(context)["_auth_refresh"]["value"]
            # The page's own fetches may bring the refresh before the reload does: every
            # response from here on is kept, to read what the browser was told.
            responses: list[Response] = []
            context.on("response", lambda response: responses.append(response))
            time.sleep(ACCESS_TTL + 1.5)  # the token expires (a session cookie stays: no Max-Age)
            page.reload()
            expect(page.locator("#user")).to_have_text("Demo User")
            # The Set-Cookie headers say what the browser was told, before any Max-Age
            # can run out.
            rewritten = {
                header["value"].split("=", 1)[0]: header["value"].lower()
                for response in responses
                for header in response.headers_array()
                if header["name"].lower() == "set-cookie"
            }
            assert {"_auth", "_auth_type", "_auth_refresh"} <= set(rewritten), rewritten
            for name, header in rewritten.items():
                assert ("max-age=" in header) is remember, (name, header)
            cookies = jar(context)
            assert cookies["_auth_refresh"]["value"] != first
            for name in AUTH_COOKIES:
                if name in ("_auth", "_auth_type") and remember and name not in cookies:
                    # The access cookie and its type cookie have the token's remaining life
                    # (ACCESS_TTL) as Max-Age: on a busy machine they may already be gone;
                    # their headers above were checked.
                    continue
                session_only = cookies[name]["expires"] == -1
                assert session_only is not remember, (name, cookies[name])
        finally:
            context.close()  # the browser closes

        context = open_browser()  # and opens again, on the same profile
        try:
            page = context.new_page()
            page.goto("/")
            if remember:
                expect(page.locator("#user")).to_have_text("Demo User")
            else:
                page.wait_for_url(f"{server}/login")
                assert not set(jar(context)) & set(AUTH_COOKIES)
        finally:
            context.close()
