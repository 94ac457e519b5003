"""The request reader's per-process memory of signed-in sessions, bounded by count.

One record per remembered session, the :class:`~fastapi_authkit.decision.CachedReading`
it is served as: the verifier and the state codec hand it what they remembered of the
session's token and state cookie and keep nothing of their own for it, so a session known
here is one entry in one map. Two layers lead to the records, and one holds them:

* the parsed Cookie headers: 4,096 of at most ``CACHED_HEADER_BYTES`` (4 KiB) each, so at
  most 16 MiB of header bytes, each with the record last served for it;
* the records, first in, first out, as many as ``create_store(verified_token_cache=...)``
  (20,000 by default), known by a 15-byte digest of the session's own cookies (access,
  state, refresh) rather than by the whole Cookie header, so that other cookies (any value,
  changed on every request) cannot make one session's records many. One found past its
  window is dropped (when used, or from the front as new ones arrive);
* each record's last Cookie header, known by its 15-byte digest rather than kept (so that
  more active sessions than the parsed-header layer holds are not parsed again on every
  request): one per record and never more.

Memory bound: a remembered session keeps no header bytes, no cookie names, no state
cookie and neither token (a request it serves carries them: see
:class:`~fastapi_authkit.decision.CachedReading`): its record, its two digests, its state
id, its claims and user state (:func:`~fastapi_authkit.jsoncopy.copyable`) and its index
entries; about 1 KiB in ``benchmarks/memory.py`` (docs/performance.md), so the default
bound keeps a worker's caches under 64 MiB with the at most 4,096 parsed headers.
"""

from __future__ import annotations

import math
from hashlib import blake2b

from .cookies import CACHED_HEADER_BYTES, CookieNames, parse_cookie_header
from .decision import CachedReading, Reading
from .fifo import Fifo
from .jsoncopy import share_strings
from .source import SessionKnown
from .tokens.verifier import TokenVerifier
from .userstate import StateCodec

__all__ = [
    "DIGEST_BYTES",
    "PARSED_HEADERS",
    "ParsedHeader",
    "ReaderCache",
    "SessionKey",
    "header_digest",
    "session_digest",
]

# How many parsed Cookie headers are kept (each at most CACHED_HEADER_BYTES).
PARSED_HEADERS = 4096

# A session's own cookies (access, state, refresh), as a parsed header holds them.
SessionKey = tuple[str | None, str | None, str | None]

_BEARER = "Bearer"


class ParsedHeader:
    """A parsed Cookie header: whether it holds any of the kit's cookies, the session's own
    cookies (``key``) and their digest (``session``), the token type, the header's digest
    when it is small enough to be known by it, and the record last served for this header
    (a shortcut to it, which the records' layer still bounds: it is that very entry). The
    CSRF cookie's value is not kept: the reader never reads it (the CSRF check compares the
    request's header with the session id)."""

    __slots__ = ("cached", "digest", "key", "present", "session", "token_type")

    def __init__(self, present: bool, key: SessionKey, token_type: str) -> None:
        self.present = present
        self.key = key
        self.token_type = token_type
        self.cached: CachedReading | None = None
        self.digest: bytes | None = None
        # Only a header with an access token and a state cookie can be a remembered session.
        self.session = session_digest(key) if key[0] is not None and key[1] is not None else None


# The digests' size: 120 bits, far beyond any collision search, and 15 bytes rather than
# 16 because a bytes object of 15 (33 bytes of header) fills one 48-byte allocator block,
# where 16 takes a 64-byte one: two of them per remembered session.
DIGEST_BYTES = 15


def header_digest(header: bytes) -> bytes:
    """What a record's last Cookie header is known by: a digest, not the header (a
    cryptographic one, never ``hash()``: two headers taken for one would be two sessions'
    identities confused)."""
    return blake2b(header, digest_size=DIGEST_BYTES, person=b"cookie header").digest()


def session_digest(key: SessionKey) -> bytes:
    """What a record is known by: a digest of exactly these access, state and refresh
    cookies (each length-prefixed, so no two keys share an encoding)."""
    text = "\n".join("-" if part is None else f"{len(part)}:{part}" for part in key)
    return blake2b(text.encode(), digest_size=DIGEST_BYTES, person=b"session cookies").digest()


