"""The product's Prometheus metrics: what whoever runs the bot graphs and alerts on.

Each ``Metrics`` holds its own ``CollectorRegistry``, not ``prometheus_client``'s global one: the
tests (and any process that opens more than one app) would otherwise register the same names
twice, and one app's figures would show in another's ``/metrics``.

Where the figures come from, so that nothing is polled:

- bot turns: ``Metrics`` listens to the generation queue like any platform (``turn_started``,
  the first ``turn_progress``, ``turn_finished``), as ``bench.harness.TurnTimings`` does;
- tokens, the turns being written, the model and the worker: ``GenerationQueue.health()``, read
  when ``/metrics`` is scraped;
- jobs open in the table (the whole deployment's queue, on PostgreSQL every process's): one read
  per scrape, in ``exposition``;
- database failures: ``Database.on_failure``, which reports every transaction that failed, in
  this process, once (``storage/`` imports nothing of ``bot/``: it only calls back);
- platform interactions: the adapters time each one until it is acknowledged (``interaction``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from bot.generation.queue import GenerationQueue, QueueHealth
from bot.jobs import JobSpec
from bot.results import Result
from storage import queries as q
from storage.database import Database

__all__ = ["ACK_BUCKETS", "TURN_BUCKETS", "Acknowledgement", "Metrics"]

log = logging.getLogger(__name__)

# Seconds, for the first text and the whole of a bot turn: a small model on a CPU shows its first
# words in a fraction of a second to a few seconds, a long passage under load takes minutes.
TURN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
# Seconds until a platform is told "got it": milliseconds normally, 2 s is the "working on it"
# margin (ACK_MARGIN_S), 3 s Discord's and Slack's deadline.
ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
SCRAPE_READ_TIMEOUT_S = 2.0  # a scrape's read of the job table; past it the jobs gauge is left out


class Acknowledgement:
    """One platform interaction, timed from its arrival until the platform was told "got it"."""

    def __init__(self, observe: Callable[[float], None]) -> None:
        self._observe = observe
        self._began = time.monotonic()
        self._told = False

    def told(self) -> None:
        """The platform has its acknowledgement now; only the first call counts."""
        if not self._told:
            self._told = True
            self._observe(time.monotonic() - self._began)


class Metrics:
    """The metrics of one process's app, on a registry of their own (see the module docstring).

    ``watch`` ties it to the database and the queue it reports on, and makes it one of the queue's
    listeners (in ``open_app``, before any platform's: a turn's end is counted before it is shown).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # memory, CPU, open files: the model's process too
        per_platform = ("platform",)
        self.turns_started = Counter(
            "storybot_turns_started", "Bot turns this process began writing", per_platform, registry=self.registry
        )
        self.turns_finished = Counter(
            "storybot_turns_finished",
            "Bot turns that ended with a passage (or candidates for a vote)",
            per_platform,
            registry=self.registry,
        )
        self.turns_failed = Counter(
            "storybot_turns_failed",
            "Bot turns that ended with an error: timed out, nothing written, withheld by the checks, "
            "the model unavailable, not stored",
            per_platform,
            registry=self.registry,
        )
        self.turns_cancelled = Counter(
            "storybot_turns_cancelled",
            "Bot turns withdrawn while being written (undo, retry, end)",
            per_platform,
            registry=self.registry,
        )
        self.first_text = Histogram(
            "storybot_turn_first_text_seconds",
            "From a bot turn's start to its first text shown in the channel",
            per_platform,
            buckets=TURN_BUCKETS,
            registry=self.registry,
        )
        self.turn_time = Histogram(
            "storybot_turn_seconds",
            "From a bot turn's start to its outcome (stored, failed or withdrawn)",
            per_platform,
            buckets=TURN_BUCKETS,
            registry=self.registry,
        )
        self.acknowledgements = Histogram(
            "storybot_interaction_ack_seconds",
            "Platform interactions awaiting an acknowledgement (commands and clicks; Slack's message events "
            "too), from their arrival until the platform was told they were received; _count counts them",
            per_platform,
            buckets=ACK_BUCKETS,
            registry=self.registry,
        )
        self.database_errors = Counter(
            "storybot_database_errors",
            "Database transactions that failed: busy (contended past database.write_deadline_s), "
            "conflict (two writers raced), error (anything else, a lost connection included)",
            ("kind",),
            registry=self.registry,
        )
        self._db: Database | None = None
        self._jobs: Mapping[str, int] | None = None  # the last scrape's read of the job table
        self._began: dict[int, float] = {}  # job id -> when its turn began, until it ends
        self._shown: set[int] = set()  # turns that have shown their first text

    def watch(self, db: Database, queue: GenerationQueue | None = None) -> None:
        """Count ``db``'s failed transactions, report its open jobs and, given one, ``queue``'s figures
        and turns. A process without a queue (the web archive) watches the database alone."""
        self._db = db
        db.on_failure(lambda kind: self.database_errors.labels(kind).inc())
        self.registry.register(_JobTable(lambda: self._jobs))
        if queue is not None:
            self.registry.register(_QueueFigures(queue.health))
            queue.add_listener(self)

    def interaction(self, platform: str) -> Acknowledgement:
        """Start timing an interaction that just arrived; call ``told()`` on the answer once the
        platform has its acknowledgement."""
        return Acknowledgement(self.acknowledgements.labels(platform).observe)

    async def exposition(self) -> bytes:
        """Everything, in the Prometheus text format, with the job table read now."""
        jobs = None
        if self._db is not None:
            try:
                async with asyncio.timeout(SCRAPE_READ_TIMEOUT_S):
                    jobs = await self._db.transaction(q.open_job_counts, write=False)
            except Exception as error:  # the scrape answers all the same (a failed read is counted by on_failure)
                log.debug("could not read the job table for the metrics: %s", error)
        # Set and read with no await between: scrapes at once each report their own read.
        self._jobs = jobs
        return generate_latest(self.registry)

    # ------------------------------------------------------------------ the queue listener

    async def turn_started(self, job: JobSpec) -> None:
        self.turns_started.labels(job.channel.platform).inc()
        self._began[job.job_id] = time.monotonic()

    async def turn_progress(self, job: JobSpec, text: str) -> None:
        self._first_text(job)

    async def turn_finished(self, job: JobSpec, result: Result | None) -> None:
        """Count a turn this process began, at its first end; a late showing of a turn (this
        process's, again, or one a dead process left unshown) counts nothing. A passage that
        streamed nothing before it was done (a short one, candidates for a vote) shows its first
        text now."""
        if result is not None and result.ok:
            self._first_text(job)
        began = self._began.pop(job.job_id, None)
        self._shown.discard(job.job_id)
        if began is None:
            return
        platform = job.channel.platform
        self.turn_time.labels(platform).observe(time.monotonic() - began)
        if result is None:
            self.turns_cancelled.labels(platform).inc()
        elif result.ok:
            self.turns_finished.labels(platform).inc()
        else:
            self.turns_failed.labels(platform).inc()

    def _first_text(self, job: JobSpec) -> None:
        """The turn's first text is shown now: its time, once."""
        began = self._began.get(job.job_id)
        if began is not None and job.job_id not in self._shown:
            self._shown.add(job.job_id)
            self.first_text.labels(job.channel.platform).observe(time.monotonic() - began)


