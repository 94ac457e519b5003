"""Refreshing a request's session: the app's callback or the issuer's rotation, one call shared.

One module per concept, from the bottom up:

* :mod:`.context` — :class:`RefreshContext`, what a refresh uses of the configuration;
* :mod:`.outcomes` — what a refresh came to: :class:`Renewed`, :class:`Ended`,
  :class:`Unavailable` (possibly keeping the rotated :class:`Successor`);
* :mod:`.acceptance` — the callback's :class:`~fastapi_authkit.RefreshResult` checked and
  turned into an outcome;
* :mod:`.app_callback` — calling the app's refresh (and revocation) callback within its time
  limit;
* :mod:`.rotation` — the built-in issuer's rotation, one call to its store;
* :mod:`.flight` — :class:`SingleFlight`, one call per refresh token inside a process;
* :mod:`.shared` — one call per refresh token across the processes sharing a store.

The refresh layer returns what happened and reports nothing: the middleware reports each
outcome to the audit hook (:mod:`fastapi_authkit.audit`).
"""

from .app_callback import revoke_at_auth_server, run_callback
from .context import RefreshContext
from .flight import ENDED_MEMORY, SingleFlight
from .outcomes import Ended, Outcome, Renewed, Successor, Unavailable
from .rotation import run_rotation
from .shared import forget_shared, run_shared

__all__ = [
    "ENDED_MEMORY",
    "Ended",
    "Outcome",
    "RefreshContext",
    "Renewed",
    "SingleFlight",
    "Successor",
    "Unavailable",
    "forget_shared",
    "revoke_at_auth_server",
    "run_callback",
    "run_rotation",
    "run_shared",
]
