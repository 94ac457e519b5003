"""Assertions on what a response did to the session, read from its Set-Cookie headers
with the app's cookie names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..cookies import CookieNames, parse_cookie_header
from .apps import find_store

__all__ = [
    "SetCookie",
    "assert_refreshed",
    "assert_session_kept",
    "assert_signed_in",
    "assert_signed_out",
    "auth_cookies",
]


@dataclass(frozen=True, slots=True)
class SetCookie:
    """One auth cookie a response sets (or deletes)."""

    value: str
    max_age: int | None
    attributes: dict[str, str | bool]

    @property
    def deleted(self) -> bool:
        return self.value == "" or (self.max_age is not None and self.max_age <= 0)


def _names(app: Any, auth_name: str) -> CookieNames:
    return find_store(app).names if app is not None else CookieNames.from_prefix(auth_name)


def auth_cookies(
    response: Any, app: Any = None, *, auth_name: str = "_auth"
) -> dict[str, SetCookie]:
    """The auth cookies ``response`` (an httpx or TestClient response) sets or deletes, by
    name. The names are ``app``'s (an app, a client or a store) or, without it, those of
    ``auth_name``."""
    wanted = set(_names(app, auth_name).all())
    found: dict[str, SetCookie] = {}
    for header in response.headers.get_list("set-cookie"):
        pair, *parts = header.split(";")
        name, _, value = pair.strip().partition("=")
        if name not in wanted:
            continue
        attributes: dict[str, str | bool] = {}
        for part in parts:
            key, sep, attr = part.strip().partition("=")
            attributes[key.lower()] = attr if sep else True
        raw_age = attributes.get("max-age")
        max_age = int(raw_age) if isinstance(raw_age, str) else None
        found[name] = SetCookie(value, max_age, attributes)
    return found


def _sent(response: Any, names: CookieNames) -> dict[str, str]:
    """The auth cookies the request behind ``response`` carried."""
    request = getattr(response, "request", None)
    header = request.headers.get("cookie", "") if request is not None else ""
    return dict(parse_cookie_header(header.encode("latin-1"), names.wanted))


def _fail(what: str, response: Any, cookies: dict[str, SetCookie]) -> AssertionError:
    shown = {
        name: "deleted" if cookie.deleted else "set" for name, cookie in cookies.items()
    } or "no auth cookie"
    return AssertionError(f"{what} (status {response.status_code}; Set-Cookie: {shown})")


def assert_signed_out(response: Any, app: Any = None, *, auth_name: str = "_auth") -> None:
    """Assert that ``response`` deleted every auth cookie (a sign-out, a session that
    ended: revoked, reused, refused by the refresh callback)."""
    names = _names(app, auth_name)
    cookies = auth_cookies(response, app, auth_name=auth_name)
    if not all(name in cookies and cookies[name].deleted for name in names.all()):
        raise _fail("the response did not delete every auth cookie", response, cookies)


def assert_signed_in(response: Any, app: Any = None, *, auth_name: str = "_auth") -> dict[str, str]:
    """Assert that ``response`` started a new session (a sign-in): the access, type, state
    and CSRF cookies set, none deleted, and a CSRF token other than the one the request
    carried (a new state id). Returns the values set, by cookie name."""
    names = _names(app, auth_name)
    cookies = auth_cookies(response, app, auth_name=auth_name)
    needed = (names.access, names.type, names.state, names.csrf)
    if not all(name in cookies for name in needed) or any(c.deleted for c in cookies.values()):
        raise _fail("the response did not sign a session in", response, cookies)
    if _sent(response, names).get(names.csrf) == cookies[names.csrf].value:
        raise _fail("the response kept the session it had (a refresh?)", response, cookies)
    return {name: cookie.value for name, cookie in cookies.items()}


def assert_refreshed(response: Any, app: Any = None, *, auth_name: str = "_auth") -> dict[str, str]:
    """Assert that ``response`` refreshed the session its request carried: a new access
    token set, nothing deleted, and the same session (its CSRF token unchanged). Returns
    the values set, by cookie name."""
    names = _names(app, auth_name)
    cookies = auth_cookies(response, app, auth_name=auth_name)
    sent = _sent(response, names)
    access = cookies.get(names.access)
    if access is None or any(c.deleted for c in cookies.values()):
        raise _fail("the response did not refresh the access token", response, cookies)
    if access.value == sent.get(names.access):
        raise _fail("the response set the access token it was sent", response, cookies)
    if names.refresh not in sent:
        raise _fail("the request carried no refresh cookie to refresh with", response, cookies)
    csrf = cookies.get(names.csrf)
    if csrf is not None and names.csrf in sent and csrf.value != sent[names.csrf]:
        raise _fail("the response started another session (a sign-in?)", response, cookies)
    return {name: cookie.value for name, cookie in cookies.items()}


def assert_session_kept(response: Any, app: Any = None, *, auth_name: str = "_auth") -> None:
    """Assert that ``response`` neither set nor deleted any auth cookie (no refresh, no
    sign-in, no sign-out: a transient failure keeps the session as it was)."""
    cookies = auth_cookies(response, app, auth_name=auth_name)
    if cookies:
        raise _fail("the response changed the session's cookies", response, cookies)
