"""The revocation view on its own (pure: both clocks injected, no Redis): what it may answer
without asking the store, and when it must say "ask"."""

from __future__ import annotations

from fastapi_authkit.stores.view import RevocationView

from tests.support.clock import T0, Clock

LAG = 0.1
ABS = T0 + 3600  # the family's absolute expiry, on the caller's clock


def current_view() -> tuple[RevocationView, Clock]:
    """A subscribed view whose latest heartbeat has just come back."""
    real = Clock(1000.0)
    view = RevocationView(max_lag=LAG, size=100, monotonic=real)
    view.subscribed()
    view.confirm(real())
    return view, real


def test_nothing_known_means_ask() -> None:
    view, _ = current_view()
    assert view.lookup("f", T0) is None


def test_a_positive_is_trusted_while_a_heartbeat_proves_the_view_current() -> None:
    view, real = current_view()
    view.learn("f", ABS, view.ticket())
    assert view.lookup("f", T0) is True
    real.advance(LAG - 0.001)
    assert view.lookup("f", T0) is True
    real.advance(0.002)  # no heartbeat back for longer than max_lag
    assert view.lookup("f", T0) is None
    assert not view.current
    view.confirm(real())  # one comes back
    assert view.lookup("f", T0) is True


def test_a_heartbeat_proves_what_was_sent_before_it_not_when_it_came_back() -> None:
    view, real = current_view()
    view.learn("f", ABS, view.ticket())
    sent = real()
    real.advance(0.09)  # the heartbeat took 90 ms to come back
    view.confirm(sent)
    real.advance(0.011)
    assert view.lookup("f", T0) is None  # trusted until sent + max_lag, not arrival + max_lag


def test_a_revocation_message_turns_a_positive_into_a_lasting_negative() -> None:
    view, real = current_view()
    view.learn("f", ABS, view.ticket())
    view.revoked(["f", "g"])
    assert view.lookup("f", T0) is False
    assert view.lookup("g", T0) is False  # never seen live: still known revoked
    real.advance(3600)  # currency does not matter for a revocation: it is terminal
    assert view.lookup("f", T0) is False
    view.reset()
    assert view.lookup("f", T0) is False  # nor does losing the subscription


def test_the_absolute_expiry_is_refused_at_that_instant_without_a_message() -> None:
    view, _ = current_view()
    view.learn("f", ABS, view.ticket())
    assert view.lookup("f", ABS - 0.001) is True
    assert view.lookup("f", ABS) is False


def test_a_store_read_that_says_not_live_is_kept_unconditionally() -> None:
    view = RevocationView(max_lag=LAG, monotonic=Clock(0.0))  # never subscribed
    view.learn("f", None, view.ticket())
    assert view.lookup("f", T0) is False


def test_nothing_positive_is_learned_without_a_subscription() -> None:
    real = Clock(1000.0)
    view = RevocationView(max_lag=LAG, monotonic=real)
    assert view.ticket() is None
    view.learn("f", ABS, view.ticket())
    view.subscribed()
    view.confirm(real())
    assert view.lookup("f", T0) is None  # that read began before the subscription


def test_a_read_overtaken_by_a_message_is_not_kept() -> None:
    """The race: a store read says "live" while a revocation is on its way."""
    view, _ = current_view()
    ticket = view.ticket()  # taken before the read
    view.revoked(["other"])  # any message meanwhile (here another family's)
    view.learn("f", ABS, ticket)
    assert view.lookup("f", T0) is None  # asked again rather than trusted
    view.learn("f", ABS, view.ticket())
    assert view.lookup("f", T0) is True


def test_a_read_overtaken_by_its_own_revocation_stays_revoked() -> None:
    view, _ = current_view()
    ticket = view.ticket()
    view.revoked(["f"])
    view.learn("f", ABS, ticket)
    assert view.lookup("f", T0) is False
    view.learn("f", ABS, view.ticket())  # even a later read cannot revive it
    assert view.lookup("f", T0) is False


def test_a_reset_drops_every_positive_and_every_ticket() -> None:
    view, real = current_view()
    view.learn("f", ABS, view.ticket())
    ticket = view.ticket()
    view.reset()
    assert view.lookup("f", T0) is None
    assert view.ticket() is None
    view.subscribed()
    view.confirm(real())
    view.learn("g", ABS, ticket)  # a ticket from before the reset
    assert view.lookup("g", T0) is None
    assert view.lookup("f", T0) is None  # not back either: learned again from the store


def test_heartbeats_of_an_old_subscription_prove_nothing() -> None:
    view, real = current_view()
    view.reset()
    view.confirm(real())  # a late pong of the lost connection
    assert not view.current


def test_the_view_is_bounded() -> None:
    real = Clock(1000.0)
    view = RevocationView(max_lag=LAG, size=2, monotonic=real)
    view.subscribed()
    view.confirm(real())
    for name in "abc":
        view.learn(name, ABS, view.ticket())
    assert [view.lookup(name, T0) for name in "abc"] == [None, True, True]
    view.revoked(["x", "y", "z"])
    assert [view.lookup(name, T0) for name in "xyz"] == [None, False, False]