class _QueueFigures(Collector):
    """The queue's own figures, read from ``GenerationQueue.health()`` at each scrape."""

    def __init__(self, health: Callable[[], QueueHealth]) -> None:
        self._health = health

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        now = self._health()
        yield CounterMetricFamily(
            "storybot_tokens_generated",
            "Tokens the models wrote in this process (every attempt and recap), counted by the model's "
            "tokenizer (estimated from bytes for an OpenAI-compatible server without a local one)",
            value=now.tokens_written,
        )
        yield GaugeMetricFamily(
            "storybot_turns_running", "Bot turns this process is writing now", value=now.turns_running
        )
        yield GaugeMetricFamily(
            "storybot_model_ready",
            "1 once the default model is loaded (or its server answered)",
            value=float(now.model_ready),
        )
        yield GaugeMetricFamily(
            "storybot_generation_worker_failing",
            "1 while the generation worker is failing (or not running)",
            value=float(not now.healthy),
        )
        yield CounterMetricFamily(
            "storybot_generation_worker_errors", "Errors the generation worker survived", value=now.errors
        )
        yield CounterMetricFamily(
            "storybot_generation_worker_restarts", "Times the generation worker was started again", value=now.restarts
        )


class _JobTable(Collector):
    """The jobs open in the table, as ``Metrics.exposition`` last read them (nothing when it could not)."""

    def __init__(self, jobs: Callable[[], Mapping[str, int] | None]) -> None:
        self._jobs = jobs

    def collect(self) -> Iterable[GaugeMetricFamily]:
        jobs = self._jobs()
        if jobs is None:
            return
        family = GaugeMetricFamily(
            "storybot_queue_jobs",
            "Jobs open in the database, every process's: pending (waiting for a writer), running, voting "
            "(candidates written, the channel voting); pending + running is the queue's depth",
            labels=("status",),
        )
        for status, count in jobs.items():
            family.add_metric((status,), count)
        yield family
