"""read_cookies, CookiePolicy and CookieNames: strict reading, exact Set-Cookie values."""

from __future__ import annotations

import pytest

from fastapi_authkit import ConfigurationError
from fastapi_authkit.cookies import COOKIE_MAX_BYTES, CookieNames, CookiePolicy, read_cookies
from fastapi_authkit.errors import CookieError, CookieTooLargeError

NAMES = CookieNames.from_prefix("_auth")
WANTED = NAMES.wanted


def cookie_header(*values: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"cookie", value) for value in values]


def read(*values: bytes) -> dict[str, str]:
    return read_cookies(cookie_header(*values), WANTED)


# --- read_cookies --------------------------------------------------------------------------


def test_single_well_formed_value_is_returned() -> None:
    assert read(b"_auth=eyJhbGciOi.eyJzdWIi.c2ln") == {"_auth": "eyJhbGciOi.eyJzdWIi.c2ln"}


def test_every_auth_cookie_is_read_and_others_are_ignored() -> None:
    header = (
        b"theme=dark; _auth=tok; _auth_type=Bearer; session=xyz; _auth_state=st.ts.sig; "
        b"_auth_refresh=rt; _auth_csrf=cs; _authx=1; x_auth=2; _AUTH=3"
    )
    assert read(header) == {
        "_auth": "tok",
        "_auth_type": "Bearer",
        "_auth_state": "st.ts.sig",
        "_auth_refresh": "rt",
        "_auth_csrf": "cs",
    }


def test_values_are_returned_as_str() -> None:
    (value,) = read(b"_auth=abc").values()
    assert type(value) is str


def test_whitespace_around_names_and_values_is_trimmed() -> None:
    assert read(b" \t_auth \t= abc \t; _auth_type=Bearer") == {
        "_auth": "abc",
        "_auth_type": "Bearer",
    }


def test_equals_signs_inside_a_value_are_kept() -> None:
    assert read(b"_auth_state=abc==.def=") == {"_auth_state": "abc==.def="}


@pytest.mark.parametrize(
    "headers",
    [
        (b"_auth=first; _auth=second",),
        (b"_auth=same; _auth=same",),
        (b"_auth=first", b"_auth=second"),
        (b'_auth="bad"; _auth=good',),
        (b'_auth=good; _auth="bad"',),
        (b"_auth=a; _auth=b; _auth=c",),
        (b" _auth=first;_auth =second",),
    ],
)
def test_duplicated_auth_cookie_is_absent(headers: tuple[bytes, ...]) -> None:
    got = read(*headers, b"_auth_type=Bearer")
    assert "_auth" not in got
    assert got == {"_auth_type": "Bearer"}  # the duplicate only voids itself


@pytest.mark.parametrize(
    "value",
    [
        b'"quoted"',
        b'"unterminated',
        b"back\\slash",
        b"has space",
        b"latin1-\xe9",
        b"utf8-\xc3\xa9",
        b"comma,value",
        b"tab\tinside",
        b"nul\x00byte",
        b"del\x7fbyte",
        b"",
        b" ",
    ],
)
def test_malformed_value_is_absent(value: bytes) -> None:
    assert read(b"_auth=" + value + b"; _auth_type=Bearer") == {"_auth_type": "Bearer"}


def test_size_limit_applies_to_name_plus_value() -> None:
    fits = b"v" * (COOKIE_MAX_BYTES - len(b"_auth"))
    assert read(b"_auth=" + fits) == {"_auth": fits.decode()}
    assert read(b"_auth=" + fits + b"v") == {}


def test_oversized_state_cookie_is_absent_whatever_its_content() -> None:
    assert read(b"_auth_state=" + b"a" * 100_000) == {}


@pytest.mark.parametrize(
    "junk",
    [b"=abc", b"_auth", b"_auth_type", b"", b"   ", b"=", b"==", b"no-equals-here"],
)
def test_nameless_chunks_and_chunks_without_equals_are_ignored(junk: bytes) -> None:
    header = junk + b"; _auth=tok; " + junk + b";; _auth_type=Bearer;" + junk
    assert read(header) == {"_auth": "tok", "_auth_type": "Bearer"}


