"""A small real site on fastapi-authkit: login form, a signed-in page, a JSON API, logout.

Run it with ``uvicorn example_app.main:app``. Environment:

* ``AUTHKIT_SECRET``: signs cookies and tokens; a random one is generated (with a warning)
  when unset, so sessions end when the process restarts.
* ``AUTHKIT_ACCESS_TTL``: access-token lifetime in seconds (default 30, so the silent
  refresh can be watched on the page).
* ``AUTHKIT_REFRESH_TTL``: refresh-token lifetime in seconds (default one day).
* ``AUTHKIT_REFRESH_GRACE``: seconds during which the refresh token that was just rotated
  out still gets the same successor (default 10).
* ``AUTHKIT_ABSOLUTE_TTL``: seconds after sign-in at which a session ends whatever happens
  (default: a week, or the refresh-token lifetime when that is longer).
* ``AUTHKIT_REDIS_URL``: share sessions through Redis so that ``uvicorn --workers N`` works
  (unset: the embedded in-memory store, one process). Requires ``AUTHKIT_SECRET``. One
  server (``redis://``), a cluster (``redis+cluster://host:port,...``) or the primary a
  Sentinel names (``redis+sentinel://host:26379/service``).
* ``AUTHKIT_REDIS_WAIT_REPLICAS``: confirm every rotation, revocation and sign-in with this
  many replicas (``WAIT``) before answering (default 0: no waiting).
* ``AUTHKIT_DEBUG``: ``1`` logs every auth decision.

The app is its own auth server: the kit's built-in issuer mints access JWTs and rotating
refresh tokens, detects reuse of rotated-out ones, and revokes sessions on sign-out. The
signed-in page (templates/home.html, static/app.js) shows the access token counting down,
a timeline of the silent refreshes as they happen, the user's sessions (revoke one, or
sign out everywhere), and a switch that makes the token endpoint fail (switch.py), to
watch a transient failure keep the user signed in.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import os
import secrets
import time
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from fastapi_authkit import (
    AuthKitMiddleware,
    StoreUnavailableError,
    create_issuer,
    create_refresh,
    create_store,
    require_auth,
)
from fastapi_authkit.dependencies import AuthStateDep, CurrentUser
from fastapi_authkit.issuer import SessionInfo
from fastapi_authkit.stores import SessionStore

from .switch import FailureSwitch, SwitchedMemoryStore, SwitchedRedisStore

USERS = {"demo": {"password": "demo", "name": "Demo User"}}


@dataclass(frozen=True)
class Settings:
    secret: str
    access_ttl: int = 30
    refresh_ttl: int = 24 * 3600
    debug: bool = False
    grace: float = 10.0
    redis_url: str | None = None
    absolute_ttl: int | None = None
    redis_wait_replicas: int = 0

    def __post_init__(self) -> None:
        # A token that is already expired when minted would make every login fail.
        if self.access_ttl < 2:
            raise ValueError(
                f"AUTHKIT_ACCESS_TTL must be at least 2 seconds, got {self.access_ttl}"
            )
        if self.refresh_ttl <= self.access_ttl:
            raise ValueError("AUTHKIT_REFRESH_TTL must be longer than AUTHKIT_ACCESS_TTL")
        if not 0 <= self.grace < self.refresh_ttl:
            raise ValueError("AUTHKIT_REFRESH_GRACE must be between 0 and AUTHKIT_REFRESH_TTL")
        if self.absolute_ttl is not None and self.absolute_ttl < self.refresh_ttl:
            raise ValueError("AUTHKIT_ABSOLUTE_TTL must be at least AUTHKIT_REFRESH_TTL")
        if self.redis_wait_replicas < 0 or (self.redis_wait_replicas and not self.redis_url):
            raise ValueError("AUTHKIT_REDIS_WAIT_REPLICAS must be >= 0 and needs AUTHKIT_REDIS_URL")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        secret = env.get("AUTHKIT_SECRET", "")
        redis_url = env.get("AUTHKIT_REDIS_URL") or None
        if not secret and redis_url:
            # Workers sharing Redis must sign with one secret, or they reject each other.
            raise ValueError("AUTHKIT_REDIS_URL needs AUTHKIT_SECRET, shared by every worker")
        if not secret:
            secret = secrets.token_urlsafe(32)
            warnings.warn(
                "AUTHKIT_SECRET is not set: using a random development secret; "
                "sessions will not survive a restart and workers will not share them",
                RuntimeWarning,
                stacklevel=2,
            )
        return cls(
            secret=secret,
            access_ttl=int(env.get("AUTHKIT_ACCESS_TTL", "30")),
            refresh_ttl=int(env.get("AUTHKIT_REFRESH_TTL", str(24 * 3600))),
            debug=env.get("AUTHKIT_DEBUG", "") not in ("", "0"),
            grace=float(env.get("AUTHKIT_REFRESH_GRACE", "10")),
            redis_url=redis_url,
            absolute_ttl=int(env["AUTHKIT_ABSOLUTE_TTL"])
            if "AUTHKIT_ABSOLUTE_TTL" in env
            else None,
            redis_wait_replicas=int(env.get("AUTHKIT_REDIS_WAIT_REPLICAS", "0")),
        )


def _derive(secret: str, purpose: str) -> bytes:
    # One configured secret, independent keys per purpose.
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).digest()


HERE = Path(__file__).resolve().parent
# Plain HTML with $placeholders (string.Template: no clash with CSS or JS braces); the
# stylesheet and the script are static files. No build step, no dependency.
LOGIN_PAGE = Template((HERE / "templates" / "login.html").read_text())
HOME_PAGE = Template((HERE / "templates" / "home.html").read_text())
LOGIN_ERROR = '<p class="alert" role="alert">$message</p>'


class SwitchBody(BaseModel):
    failing: bool


def login_page(error: str = "") -> str:
    alert = Template(LOGIN_ERROR).substitute(message=html.escape(error)) if error else ""
    return LOGIN_PAGE.substitute(error=alert)


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    backend: SessionStore | None = None,
) -> FastAPI:
    """Build the demo site; tests call this with their own settings, clock and backend."""
    if backend is None:
        backend = (
            SwitchedRedisStore.connect(
                settings.redis_url, wait_replicas=settings.redis_wait_replicas, clock=clock
            )
            if settings.redis_url
            else SwitchedMemoryStore(clock)
        )
    # The "make the token endpoint fail" switch (None for a backend a test brought).
    switch: FailureSwitch | None = getattr(backend, "switch", None)
    issuer = create_issuer(
        backend=backend,
        signing_key=_derive(settings.secret, "access-token"),
        access_ttl=settings.access_ttl,
        idle_ttl=settings.refresh_ttl,
        absolute_ttl=(
            settings.absolute_ttl
            if settings.absolute_ttl is not None
            else max(settings.refresh_ttl, 7 * 24 * 3600)
        ),
        grace=settings.grace,
        clock=clock,
    )
    interval = min(10, settings.access_ttl // 3)
    store = create_store(
        secret_key=_derive(settings.secret, "cookies"),
        token_issuer=issuer,
        refresh=create_refresh(
            # Refresh in the last third of the token's life (at most 10 s before exp).
            interval=interval,
            refresh_api_callback=issuer.refresh,
            grace_period=settings.grace,
        ),
        # The login form is posted without JavaScript, so it cannot carry the CSRF header.
        csrf_exempt_paths={"/login"},
        debug=settings.debug,
        clock=clock,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await backend.aclose()

    app = FastAPI(title="fastapi-authkit demo", lifespan=lifespan)
    app.add_middleware(AuthKitMiddleware, store=store)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.state.issuer = issuer
    app.state.failure_switch = switch

    @app.exception_handler(StoreUnavailableError)
    async def store_unavailable(request: Request, exc: StoreUnavailableError) -> JSONResponse:
        # Redis down or failing over (a session list, a revocation): try again shortly.
        return JSONResponse(
            {"detail": "the session store is unavailable; try again"},
            status_code=503,
            headers={"Retry-After": str(store.retry_after)},
        )

    @app.get("/login", response_class=HTMLResponse)
    async def login_form() -> str:
        return login_page()

    @app.post("/login", response_model=None)
    async def login(
        request: Request,
        # Defaults: an empty field is a wrong password (the login page), not a 422.
        username: Annotated[str, Form()] = "",
        password: Annotated[str, Form()] = "",
        # "Remember me": ticked (the default), the cookies outlive the browser; unticked,
        # they are session cookies and closing the browser signs out. The form sends a
        # hidden remember=0 before the checkbox's remember=1 (the last value wins), so an
        # unticked box says "0"; a client that sends neither (a script) is remembered.
        remember: Annotated[str, Form()] = "1",
    ) -> RedirectResponse | HTMLResponse:
        user = USERS.get(username)
        if user is None or not hmac.compare_digest(user["password"], password):
            return HTMLResponse(login_page("Wrong username or password."), status_code=401)
        try:
            await issuer.sign_in(
                request,
                username,
                user_state={"username": username, "name": user["name"]},
                persistent=remember != "0",
            )
        except StoreUnavailableError:
            # Redis down or failing over: nothing was issued; the user can simply retry.
            page = login_page("Signing in is unavailable right now; try again.")
            return HTMLResponse(page, status_code=503, headers={"Retry-After": "5"})
        return RedirectResponse("/", status_code=303)

    @app.get("/", response_class=HTMLResponse)
    async def home(
        user: Annotated[Any, Depends(require_auth(fallback_path="/login"))],
        state: AuthStateDep,
    ) -> str:
        claims = state.claims or {}
        exp = int(claims.get("exp", 0))
        return HOME_PAGE.substitute(
            name=html.escape(str(user.get("name", ""))),
            exp=exp,
            remaining=max(0, exp - int(clock())),
            jti=html.escape(str(claims.get("jti", ""))),
            sid=html.escape(str(claims.get("sid", ""))),
            refresh_when=f"in its last {interval} s" if interval else "once it has expired",
        )

    @app.get("/api/me")
    async def me(user: CurrentUser, state: AuthStateDep) -> dict[str, Any]:
        # "worker" shows which uvicorn process answered when running with --workers N.
        exp = state.claims["exp"] if state.claims else None
        return {"user": user, "exp": exp, "worker": os.getpid()}

    @app.get("/api/token")
    async def token(request: Request, user: CurrentUser, state: AuthStateDep) -> dict[str, Any]:
        """The access token this request ended up with, for the page's countdown and its
        timeline of silent refreshes (a new ``jti`` is a new token)."""
        claims = state.claims or {}
        presented = request.cookies.get(store.names.access)
        return {
            "jti": claims.get("jti"),
            "sid": claims.get("sid"),
            "iat": claims.get("iat"),
            "exp": claims.get("exp"),
            "now": clock(),
            # The middleware refreshed before this route ran: the cookie it came with (if
            # the browser still had one) is not the token it has now.
            "refreshed": presented != state.token,
            "refresh_failing": state.unavailable,  # still valid, its refresh failed
            "worker": os.getpid(),
        }

    @app.get("/api/sessions")
    async def sessions(request: Request, user: CurrentUser) -> list[SessionInfo]:
        return await issuer.sessions(request)

    @app.delete("/api/sessions/{session_id}")
    async def revoke_session(
        request: Request, session_id: str, user: CurrentUser, state: AuthStateDep
    ) -> dict[str, bool]:
        current = (state.claims or {}).get("sid") == session_id
        if not await issuer.revoke_session(request, session_id):
            raise HTTPException(404, "no such session")
        return {"revoked": True, "signed_out": current}

    @app.get("/api/token-endpoint")
    async def token_endpoint() -> dict[str, bool]:
        if switch is None:
            raise HTTPException(404, "this app has no failure switch")
        return {"failing": await switch.is_on()}

    @app.put("/api/token-endpoint")
    async def set_token_endpoint(body: SwitchBody) -> dict[str, bool]:
        # Public on purpose: once the access token has expired during the "outage", the
        # page must still be able to turn it off. (The CSRF check applies all the
        # same when the request carries the session's cookies.)
        if switch is None:
            raise HTTPException(404, "this app has no failure switch")
        await switch.turn(body.failing)
        return {"failing": body.failing}

    @app.post("/api/ping")
    async def ping(user: CurrentUser) -> dict[str, Any]:
        return {"ok": True, "user": user["username"]}

    @app.post("/logout")
    async def logout(request: Request) -> dict[str, bool]:
        return {"ok": True, "revoked": await issuer.sign_out(request)}

    @app.post("/logout-everywhere")
    async def logout_everywhere(request: Request, user: CurrentUser) -> dict[str, bool]:
        return {"ok": True, "revoked": await issuer.sign_out(request, everywhere=True)}

    return app


_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    # ``uvicorn example_app.main:app`` builds the app on first access, so importing this
    # module (as the tests do) reads no environment and warns about nothing.
    global _app
    if name == "app":
        if _app is None:
            _app = create_app(Settings.from_env())
        return _app
    raise AttributeError(name)
