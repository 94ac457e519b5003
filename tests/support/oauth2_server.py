"""A real plain OAuth 2.0 authorization server on loopback, built with Authlib's Flask
integration: the authorization-code grant with PKCE (an auto-approving user, chosen by
``login_hint``), the refresh-token grant with rotation, RFC 7662 introspection, RFC 7009
revocation, and a GitHub-style user API (``GET /user`` with the bearer token). Its access
tokens are opaque. It is not OpenID Connect: no ID token; its discovery document (served
so that ``OIDCClient`` can find the endpoints) names no JWKS keys.

The server's clock is real time plus ``offset`` (moved by the tests with the app's clock).
With ``github_errors`` its token endpoint refuses the way GitHub documents for its own
("Troubleshooting OAuth app access token request errors"): HTTP 200 and a JSON body whose
``error`` is GitHub's name (``bad_verification_code``, ``incorrect_client_credentials``...);
by default it answers RFC 6749 §5.2 errors (400/401).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import Flask, jsonify, request
from werkzeug.serving import make_server

CLIENT_ID = "kit-oauth2"
CLIENT_SECRET = "oauth2-secret-0123456789abcdef0123456789"
# GitHub's names for the standard errors of its token endpoint.
GITHUB_ERRORS = {
    ("authorization_code", "invalid_grant"): "bad_verification_code",
    ("refresh_token", "invalid_grant"): "bad_refresh_token",
    ("authorization_code", "invalid_client"): "incorrect_client_credentials",
    ("refresh_token", "invalid_client"): "incorrect_client_credentials",
}
USERS = {
    "alice": {"id": 1001, "login": "alice", "name": "Alice", "email": "alice@example.test"},
    "bob": {"id": 1002, "login": "bob", "name": "Bob", "email": "bob@example.test"},
}


class User(str):
    """A user, named by its login (Authlib's JWT access tokens ask it for its id)."""

    def get_user_id(self) -> str:
        return str(self)


@dataclass
class Client:
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    client_metadata: dict[str, Any] = field(default_factory=dict)
    # The grant types registered for the client (an operator may leave refresh_token out).
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token")

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        return scope or ""

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass
class Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None
    auth_time: int

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    # What Authlib's OpenIDCode extension asks of a code (the OpenID Provider's).
    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@dataclass
class Token:
    server: OAuth2Server
    client_id: str
    user: str
    scope: str
    access_token: str
    refresh_token: str | None
    issued_at: float
    expires_in: int
    revoked: bool = False

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return self.server.now() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> str:
        return self.user

    def get_client(self) -> Client:
        return self.server.client


@dataclass
class OAuth2Server:
    """The server and what it holds; ``running()`` serves it on a loopback port."""

    redirect_uris: list[str]
    access_ttl: int = 60
    # Refresh-token rotation (Authlib's default is off: the refresh token stays the same).
    rotate_refresh_tokens: bool = True
    offset: float = 0.0
    codes: dict[str, Code] = field(default_factory=dict)
    tokens: list[Token] = field(default_factory=list)
    introspections: int = 0
    token_requests: int = 0
    down: bool = False
    github_errors: bool = False
    # GitHub's ``refresh_token_expires_in`` beside each refresh token (None: not sent).
    refresh_token_expires_in: int | None = None
    url: str = ""

    def __post_init__(self) -> None:
        self.client = Client(CLIENT_ID, CLIENT_SECRET, self.redirect_uris)
        self.app = self._build()

    @property
    def client_options(self) -> dict[str, str]:
        return {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}

    def now(self) -> float:
        return time.time() + self.offset

    def by_access(self, value: str) -> Token | None:
        return next((t for t in self.tokens if t.access_token == value), None)

    def by_refresh(self, value: str) -> Token | None:
        return next((t for t in self.tokens if t.refresh_token == value), None)

    def token_generator(self, server: AuthorizationServer, app: Flask) -> Any:
        """Opaque bearer access tokens, and refresh tokens."""
        app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {
            "authorization_code": self.access_ttl,
            "refresh_token": self.access_ttl,
        }
        app.config["OAUTH2_REFRESH_TOKEN_GENERATOR"] = True
        # The config is read when the generator is made: make it again.
        return server.create_bearer_token_generator(app.config)

    def code_extensions(self) -> list[Any]:
        """The authorization-code grant's extensions: PKCE, required."""
        return [CodeChallenge(required=True)]

    def discovery(self) -> dict[str, Any]:
        """The endpoints, for ``OIDCClient`` to find; no OpenID Connect."""
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "introspection_endpoint": f"{self.url}/introspect",
            "revocation_endpoint": f"{self.url}/revoke",
            "jwks_uri": f"{self.url}/jwks",
            "scopes_supported": ["profile", "user"],
        }

    def _stating_refresh_lifetime(self, generator: Any) -> Any:
        """``generator``, whose token answers also say how long the refresh token lasts
        (GitHub's ``refresh_token_expires_in``) when the server is told to."""

        def generate(*args: Any, **kwargs: Any) -> dict[str, Any]:
            token: dict[str, Any] = generator(*args, **kwargs)
            if self.refresh_token_expires_in is not None and "refresh_token" in token:
                token["refresh_token_expires_in"] = self.refresh_token_expires_in
            return token

        return generate

    def _build(self) -> Flask:
        outer = self
        app = Flask(__name__)
        server = AuthorizationServer(
            app,
            query_client=lambda cid: outer.client if cid == CLIENT_ID else None,
            save_token=self._save_token,
        )
        self.authorization = server
        server.register_token_generator(
            "default", self._stating_refresh_lifetime(self.token_generator(server, app))
        )

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ("client_secret_basic", "client_secret_post")

            def save_authorization_code(self, code: str, req: Any) -> None:
                data = req.payload.data
                outer.codes[code] = Code(
                    code,
                    req.client.client_id,
                    req.payload.redirect_uri,
                    req.payload.scope or "",
                    req.user,
                    data.get("code_challenge"),
                    data.get("code_challenge_method"),
                    data.get("nonce"),
                    int(outer.now()),
                )

            def query_authorization_code(self, code: str, client: Client) -> Code | None:
                return outer.codes.get(code)

            def delete_authorization_code(self, code: Code) -> None:
                outer.codes.pop(code.code, None)

            def authenticate_user(self, code: Code) -> str:
                return code.user

        class RefreshGrant(grants.RefreshTokenGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
            INCLUDE_NEW_REFRESH_TOKEN = outer.rotate_refresh_tokens

            def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
                token = outer.by_refresh(refresh_token)
                return token if token is not None and not token.revoked else None

            def authenticate_user(self, token: Token) -> str:
                return token.user

            def revoke_old_credential(self, token: Token) -> None:
                if outer.rotate_refresh_tokens:  # else it is still the live one
                    token.revoked = True

        class Introspection(IntrospectionEndpoint):  # type: ignore[misc]
            CLIENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post")

            def query_token(self, token: str, hint: str | None) -> Token | None:
                outer.introspections += 1
                return outer.by_access(token) or outer.by_refresh(token)

            def introspect_token(self, token: Token) -> dict[str, Any]:
                return {
                    "active": True,
                    "client_id": token.client_id,
                    "token_type": "Bearer",
                    "username": token.user,
                    "scope": token.scope,
                    "sub": token.user,
                    "aud": token.client_id,
                    "iss": outer.url,
                    "exp": int(token.issued_at + token.expires_in),
                    "iat": int(token.issued_at),
                }

            def check_permission(self, token: Token, client: Client, req: Any) -> bool:
                return True

        class Revocation(RevocationEndpoint):  # type: ignore[misc]
            CLIENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post")

            def query_token(self, token: str, hint: str | None) -> Token | None:
                return outer.by_refresh(token) or outer.by_access(token)

            def revoke_token(self, token: Token, req: Any) -> None:
                token.revoked = True

        server.register_grant(CodeGrant, self.code_extensions())
        server.register_grant(RefreshGrant)
        server.register_endpoint(Introspection)
        server.register_endpoint(Revocation)

        class Validator(BearerTokenValidator):  # type: ignore[misc]
            def authenticate_token(self, token_string: str) -> Token | None:
                return outer.by_access(token_string)

        protect = ResourceProtector()
        protect.register_token_validator(Validator())
        self.protect = protect

        @app.before_request
        def maybe_down() -> Any:
            if outer.down and not request.path.startswith("/__test"):
                return ("down for maintenance", 503)
            return None

        @app.get("/.well-known/openid-configuration")
        def discovery() -> Any:
            return jsonify(outer.discovery())

        @app.get("/authorize")
        def authorize() -> Any:
            # An auto-approving user: who signs in is the login_hint (default alice).
            user = User(request.args.get("login_hint", "alice"))
            grant = server.get_consent_grant(end_user=user)
            return server.create_authorization_response(grant_user=user, grant=grant)

        @app.post("/token")
        def token() -> Any:
            outer.token_requests += 1
            response = server.create_token_response()
            body = response.get_json(silent=True)
            if not outer.github_errors or response.status_code == 200 or not body:
                return response
            standard = body.get("error")
            error = GITHUB_ERRORS.get((request.form.get("grant_type"), standard), standard)
            return jsonify(
                error=error,
                error_description=body.get("error_description", error),
                error_uri="https://docs.github.com/apps/oauth-apps/maintaining-oauth-apps/"
                "troubleshooting-oauth-app-access-token-request-errors",
            )

        @app.post("/introspect")
        def introspect() -> Any:
            return server.create_endpoint_response("introspection")

        @app.post("/revoke")
        def revoke() -> Any:
            return server.create_endpoint_response("revocation")

        @app.get("/user")
        def user() -> Any:
            # GitHub's GET /user: the signed-in user, by the bearer token.
            token = protect.acquire_token()
            return jsonify(USERS[token.user])

        return app

    def _save_token(self, data: dict[str, Any], req: Any) -> None:
        self.tokens.append(
            Token(
                self,
                req.client.client_id,
                req.user,
                data.get("scope", ""),
                data["access_token"],
                data.get("refresh_token"),
                self.now(),
                int(data["expires_in"]),
            )
        )

    @contextmanager
    def running(self) -> Iterator[OAuth2Server]:
        """Serve on a free loopback port. Authlib refuses plain http unless the environment
        says ``AUTHLIB_INSECURE_TRANSPORT=1`` (the tests set it with monkeypatch)."""
        http = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{http.server_port}"
        thread = threading.Thread(target=http.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            http.shutdown()
            http.server_close()
            thread.join(timeout=5)