def test_multiple_cookie_headers_are_combined() -> None:
    got = read(b"_auth=tok; theme=dark", b"_auth_type=Bearer", b"_auth_csrf=cs")
    assert got == {"_auth": "tok", "_auth_type": "Bearer", "_auth_csrf": "cs"}


def test_only_cookie_headers_are_read() -> None:
    headers = [
        (b"set-cookie", b"_auth=from-set-cookie"),
        (b"x-cookie", b"_auth=from-x-cookie"),
        (b"authorization", b"Bearer _auth=x"),
        (b"cookie", b"_auth_type=Bearer"),
    ]
    assert read_cookies(headers, WANTED) == {"_auth_type": "Bearer"}


def test_only_the_wanted_names_are_read() -> None:
    other = CookieNames.from_prefix("__Host-app")
    header = cookie_header(b"_auth=tok; __Host-app=mine")
    assert read_cookies(header, other.wanted) == {"__Host-app": "mine"}
    assert read_cookies(header, frozenset()) == {}


def test_no_cookie_header_reads_nothing() -> None:
    assert read_cookies([], WANTED) == {}
    assert read_cookies([(b"host", b"example.com")], WANTED) == {}


def test_64_kib_cookie_header_is_parsed() -> None:
    filler = b"; ".join(b"c%d=%s" % (i, b"v" * 40) for i in range(1400))
    header = filler + b"; _auth=tok; " + b"x" * 8000 + b"; " + b";" * 4000
    assert len(header) > 64 * 1024
    assert read(header) == {"_auth": "tok"}


def test_64_kib_header_of_only_separators_and_equals_is_parsed() -> None:
    assert read(b";=" * 40_000) == {}
    assert read(b"_auth=" * 12_000) == {}  # one chunk, far over the size limit


# --- CookiePolicy.set / delete -------------------------------------------------------------------


def policy(**overrides: object) -> CookiePolicy:
    values: dict[str, object] = {"domain": None, "secure": True, "samesite": "lax", "path": "/"}
    values.update(overrides)
    return CookiePolicy(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "http_only", "expected"),
    [
        ({}, True, b"_auth=tok; Max-Age=300; HttpOnly; Path=/; Secure; SameSite=Lax"),
        ({}, False, b"_auth=tok; Max-Age=300; Path=/; Secure; SameSite=Lax"),
        (
            {"secure": False, "samesite": "strict"},
            True,
            b"_auth=tok; Max-Age=300; HttpOnly; Path=/; SameSite=Strict",
        ),
        (
            {"samesite": "none"},
            True,
            b"_auth=tok; Max-Age=300; HttpOnly; Path=/; Secure; SameSite=None",
        ),
        (
            {"domain": "example.com", "path": "/app"},
            True,
            b"_auth=tok; Max-Age=300; HttpOnly; Path=/app; Domain=example.com; Secure; "
            b"SameSite=Lax",
        ),
        (
            {"domain": "example.com", "secure": False, "samesite": "strict", "path": "/a/b"},
            False,
            b"_auth=tok; Max-Age=300; Path=/a/b; Domain=example.com; SameSite=Strict",
        ),
    ],
)
def test_set_cookie_carries_exactly_the_configured_attributes(
    overrides: dict[str, object], http_only: bool, expected: bytes
) -> None:
    assert policy(**overrides).set("_auth", "tok", max_age=300, http_only=http_only) == expected


def test_set_cookie_is_http_only_by_default() -> None:
    assert b"; HttpOnly;" in policy().set("_auth", "tok", max_age=1)


def test_empty_domain_adds_no_domain_attribute() -> None:
    assert b"Domain" not in policy(domain="").set("_auth", "tok", max_age=1)


@pytest.mark.parametrize(("max_age", "rendered"), [(0, b"0"), (-5, b"0"), (86400, b"86400")])
def test_max_age_is_never_negative(max_age: int, rendered: bytes) -> None:
    assert (
        policy()
        .set("_auth", "tok", max_age=max_age)
        .startswith(b"_auth=tok; Max-Age=" + rendered + b";")
    )


