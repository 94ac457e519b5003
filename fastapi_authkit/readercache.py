"""The request reader's per-process memory of signed-in sessions, bounded by count.

Three layers, each first in, first out:

* the cached readings (:class:`~fastapi_authkit.decision.CachedReading`), one per signed-in
  session, known by the session's own cookies (access, state, refresh) rather than by the
  whole Cookie header, so that other cookies (any value, changed on every request) cannot
  make one session's readings many. As many as the verifier's token cache
  (``create_store(verified_token_cache=...)``, 20,000 by default): a reading needs its
  token and its state cookie remembered anyway. One found past its window is dropped (when
  used, or from the front as new ones arrive);
* the parsed Cookie headers: 4,096 of at most ``CACHED_HEADER_BYTES`` (4 KiB) each, so at
  most 16 MiB of header bytes;
* each cached session's last Cookie header, parsed (so that more active sessions than the
  parsed-header layer holds are not parsed again on every request), known by its 16-byte
  digest rather than kept: one per session and never more, as many as the cached readings.

Memory bound: a session held by the layers keeps no header bytes and no cookie names:
its session key (the token, state-cookie and refresh strings, which the verifier's and the
state codec's caches are keyed by: the same objects, not copies), its header's digest, its
reading and its index entries, well under 1 KB here. Its claims and user state are the
verifier's and the codec's remembered values, counted in their caches. All caches together
come to about 3 KB per remembered session (docs/performance.md measures it), so the
default bound keeps them under 64 MiB per process, plus at most 4,096 parsed headers.
"""

from __future__ import annotations

from hashlib import blake2b

from .config import SessionKnown
from .cookies import CACHED_HEADER_BYTES, CookieNames, parse_cookie_header
from .decision import CachedReading
from .fifo import Fifo

__all__ = ["PARSED_HEADERS", "ParsedHeader", "ReaderCache", "SessionKey", "header_digest"]

# How many parsed Cookie headers are kept (each at most CACHED_HEADER_BYTES).
PARSED_HEADERS = 4096

# A session's own cookies (access, state, refresh): the strings its parsed header holds anyway.
SessionKey = tuple[str | None, str | None, str | None]

_BEARER = "Bearer"


class ParsedHeader:
    """A parsed Cookie header: whether it holds any of the kit's cookies, the session's own
    cookies (its key), the token type, and the session's cached reading last served for
    this header (a shortcut to it, which the per-session layer still bounds: it is that
    very entry). The CSRF cookie's value is not kept: the reader never reads it (the CSRF
    check compares the request's header with the session id)."""

    __slots__ = ("cached", "digest", "key", "present", "token_type")

    def __init__(self, present: bool, key: SessionKey, token_type: str) -> None:
        self.present = present
        self.key = key
        self.token_type = token_type
        self.cached: CachedReading | None = None
        self.digest: bytes | None = None  # the header's digest, when small enough to be kept


def header_digest(header: bytes) -> bytes:
    """What the per-session layer knows a Cookie header by: 16 bytes, not the header (a
    cryptographic digest, never ``hash()``: two headers taken for one would be two
    sessions' identities confused)."""
    return blake2b(header, digest_size=16).digest()


class ReaderCache:
    """The three layers (see the module docstring) for one configuration's reader."""

    __slots__ = ("_by_header", "_known", "_names", "_parsed", "_pinned", "readings")

    def __init__(self, names: CookieNames, size: int, known: SessionKnown | None) -> None:
        self._names = names
        self._known = known
        self.readings: Fifo[SessionKey, CachedReading] = Fifo(size)
        self._parsed: Fifo[bytes, ParsedHeader] = Fifo(PARSED_HEADERS)
        # _pinned and _by_header hold the same pairs (a header's digest names one session key).
        self._pinned: Fifo[SessionKey, bytes] = Fifo(size)
        self._by_header: dict[bytes, ParsedHeader] = {}

    def header(self, header: bytes) -> ParsedHeader:
        """``header`` parsed: from either header layer, or parsed now (and kept when small)."""
        parsed = self._parsed.get(header)
        if parsed is None:
            if len(header) > CACHED_HEADER_BYTES:
                return self._parse(header, None)
            digest = header_digest(header)
            parsed = self._by_header.get(digest)
            if parsed is None:
                parsed = self._parse(header, digest)
                self._parsed.put(header, parsed)
        return parsed

    def _parse(self, header: bytes, digest: bytes | None) -> ParsedHeader:
        names = self._names
        cookies = parse_cookie_header(header, names.wanted)
        key = (cookies.get(names.access), cookies.get(names.state), cookies.get(names.refresh))
        token_type = cookies.get(names.type, _BEARER)
        if token_type == _BEARER:
            token_type = _BEARER  # one string for every header, not a copy per session
        parsed = ParsedHeader(bool(cookies), key, token_type)
        parsed.digest = digest
        return parsed

    def recall(self, parsed: ParsedHeader, now: float) -> CachedReading | None:
        """The session's cached reading, when it holds at ``now`` for this header."""
        if not parsed.present:
            return None
        cached = self.readings.get(parsed.key)
        if cached is None:
            return None
        if not cached.valid_from <= now < cached.valid_until:
            del self.readings[parsed.key]
            return None
        if cached.token_type != parsed.token_type:
            # The token-type cookie is not signed, so it is not part of the key: one that
            # differs is read in full, and its reading replaces this one.
            return None
        family = cached.family
        if family is not None:
            known = self._known(family, now)  # type: ignore[misc]
            if known is not True:
                if known is False:  # over for good; unknown: the entry may serve again
                    del self.readings[parsed.key]
                    parsed.cached = None
                return None  # the full read says what the request is now
        parsed.cached = cached
        self._pin(parsed)
        return cached

    def remember(self, parsed: ParsedHeader, cached: CachedReading, now: float) -> None:
        """Keep ``cached`` as the reading of ``parsed``'s session."""
        readings = self.readings
        # Entries whose window has closed are dropped from the front as new ones arrive: the
        # oldest entries close first (tokens of one issuer live alike), so a session that
        # went away leaves nothing behind for long, whatever the cache's size.
        for _ in range(2):
            if not readings:
                break
            oldest = next(iter(readings))
            if readings[oldest].valid_until > now:
                break
            del readings[oldest]
        parsed.cached = cached
        readings.put(parsed.key, cached)
        self._pin(parsed)

    def _pin(self, parsed: ParsedHeader) -> None:
        """Keep ``parsed`` as its session's one header (see the module docstring)."""
        digest = parsed.digest
        pinned = self._pinned
        if digest is None or not pinned.size:
            return
        key = parsed.key
        previous = pinned.get(key)
        if previous == digest:
            return
        if previous is not None:
            del self._by_header[previous]
        elif len(pinned) >= pinned.size:
            del self._by_header[pinned.popitem(last=False)[1]]
        pinned[key] = digest
        self._by_header[digest] = parsed
