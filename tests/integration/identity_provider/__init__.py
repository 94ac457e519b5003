"""Real identity providers on loopback: OpenID Providers and a plain OAuth 2.0 server."""
