"""Engine set-up and the two kinds of transaction the core uses: short reads and short writes.

SQLite is the default and must behave well with many channels writing at once: WAL lets reads
run beside a writer, ``busy_timeout`` makes a second writer wait instead of failing, and every
writing transaction starts with ``BEGIN IMMEDIATE`` so that it takes the write lock up front
(a deferred transaction that upgrades from read to write can fail with "database is locked"
however long the timeout). PostgreSQL needs none of this; writers lock the story row instead.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

log = logging.getLogger(__name__)


class DatabaseUnavailable(Exception):
    """The database cannot be reached or set up; the message is one line and names it (no password)."""

_WRITE_OPTION = "storybot_write"
_MIGRATION_LOCK_ID = 0x5707B07  # any constant; serialises concurrent migrations on PostgreSQL


def normalise_url(url: str) -> URL:
    """Accept the URLs people paste (``sqlite:///x.db``, ``postgresql://...``) and pick async drivers."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseUnavailable(f"database.url {url!r} is not a database URL (sqlite:///file.db or postgresql://...)") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite" and parsed.get_driver_name() != "aiosqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend == "postgresql" and parsed.get_driver_name() != "asyncpg":
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif backend not in ("sqlite", "postgresql"):
        raise DatabaseUnavailable(f"database.url: only sqlite and postgresql are supported, got {backend!r}")
    return parsed


class Database:
    """Owns the engine; hands out ``read()`` and ``write()`` transactions."""

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        busy_timeout_ms: int = 5000,
        connect_args: dict[str, Any] | None = None,
    ) -> None:
        self.url = normalise_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite and self.url.database and self.url.database != ":memory:":
            Path(self.url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.engine: AsyncEngine = create_async_engine(
            self.url, echo=echo, connect_args=connect_args or {}, pool_pre_ping=not self.is_sqlite
        )
        if self.is_sqlite:
            _configure_sqlite(self.engine, busy_timeout_ms)
        self._reads = async_sessionmaker(self.engine, expire_on_commit=False)
        self._writes = async_sessionmaker(
            self.engine.execution_options(**{_WRITE_OPTION: True}), expire_on_commit=False
        )

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only transaction (a snapshot on both databases)."""
        async with self._reads() as session, session.begin():
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One short writing transaction: committed on exit, rolled back on any exception."""
        async with self._writes() as session, session.begin():
            yield session

    async def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (safe to call at every start).

        This is the first contact with the database, so a server that is down or a path that
        cannot be written is reported here, in one line.
        """
        from storage.migrate import upgrade_to_head

        try:
            async with self.engine.execution_options(**{_WRITE_OPTION: True}).begin() as conn:
                if not self.is_sqlite:
                    await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
                await conn.run_sync(upgrade_to_head)
        except (OSError, SQLAlchemyError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            shown = self.url.render_as_string(hide_password=True)
            raise DatabaseUnavailable(f"cannot use the database {shown}: {reason}") from error

    async def close(self) -> None:
        await self.engine.dispose()


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself, so writes can say IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
