"""PostgreSQL's LISTEN/NOTIFY: how one process tells the others that the job table changed.

Several processes may share a PostgreSQL database: chat processes that show bot turns and
generation workers that write them. A commit that queues or cancels a turn, or that brings news
of a turn being written, says so on a channel with ``notify``: ``pg_notify`` inside the
transaction, so the word goes out with the commit and never for work that was rolled back. The
processes that care listen on a connection of their own (``Listener``) and look at the table at
once instead of at their next heartbeat.

The heartbeat stays as the safety net. A notification sent while a listener was reconnecting
is lost, so every (re)connection tells each subscriber that it may have missed something
(``missed``), and it looks at the table then.

SQLite serves one process, which wakes itself: there ``notify`` does nothing and
``listener_for`` gives no listener.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession

from storage.database import Database

__all__ = ["JOBS_CHANNEL", "TURNS_CHANNEL", "Listener", "listener_for", "notify"]

log = logging.getLogger(__name__)

JOBS_CHANNEL = "storybot_jobs"  # jobs to claim (queued, re-queued) or to stop (cancelled): for the workers
TURNS_CHANNEL = "storybot_turns"  # a turn a worker writes began, grew or ended: for the chat processes

CONNECT_TIMEOUT_S = 10.0
PING_EVERY_S = 30.0  # a connection that went quiet may be dead without anyone saying so: ask now and then
PING_TIMEOUT_S = 10.0
FIRST_WAIT_S = 5.0  # how long ``start`` waits for the first connection before carrying on without it
_FIRST_BACKOFF_S = 0.5
_MAX_BACKOFF_S = 30.0


async def notify(tx: AsyncSession, channel: str, payload: str = "") -> None:
    """Send ``payload`` on ``channel`` when ``tx`` commits (PostgreSQL; nothing on SQLite).

    PostgreSQL delivers a transaction's notifications after its commit, in commit order, and
    folds identical ones of one transaction into one. A payload must stay under 8,000 bytes:
    send what to look at (an id), never the data itself."""
    if tx.get_bind().dialect.name != "postgresql":
        return
    await tx.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload})


@dataclass(frozen=True, slots=True)
class _Subscription:
    heard: Callable[[str], None]  # called on the event loop with each notification's payload
    missed: Callable[[], None]  # called at each (re)connection: what was sent meanwhile is lost


class Listener:
    """A connection of its own that LISTENs on channels and hands each notification to its
    subscribers; it reconnects with backoff for as long as it runs, logging the first failure
    of a run, and pings a quiet connection now and then to notice one that died silently.

    Subscribe before ``start``. The callbacks run on the event loop and must be quick (set an
    event, start a task): they are called from the connection's reader."""

    def __init__(self, url: URL) -> None:
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._shown = url.render_as_string(hide_password=True)
        self._subscriptions: dict[str, list[_Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._connected = asyncio.Event()
        self._tried = asyncio.Event()  # the first connection was tried (made or failed)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def subscribe(self, channel: str, heard: Callable[[str], None], *, missed: Callable[[], None]) -> None:
        self._subscriptions.setdefault(channel, []).append(_Subscription(heard, missed))

    async def start(self) -> None:
        """Start listening; returns once the first connection is made, or after ``FIRST_WAIT_S``
        (it failed: the listener keeps trying in the background, and the heartbeats carry on)."""
        self._stopped.clear()
        self._task = asyncio.create_task(self._run(), name="notification-listener")
        try:
            await asyncio.wait_for(self._tried.wait(), FIRST_WAIT_S)
        except TimeoutError:
            pass

    async def stop(self) -> None:
        self._stopped.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        """Connect, listen until the connection is lost, and again; survive every error."""
        backoff, failing = _FIRST_BACKOFF_S, False
        while not self._stopped.is_set():
            try:
                await self._listen()
                backoff, failing = _FIRST_BACKOFF_S, False  # (it had connected; the connection ended)
            except Exception as error:  # the server down, a network failure, a bug: try again
                reason = f"{type(error).__name__}: {error}".splitlines()[0]
                if not failing:
                    log.warning("cannot listen for notifications on %s (%s); retrying", self._shown, reason)
                else:
                    log.debug("listening for notifications failed again: %s", reason)
                failing = True
            finally:
                self._connected.clear()
                self._tried.set()
            try:
                await asyncio.wait_for(self._stopped.wait(), backoff)
            except TimeoutError:
                pass
            backoff = min(backoff * 2, _MAX_BACKOFF_S)

    async def _listen(self) -> None:
        import asyncpg  # the driver the engine uses for PostgreSQL

        connection = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT_S)
        lost = asyncio.Event()
        try:
            connection.add_termination_listener(lambda _connection: lost.set())
            for channel in self._subscriptions:
                await connection.add_listener(channel, self._deliver)
            self._connected.set()
            self._tried.set()
            log.info("listening for notifications on %s", ", ".join(self._subscriptions))
            for subscriptions in self._subscriptions.values():
                for subscription in subscriptions:
                    subscription.missed()
            while not lost.is_set() and not self._stopped.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), PING_EVERY_S)
                except TimeoutError:
                    await connection.fetchval("SELECT 1", timeout=PING_TIMEOUT_S)
            if lost.is_set():
                log.warning("the notification connection to %s was lost; reconnecting", self._shown)
        finally:
            if not connection.is_closed():
                connection.terminate()

    def _deliver(self, _connection: Any, _pid: int, channel: str, payload: str) -> None:
        for subscription in self._subscriptions.get(channel, ()):
            try:
                subscription.heard(payload)
            except Exception:  # one subscriber's bug must not silence the others
                log.exception("a subscriber failed on a notification on %s", channel)


def listener_for(db: Database) -> Listener | None:
    """A listener on ``db``'s server; None on SQLite (one process: nobody to hear from)."""
    return None if db.is_sqlite else Listener(db.url)
