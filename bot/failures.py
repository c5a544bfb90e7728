"""A background loop's run of failures, told once: the first failure with its traceback, the rest
quietly, and the recovery when it comes. The generation queue's worker and the turn reminders'
task keep one each, so a database that stays locked for an hour is one ERROR line, not thousands."""

from __future__ import annotations

import logging
import time

FIRST_BACKOFF_S = 0.5  # a loop's wait after a failure, doubled per failure in a row...
MAX_BACKOFF_S = 30.0  # ...up to this


class FailureRun:
    """The failures in a row of one loop (``what``: "the generation worker"), logged to ``log``
    (the loop's own logger). ``errors``, ``failing_since`` and ``last_error`` are for health checks,
    which may face the internet: ``last_error`` is the exception's type alone (a driver's message
    can name hosts, users and SQL); the log has the rest."""

    def __init__(self, what: str, log: logging.Logger) -> None:
        self.what = what
        self.log = log
        self.errors = 0
        self.failing_since: float | None = None
        self.last_error: str | None = None

    def failed(self, error: Exception) -> None:
        """Count and remember ``error``; log it with its traceback when it opens a run of failures."""
        self.errors += 1
        self.last_error = type(error).__name__
        if self.failing_since is None:
            self.failing_since = time.time()
            self.log.error("%s failed; it keeps retrying, with backoff", self.what, exc_info=error)
        else:
            self.log.debug("%s failed again: %s", self.what, f"{error!r}".splitlines()[0])

    def succeeded(self) -> None:
        """The loop did its work: a run of failures, if there was one, is over, and said so."""
        if self.failing_since is not None:
            self.log.info("%s works again after %.0f s", self.what, time.time() - self.failing_since)
            self.failing_since = None
