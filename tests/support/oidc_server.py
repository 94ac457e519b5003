"""panva's oidc-provider (tests/support/oidc_provider/) as a real process on loopback.

``bash scripts/test`` installs it with ``npm ci`` from the committed lock file. Nothing here
skips: a missing node or node_modules is a test failure that says how to get it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx2
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.support.processes import LaunchError, free_port, start_ready, stop_process

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"
STARTUP_TIMEOUT = 20.0
API = "https://api.test"  # the resource indicator and audience of our API
CLIENT_ID = "kit"
CLIENT_SECRET = "kit-secret-0123456789abcdef0123456789"


def rsa_jwk(kid: str) -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {**json.loads(RSAAlgorithm.to_jwk(key)), "kid": kid, "use": "sig", "alg": "RS256"}


def ec_jwk(kid: str) -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    return {**json.loads(ECAlgorithm.to_jwk(key)), "kid": kid, "use": "sig", "alg": "ES256"}


def public_jwks(keys: list[dict[str, Any]]) -> dict[str, Any]:
    private = {"d", "p", "q", "dp", "dq", "qi"}
    return {"keys": [{k: v for k, v in key.items() if k not in private} for key in keys]}


class OIDCProviderServer:
    """One oidc-provider on a fixed loopback port; :meth:`restart` brings it back with new
    settings (keys, audience, clock) and the same grants, as a provider's redeploy would."""

    def __init__(self, tmp: Path, *, redirect_uris: list[str], access_ttl: int = 60) -> None:
        node = shutil.which("node")
        if node is None:
            raise LaunchError("node is not installed (Node.js 20+ is needed)")
        if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
            raise LaunchError(
                "oidc-provider is not installed: run `bash scripts/test`, which runs "
                "`npm ci` in tests/support/oidc_provider"
            )
        self.node = node
        self.dir = tmp
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.keys = [rsa_jwk("key-1")]
        self.settings: dict[str, Any] = {
            "accessTtl": access_ttl,
            "accessTokenAlg": "RS256",
            "audience": API,
            "clockOffset": 0,
        }
        self.redirect_uris = redirect_uris
        self.log_file = tmp / "provider-log.jsonl"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def client_options(self) -> dict[str, Any]:
        return {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}

    def _config(self) -> dict[str, Any]:
        client = {
            "redirect_uris": self.redirect_uris,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }
        return {
            "port": self.port,
            "issuer": self.issuer,
            "api": API,
            "keys": self.keys,
            "clients": [
                {**client, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
                {
                    **client,
                    "client_id": "kit-post",
                    "client_secret": CLIENT_SECRET,
                    "token_endpoint_auth_method": "client_secret_post",
                },
                {**client, "client_id": "kit-public", "token_endpoint_auth_method": "none"},
            ],
            "stateFile": str(self.dir / "provider-state.json"),
            "logFile": str(self.log_file),
            **self.settings,
        }

    def start(self) -> None:
        config = self.dir / "provider-config.json"
        config.write_text(json.dumps(self._config()))
        url = f"{self.issuer}/.well-known/openid-configuration"

        def ready() -> bool:
            try:
                return httpx2.get(url, timeout=1.0).status_code == 200
            except httpx2.TransportError:
                return False

        self.process = start_ready(
            [self.node, str(PROVIDER_DIR / "provider.mjs"), str(config)],
            what=f"oidc-provider on {url}",
            log=self.dir / "provider-out.log",
            ready=ready,
            timeout=STARTUP_TIMEOUT,
            poll=0.05,
        )

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def restart(self, **settings: Any) -> None:
        self.stop()
        self.settings.update(settings)
        self.start()

    def set_clock(self, offset: float) -> None:
        """Run the provider's clock ``offset`` seconds ahead of real time from now on."""
        self.settings["clockOffset"] = offset
        response = httpx2.post(f"{self.issuer}/__test/clock?offset={offset}", timeout=5.0)
        assert response.status_code == 204, response.text

    def rotate_key(self, kid: str) -> None:
        """Restart with a new signing key first in the JWKS (the old one still published)."""
        self.keys = [rsa_jwk(kid), *self.keys]
        self.restart()

    def log(self) -> list[dict[str, Any]]:
        if not self.log_file.exists():
            return []
        return [json.loads(line) for line in self.log_file.read_text().splitlines()]

    def presented_refresh_tokens(self) -> list[str]:
        return [
            e["refresh_token"]
            for e in self.log()
            if e.get("grant_type") == "refresh_token" and e.get("refresh_token")
        ]

    def revoke(self, refresh_token: str) -> None:
        """Revoke the grant at the provider (RFC 7009), as an administrator or the user would."""
        response = httpx2.post(
            f"{self.issuer}/token/revocation",
            data={"token": refresh_token, "token_type_hint": "refresh_token"},
            auth=(CLIENT_ID, CLIENT_SECRET),
            timeout=5.0,
        )
        assert response.status_code == 200, response.text


class SharedTime:
    """Our app's clock and the provider's, both real time plus the same shift: advancing it
    stands in for waiting (a token's expiry, a rate limit) without a sleep. ``ahead`` puts
    the provider's clock that many seconds ahead of ours (clock skew)."""

    def __init__(self, provider: OIDCProviderServer) -> None:
        self.provider = provider
        self.shift = 0.0
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.time() + self.shift

    def advance(self, seconds: float) -> None:
        self.shift += seconds
        self._sync()

    def skew(self, ahead: float) -> None:
        self.ahead = ahead
        self._sync()

    def _sync(self) -> None:
        self.provider.set_clock(self.shift + self.ahead)


def header(token: str) -> dict[str, Any]:
    return jwt.get_unverified_header(token)
