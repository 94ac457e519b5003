"""The example app in a real browser: headless Chromium (Debian's ``chromium`` package)
driven by Playwright against the example app under a real ``uvicorn`` on loopback.

What only a browser can show: the HttpOnly cookies really are invisible to page JavaScript,
the browser itself drops the access cookie at its ``Max-Age`` and the server refreshes from
the refresh cookie alone, the ``Set-Cookie`` headers on a navigation and on a ``fetch``
response really rotate the browser's cookie jar, and the page's own JavaScript sends the
CSRF header. The auth cookies are ``Secure``; Chromium accepts them on ``http://127.0.0.1``
(a potentially trustworthy origin).

No browser is ever downloaded: ``bash scripts/test`` installs Debian's ``chromium``, and a
missing ``/usr/bin/chromium`` is a failure, not a skip.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from servers import REPO_ROOT, run_example_app

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


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    env = {"AUTHKIT_SECRET": SECRET, "AUTHKIT_ACCESS_TTL": str(ACCESS_TTL)}
    with run_example_app(tmp_path, env) as base_url:
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


def jar(context: BrowserContext) -> dict[str, Any]:
    """The browser's own cookie jar: name -> cookie."""
    return {cookie["name"]: cookie for cookie in context.cookies()}


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
