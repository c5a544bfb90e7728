"""Whether this process can do its job now: what ``GET /healthz`` answers (``adapters/web/ops.py``).

Healthy means: the database answers a read within ``DATABASE_TIMEOUT_S``; and, in a process that
writes bot turns, the generation worker runs without failing and the model can write (the local
model is loaded, or the OpenAI-compatible server answers ``GET /models`` within
``MODEL_SERVER_TIMEOUT_S``). A process that writes no turns (the web archive, without a queue; a
``--no-worker`` chat process, whose queue claims none) says so in its model part, which never
fails it. Every figure comes with it, the queue's depth too (the
jobs open in the table, every process's).

What a failed check says is short and general (an exception's type, "no answer"): the endpoint may
face the internet beside Slack's, and the details are the process's log's business.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config
from bot.generation.queue import GenerationQueue, QueueHealth
from storage import queries as q
from storage.database import Database

__all__ = ["DATABASE_TIMEOUT_S", "MODEL_SERVER_TIMEOUT_S", "NOT_THIS_PROCESS", "Check", "Health", "check_health"]

log = logging.getLogger(__name__)

DATABASE_TIMEOUT_S = 2.0
MODEL_SERVER_TIMEOUT_S = 2.0
NOT_THIS_PROCESS = "not this process's job"
# What a model server answers when it is there but will not serve us, or is broken.
_REFUSED = (401, 403)


@dataclass(frozen=True, slots=True)
class Check:
    """One part's verdict, and a few words on it."""

    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Health:
    """The process's health: each part's check, the worker's figures, the jobs open in the table."""

    database: Check
    model: Check | None  # None: this process writes no bot turns
    worker: QueueHealth | None  # None: no generation queue in this process
    jobs: Mapping[str, int] | None  # open jobs by status; None when the database did not answer

    @property
    def healthy(self) -> bool:
        return (
            self.database.ok and (self.model is None or self.model.ok) and (self.worker is None or self.worker.healthy)
        )

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: the verdict, each part, and ``queue.depth`` (pending + running jobs)."""
        jobs = self.jobs
        return {
            "healthy": self.healthy,
            "database": asdict(self.database),
            "model": asdict(self.model) if self.model is not None else {"ok": None, "detail": NOT_THIS_PROCESS},
            "worker": self.worker.as_dict() if self.worker is not None else None,
            "queue": {"depth": jobs.get("pending", 0) + jobs.get("running", 0), **jobs} if jobs is not None else None,
        }


async def check_health(db: Database, queue: GenerationQueue | None = None) -> Health:
    """Check the database and, given the process's queue, the model and the worker."""
    database, jobs = await _check_database(db)
    if queue is None:
        return Health(database, None, None, jobs)
    worker = queue.health()
    if not queue.claims:  # a chat process (--no-worker): the workers write, the model is theirs
        return Health(database, None, worker, jobs)
    model = await _check_model_server(queue.config) if queue.config.model.backend == "openai" else _local(worker)
    return Health(database, model, worker, jobs)


async def _check_database(db: Database) -> tuple[Check, dict[str, int] | None]:
    """``SELECT 1`` and the open jobs, in one short read."""

    async def probe(tx: AsyncSession) -> dict[str, int]:
        await tx.execute(text("SELECT 1"))
        return await q.open_job_counts(tx)

    began = time.monotonic()
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT_S):
            jobs = await db.transaction(probe, write=False)
    except TimeoutError:
        return Check(False, f"no answer within {DATABASE_TIMEOUT_S:g} s"), None
    except Exception as error:  # whatever the driver raises, the database is not there for us
        log.debug("health check: the database failed: %s", error)
        return Check(False, f"failed ({type(error).__name__})"), None
    return Check(True, f"answered in {(time.monotonic() - began) * 1000:.0f} ms"), jobs


def _local(worker: QueueHealth) -> Check:
    return Check(True, "loaded") if worker.model_ready else Check(False, "not loaded (yet)")


async def _check_model_server(config: Config) -> Check:
    """Whether the OpenAI-compatible server answers ``GET /models`` (as the backend asks when it loads)."""
    settings = config.openai
    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    try:
        async with httpx.AsyncClient(headers=headers, timeout=MODEL_SERVER_TIMEOUT_S) as client:
            response = await client.get(f"{settings.base_url.rstrip('/')}/models")
    except httpx.HTTPError as error:
        log.debug("health check: the model server failed: %s", error)
        return Check(False, f"the model server did not answer ({type(error).__name__})")
    if response.status_code in _REFUSED or response.status_code >= 500:
        return Check(False, f"the model server answered {response.status_code}")
    return Check(True, "the model server answers")
