"""The operator's notices: a run of refreshes refused because of the app's own client is one
ERROR line, reminders at most once a minute, and a line when it ends; apart from the run of
transient failures."""

from __future__ import annotations

import logging

import pytest

from fastapi_authkit.errors import ClientRefusedError
from fastapi_authkit.notices import Notices

from tests.support.clock import Clock


def test_a_run_of_client_refusals_is_one_error_with_reminders_and_an_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    notices = Notices(clock)
    refused = ClientRefusedError("HTTP 401 'invalid_client'", error="invalid_client")
    with caplog.at_level(logging.INFO, logger="fastapi_authkit"):
        for _ in range(5):
            notices.client_refused("refused: %s", refused, exc=refused)
            clock.advance(20)
        notices.refresh_failed("refresh failed transiently; session kept: %s", "down", exc=None)
        notices.refresh_answered()
        notices.client_refused("refused: %s", refused, exc=refused)
    log = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert log == [
        (logging.ERROR, "refused: HTTP 401 'invalid_client'"),
        (
            logging.WARNING,
            "refresh still refused: the auth server refuses this app's client (4 failures in "
            "a row, traceback at DEBUG); latest: refused: HTTP 401 'invalid_client'",
        ),
        (logging.WARNING, "refresh failed transiently; session kept: down"),
        (logging.WARNING, "refresh callback answers again after 1 transient failure(s) in a row"),
        (
            logging.WARNING,
            "the auth server accepts this app's client again after 5 refused refresh(es)",
        ),
        (logging.ERROR, "refused: HTTP 401 'invalid_client'"),  # a new run
    ]
    assert all(r.exc_info is None for r in caplog.records)