def _attributes(set_cookie: bytes) -> tuple[bytes, set[bytes]]:
    first, *attributes = set_cookie.split(b"; ")
    lifetime = {a for a in attributes if a.startswith((b"Max-Age=", b"Expires="))}
    return first, set(attributes) - lifetime


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"domain": "example.com", "path": "/app"},
        {"secure": False, "samesite": "strict"},
        {"samesite": "none", "domain": "sub.example.com"},
    ],
)
@pytest.mark.parametrize("http_only", [True, False])
def test_delete_repeats_the_attributes_it_was_set_with(
    overrides: dict[str, object], http_only: bool
) -> None:
    cookies = policy(**overrides)
    setter = cookies.set("_auth_csrf", "tok", max_age=300, http_only=http_only)
    deleter = cookies.delete("_auth_csrf", http_only=http_only)

    assert _attributes(deleter)[1] == _attributes(setter)[1]
    assert _attributes(deleter)[0] == b"_auth_csrf="
    assert deleter.startswith(b"_auth_csrf=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT;")


def test_delete_exact_value() -> None:
    got = policy(domain="example.com", path="/app").delete("_auth")
    assert got == (
        b"_auth=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; Path=/app; "
        b"Domain=example.com; Secure; SameSite=Lax"
    )


def test_cookie_over_4096_bytes_is_refused() -> None:
    name = "_auth"
    fits = "v" * (COOKIE_MAX_BYTES - len(name))
    assert policy().set(name, fits, max_age=1).startswith(f"{name}={fits};".encode())

    with pytest.raises(CookieTooLargeError) as excinfo:
        policy().set(name, fits + "v", max_age=1)

    assert isinstance(excinfo.value, CookieError)
    assert excinfo.value.name == name
    assert excinfo.value.size == COOKIE_MAX_BYTES + 1
    assert excinfo.value.limit == COOKIE_MAX_BYTES


def test_long_name_counts_towards_the_limit() -> None:
    name = "_auth_refresh"
    with pytest.raises(CookieTooLargeError):
        policy().set(name, "v" * (COOKIE_MAX_BYTES - len(name) + 1), max_age=1)


@pytest.mark.parametrize(
    "value",
    [
        "has space",
        "semi;colon",
        "comma,value",
        'dquote"value',
        "back\\slash",
        "tab\tvalue",
        "crlf\r\nSet-Cookie: injected=1",
        "nul\x00",
        "del\x7f",
        "",
    ],
)
def test_value_with_characters_a_cookie_cannot_carry_is_refused(value: str) -> None:
    with pytest.raises(CookieError) as excinfo:
        policy().set("_auth", value, max_age=1)
    assert not isinstance(excinfo.value, CookieTooLargeError)


@pytest.mark.parametrize("value", ["café", "token-\u2603", "\u00e9"])
def test_non_ascii_value_is_refused_not_mangled(value: str) -> None:
    with pytest.raises(CookieError):
        policy().set("_auth", value, max_age=1)


@pytest.mark.parametrize(
    "value", ["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln", "a=b==", "!#$%&'()*+-./:<=>?@[]^_`{|}~"]
)
def test_every_cookie_octet_is_allowed(value: str) -> None:
    assert policy().set("_auth", value, max_age=1).startswith(f"_auth={value}; ".encode())


def test_cookie_policy_is_immutable() -> None:
    cookies = policy()
    with pytest.raises(AttributeError):
        cookies.secure = False  # type: ignore[misc]


# --- CookieNames ---------------------------------------------------------------------------------


def test_names_derive_from_the_prefix() -> None:
    names = CookieNames.from_prefix("__Host-app")
    assert names.all() == (
        "__Host-app",
        "__Host-app_type",
        "__Host-app_state",
        "__Host-app_refresh",
        "__Host-app_csrf",
    )
    assert (names.access, names.type, names.state, names.refresh, names.csrf) == names.all()
    assert names.wanted == frozenset(n.encode() for n in names.all())


@pytest.mark.parametrize(
    "name",
    [
        "",
        "has space",
        "semi;colon",
        "eq=uals",
        "com,ma",
        'dq"uote',
        "(paren)",
        "sl/ash",
        "co:lon",
        "at@sign",
        "[bracket]",
        "{brace}",
        "q?uestion",
        "less<",
        "back\\slash",
        "new\nline",
        "tab\t",
        "nul\x00",
        "é",
        None,
        42,
        b"_auth",
    ],
)
def test_invalid_cookie_name_prefix_is_a_configuration_error(name: object) -> None:
    with pytest.raises(ConfigurationError):
        CookieNames.from_prefix(name)  # type: ignore[arg-type]
