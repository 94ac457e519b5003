"""A real OpenID Provider on loopback built with Authlib's OpenID Connect server support,
independently written from panva's oidc-provider: discovery, a JWKS whose signing key can be
rotated at runtime, the authorization-code flow with PKCE, ``openid`` and ``nonce``
(Authlib's ``OpenIDCode``), ID tokens, RFC 9068 JWT access tokens for the API (Authlib's
``JWTBearerTokenGenerator``), the refresh-token grant (with rotation unless
``rotate_refresh_tokens=False``, Authlib's default), RFC 7009 revocation,
RFC 7662 introspection and the userinfo endpoint.

It is :class:`~tests.support.oauth2_server.OAuth2Server` (the same client, codes, tokens,
auto-approving user chosen by ``login_hint``, and clock: real time plus ``offset``) with
Authlib's OpenID Connect pieces added. Authlib's other default policies are kept: a refresh token
is issued whenever the client may use the ``refresh_token`` grant (``offline_access`` means
nothing special to it), and a refreshed answer carries no ID token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from authlib.oidc.core import OpenIDCode, UserInfo, UserInfoEndpoint
from flask import Flask, jsonify

from tests.support.oauth2_server import USERS, OAuth2Server
from tests.support.oidc_server import API, public_jwks, rsa_jwk

ID_TOKEN_TTL = 3600


def _profile(user: str, scope: str) -> UserInfo:
    """The OpenID Connect claims of ``user`` that ``scope`` grants."""
    known = USERS[user]
    return UserInfo(sub=user, name=known["name"], email=known["email"]).filter(scope)


@dataclass
class AuthlibOP(OAuth2Server):
    """The provider and what it holds; ``running()`` serves it on a loopback port.
    ``keys``: its private signing keys, the one it signs with first (all published)."""

    keys: list[dict[str, Any]] = field(default_factory=lambda: [rsa_jwk("key-1")])

    @property
    def issuer(self) -> str:
        return self.url

    @property
    def signing_key(self) -> dict[str, Any]:
        return self.keys[0]

    def rotate_key(self, kid: str) -> None:
        """Sign with a new key from now on; the old ones stay published until retired."""
        self.keys = [rsa_jwk(kid), *self.keys]

    def retire_key(self, kid: str) -> None:
        """Stop publishing ``kid`` (never the signing key)."""
        assert kid != self.signing_key["kid"], "retire a key only after rotating away from it"
        self.keys = [key for key in self.keys if key["kid"] != kid]

    def refresh_token_revoked(self, refresh_token: str) -> bool:
        token = self.by_refresh(refresh_token)
        assert token is not None, "this provider never issued that refresh token"
        return token.revoked

    def discovery(self) -> dict[str, Any]:
        return {
            **super().discovery(),
            "userinfo_endpoint": f"{self.url}/userinfo",
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            # What Authlib's validate_request_prompt understands.
            "prompt_values_supported": ["none", "login", "consent", "select_account"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        }

    def token_generator(self, server: AuthorizationServer, app: Flask) -> Any:
        outer = self

        class AccessTokens(JWTBearerTokenGenerator):  # type: ignore[misc]
            def get_jwks(self) -> dict[str, Any]:
                return outer.signing_key  # its kid goes into the header

            def get_audiences(self, client: ClientMixin, user: Any, scope: str) -> str:
                return API

            def get_extra_claims(
                self, client: ClientMixin, grant_type: str, user: Any, scope: str
            ) -> dict[str, Any]:
                # The server's clock (the base class reads time.time()), and its URL, known
                # only once it serves (the generator is made before).
                now = int(outer.now())
                return {"iss": outer.url, "iat": now, "exp": now + outer.access_ttl}

        return AccessTokens(
            issuer="",
            refresh_token_generator=server.create_bearer_token_generator(
                {"OAUTH2_REFRESH_TOKEN_GENERATOR": True}
            ).refresh_token_generator,
            expires_generator=lambda client, grant_type: self.access_ttl,
        )

    def code_extensions(self) -> list[Any]:
        outer = self

        class IDTokens(OpenIDCode):  # type: ignore[misc]
            def exists_nonce(self, nonce: str, request: Any) -> bool:
                return any(code.nonce == nonce for code in outer.codes.values())

            def get_jwt_config(self, grant: Any, client: ClientMixin) -> dict[str, Any]:
                return {"key": outer.signing_key, "alg": "RS256", "iss": outer.url}

            def generate_user_info(self, user: str, scope: str) -> UserInfo:
                # iat and exp from the server's clock (Authlib's generate_id_token reads
                # time.time(); the user info is laid over its claims).
                now = int(outer.now())
                return UserInfo(_profile(user, scope), iat=now, exp=now + ID_TOKEN_TTL)

        return [*super().code_extensions(), IDTokens(require_nonce=True)]

    def _build(self) -> Flask:
        app = super()._build()
        outer = self

        class UserInfoAnswer(UserInfoEndpoint):  # type: ignore[misc]
            def generate_user_info(self, user: str, scope: str) -> UserInfo:
                return _profile(user, scope)

        self.authorization.register_endpoint(UserInfoAnswer(resource_protector=self.protect))

        @app.get("/jwks")
        def jwks() -> Any:
            return jsonify(public_jwks(outer.keys))

        @app.route("/userinfo", methods=["GET", "POST"])
        def userinfo() -> Any:
            return outer.authorization.create_endpoint_response("userinfo")

        return app