class ReaderCache:
    """The layers (see the module docstring) for one configuration's reader."""

    __slots__ = ("_by_header", "_known", "_names", "_parsed", "readings", "since")

    def __init__(self, names: CookieNames, size: int, known: SessionKnown | None) -> None:
        self._names = names
        self._known = known
        # Every record's window opened before it was made (the full read that made it
        # accepted its token and its state cookie at that time), so one time serves as the
        # lower bound of them all: the latest at which a record was made. Before it, the
        # clock went back, and records serve nobody until it passes that time again (the
        # full read decides meanwhile). One time here rather than one in every record.
        self.since = -math.inf
        self.readings: Fifo[bytes, CachedReading] = Fifo(size)
        self._parsed: Fifo[bytes, ParsedHeader] = Fifo(PARSED_HEADERS)
        # A record's last header's digest -> the record (whose ``header`` it is).
        self._by_header: dict[bytes, CachedReading] = {}

    def header(self, header: bytes) -> ParsedHeader:
        """``header`` parsed: from the parsed-header layer, or parsed now (and kept when
        small)."""
        parsed = self._parsed.get(header)
        if parsed is None:
            if len(header) > CACHED_HEADER_BYTES:
                return self._parse(header, None)
            parsed = self._parse(header, header_digest(header))
            self._parsed.put(header, parsed)
        return parsed

    def find(self, header: bytes, safe: bool, now: float) -> CachedReading | ParsedHeader:
        """The session's record when it serves this request (``safe`` methods only), else
        the header parsed."""
        parsed = self._parsed.get(header)
        if parsed is not None:
            # The common request: a signed-in browser repeating its Cookie header, which
            # served this very record last time.
            cached = parsed.cached
            if safe and cached is not None and self._serves(cached, now):
                return cached
        else:
            if not safe or len(header) > CACHED_HEADER_BYTES:
                return self.header(header)
            digest = header_digest(header)
            cached = self._by_header.get(digest)
            if cached is not None and self._serves(cached, now):
                return cached
            parsed = self._parse(header, digest)
            self._parsed.put(header, parsed)
        if safe:
            cached = self.recall(parsed, now)
            if cached is not None:
                return cached
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

    def _serves(self, cached: CachedReading, now: float) -> bool:
        family = cached.family
        return self.since <= now < cached.valid_until and (
            family is None or self._known(family, now) is True  # type: ignore[misc]
        )

    def known(self, parsed: ParsedHeader, now: float) -> CachedReading | None:
        """The record of ``parsed``'s session (these very cookies) while its window holds
        at ``now``, whatever its token type or its family's state."""
        if parsed.session is None:
            return None
        cached = self.readings.get(parsed.session)
        if cached is None:
            return None
        if now >= cached.valid_until:
            self._drop(cached)
            return None
        return cached if now >= self.since else None

    def recall(self, parsed: ParsedHeader, now: float) -> CachedReading | None:
        """The session's record, when it serves this header at ``now``."""
        cached = self.known(parsed, now)
        if cached is None:
            return None
        if cached.token_type != parsed.token_type:
            # The token-type cookie is not signed, so it is not part of the key: one that
            # differs is read in full, and its record replaces this one.
            return None
        family = cached.family
        if family is not None:
            known = self._known(family, now)  # type: ignore[misc]
            if known is not True:
                if known is False:  # over for good; unknown: the record may serve again
                    self._drop(cached)
                    parsed.cached = None
                return None  # the full read says what the request is now
        parsed.cached = cached
        self._pin(cached, parsed.digest)
        return cached

    def remember(self, parsed: ParsedHeader, cached: CachedReading, now: float) -> None:
        """Keep ``cached`` as the record of ``parsed``'s session (replacing any)."""
        readings = self.readings
        if not readings.size:
            return
        if now > self.since:
            self.since = now
        # Records whose window has closed are dropped from the front as new ones arrive:
        # the oldest close first (tokens of one issuer live alike), so a session that went
        # away leaves nothing behind for long, whatever the cache's size.
        for _ in range(2):
            oldest = readings.oldest()
            if oldest is None or oldest.valid_until > now:
                break
            self._drop(oldest)
        previous = readings.get(cached.session)
        if previous is not None:
            self._unpin(previous)
            readings[cached.session] = cached  # in its place
        else:
            if len(readings) >= readings.size:
                self._unpin(readings.pop_oldest()[1])
            readings.put(cached.session, cached)
        parsed.cached = cached
        self._pin(cached, parsed.digest)

    def take_over(
        self,
        parsed: ParsedHeader,
        verifier: TokenVerifier,
        codec: StateCodec,
        reading: Reading,
        due: float,
        family: str | None,
        now: float,
    ) -> None:
        """Keep the signed-in ``reading`` of ``parsed``'s session as its record, until the
        token's or the state cookie's window closes or a refresh falls due (``due``), taking
        over what ``verifier`` and ``codec`` remembered of them: the claims, the state id
        and the user state are their own remembered values, which they then forget, so that
        the record is all that is remembered of the session."""
        access, raw_state, _ = parsed.key
        if access is None or raw_state is None or parsed.session is None:
            return
        token = verifier.remembered(access)
        cookie = codec.remembered(raw_state)
        if token is None or cookie is None:
            return  # (verified_token_cache=0 remembers no token, so nothing here either)
        if max(token[0], cookie[0]) > now:
            return  # not open yet: never, after a full read at ``now`` (see ``since``)
        cached = CachedReading(
            valid_until=min(token[1], cookie[1], due),
            token_type=reading.token_type or _BEARER,
            claims=token[2],
            state_id=cookie[2],
            user_state=cookie[3],
            family=family,
            session=parsed.session,
        )
        share_strings(cached.user_state, cached.claims)
        verifier.forget(access)
        codec.forget(raw_state)
        self.remember(parsed, cached, now)

    def _drop(self, cached: CachedReading) -> None:
        del self.readings[cached.session]
        self._unpin(cached)

    def _pin(self, cached: CachedReading, digest: bytes | None) -> None:
        """Make ``digest`` the record's one Cookie header (see the module docstring)."""
        if digest is None or cached.header == digest:
            return
        self._unpin(cached)
        cached.header = digest
        self._by_header[digest] = cached

    def _unpin(self, cached: CachedReading) -> None:
        digest = cached.header
        if digest is not None:
            cached.header = None
            if self._by_header.get(digest) is cached:
                del self._by_header[digest]
