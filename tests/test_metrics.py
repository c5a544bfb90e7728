"""``GET /metrics`` and ``GET /healthz`` (adapters/web/ops.py over bot/metrics.py and bot/health.py):
fetched over loopback from a real app writing real turns with the tiny model, parsed by the
Prometheus client's own parser; a process whose database is gone; ``metrics.port`` in a real
``storybot discord`` process against the fake Discord."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from adapters.web.ops import ops_routes
from bot import commands as c
from bot.app import App
from bot.generation.queue import GenerationQueue
from bot.health import NOT_THIS_PROCESS
from bot.identity import Actor, ChannelRef
from bot.metrics import Metrics
from storage.database import Database
from tests import test_discord
from tests.conftest import TurnRecorder, sqlite_url
from tests.fake_discord import FakeDiscord
from tests.loopback import free_port, serve
from tests.test_discord import ALICE, bot_turn, discord_config, local_model, running
from tests.waiting import until

fake = test_discord.fake  # the fake Discord fixture
CHANNEL = ChannelRef("test", "guild", "tavern")
WRITER = Actor("u-alice", "Alice")
FAMILIES = {
    "storybot_turns_started": "counter",
    "storybot_turns_finished": "counter",
    "storybot_turns_failed": "counter",
    "storybot_turns_cancelled": "counter",
    "storybot_turn_first_text_seconds": "histogram",
    "storybot_turn_seconds": "histogram",
    "storybot_tokens_generated": "counter",
    "storybot_turns_running": "gauge",
    "storybot_queue_jobs": "gauge",
    "storybot_model_ready": "gauge",
    "storybot_generation_worker_failing": "gauge",
    "storybot_generation_worker_errors": "counter",
    "storybot_generation_worker_restarts": "counter",
    "storybot_interaction_ack_seconds": "histogram",
    "storybot_database_errors": "counter",
    "process_resident_memory_bytes": "gauge",
}


@asynccontextmanager
async def served(db: Database, queue: GenerationQueue | None, metrics: Metrics) -> AsyncIterator[str]:
    """The ops routes on a loopback port, as every server of the product mounts them; yields the base URL."""
    app = web.Application()
    app.add_routes(ops_routes(db, queue, metrics))
    runner, port = await serve(app)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def ops(app: tuple[App, TurnRecorder]) -> AsyncIterator[str]:
    running_app, _ = app
    async with served(running_app.db, running_app.queue, running_app.metrics) as url:
        yield url


async def scrape(base: str) -> dict[str, Metric]:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
        text = await response.text()
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: dict[str, Metric], sample: str, **labels: str) -> float:
    """One sample's value (0 when the series has none yet: a labelled counter nobody counted)."""
    family = families[max((name for name in families if sample.startswith(name)), key=len)]
    matches = [s.value for s in family.samples if s.name == sample and s.labels == labels]
    assert len(matches) <= 1, (sample, labels, family.samples)
    return matches[0] if matches else 0.0


async def health(base: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/healthz") as response:
        return response.status, await response.json()


# ------------------------------------------------------------------ a running app


async def test_metrics_count_a_real_bot_turn(app: tuple[App, TurnRecorder], ops: str) -> None:
    running_app, turns = app
    before = await scrape(ops)
    assert {name: family.type for name, family in before.items() if name in FAMILIES} == FAMILIES
    assert value(before, "storybot_turn_first_text_seconds_count", platform="test") == 0

    started = await running_app.sessions.handle(CHANNEL, WRITER, c.parse('/story start "Tavern" The door creaked.'))
    result = await turns.wait(started.job_id)
    assert result is not None and result.passage is not None

    after = await scrape(ops)
    assert value(after, "storybot_turns_started_total", platform="test") == 1
    assert value(after, "storybot_turns_finished_total", platform="test") == 1
    assert value(after, "storybot_turns_failed_total", platform="test") == 0
    assert value(after, "storybot_turn_first_text_seconds_count", platform="test") == 1
    assert value(after, "storybot_turn_seconds_count", platform="test") == 1
    whole = value(after, "storybot_turn_seconds_sum", platform="test")
    assert 0 < value(after, "storybot_turn_first_text_seconds_sum", platform="test") <= whole
    assert value(after, "storybot_tokens_generated_total") >= running_app.config.model.min_new_tokens
    assert value(after, "storybot_model_ready") == 1
    assert value(after, "storybot_turns_running") == 0
    assert value(after, "storybot_queue_jobs", status="pending") == 0
    assert value(after, "storybot_queue_jobs", status="running") == 0
    assert value(after, "storybot_database_errors_total", kind="busy") == 0


async def test_healthz_is_200_with_everything_up(app: tuple[App, TurnRecorder], ops: str) -> None:
    running_app, _ = app
    await until(lambda: running_app.queue.health().model_ready, "the tiny model to load")
    status, body = await health(ops)
    assert status == 200, body
    assert body["healthy"] is True
    assert body["database"]["ok"] is True
    assert body["model"] == {"ok": True, "detail": "loaded"}
    assert body["worker"]["worker_running"] is True
    assert body["queue"] == {"depth": 0, "pending": 0, "running": 0, "voting": 0}


# ------------------------------------------------------------------ a process without a queue (the web archive)


async def test_healthz_of_a_process_without_a_queue_is_its_database(database_url: str) -> None:
    db = Database(database_url)
    await db.migrate()
    metrics = Metrics()
    metrics.watch(db)
    try:
        async with served(db, None, metrics) as base:
            status, body = await health(base)
            assert status == 200, body
            assert body["model"] == {"ok": None, "detail": NOT_THIS_PROCESS}
            assert body["worker"] is None and body["queue"]["depth"] == 0
            families = await scrape(base)
            assert value(families, "storybot_queue_jobs", status="pending") == 0
            assert "storybot_turns_running" not in families  # no queue here to report on
    finally:
        await db.close()


@pytest.mark.parametrize("where", ["sqlite in a removed folder", "postgresql where no server listens"])
async def test_healthz_is_503_when_the_database_is_unreachable(where: str, tmp_path: Path) -> None:
    if where.startswith("sqlite"):
        db = Database(sqlite_url(tmp_path / "gone"))  # (the folder is made here...)
        shutil.rmtree(tmp_path / "gone")  # (...and removed before the first connection)
    else:
        db = Database(f"postgresql+asyncpg://storybot@127.0.0.1:{free_port()}/storybot")
    metrics = Metrics()
    metrics.watch(db)
    try:
        async with served(db, None, metrics) as base:
            status, body = await health(base)
            assert status == 503, body
            assert body["healthy"] is False and body["database"]["ok"] is False
            assert body["queue"] is None
            families = await scrape(base)  # still answers, without the job table it could not read
            assert "storybot_queue_jobs" not in families
            assert value(families, "storybot_database_errors_total", kind="error") >= 2  # the check and the scrape
    finally:
        await db.close()


# ------------------------------------------------------------------ metrics.port in `storybot discord`


async def test_storybot_discord_serves_metrics_on_metrics_port(
    tmp_path: Path, fake: FakeDiscord, tiny_model_dir: Path
) -> None:
    port = free_port()
    model = {**local_model(tiny_model_dir), "STORYBOT_METRICS_PORT": str(port)}
    base = f"http://127.0.0.1:{port}"
    async with running(discord_config(tmp_path, fake, model), fake):
        start = await fake.slash(ALICE, "start", title="The Lighthouse", opening="The keeper climbed the stairs.")
        await fake.answered(start)
        await bot_turn(fake)
        families = await scrape(base)
        assert value(families, "storybot_turns_finished_total", platform="discord") == 1
        assert value(families, "storybot_turn_first_text_seconds_count", platform="discord") == 1
        assert value(families, "storybot_interaction_ack_seconds_count", platform="discord") == 1
        assert 0 < value(families, "storybot_interaction_ack_seconds_sum", platform="discord") < 3
        status, body = await health(base)
        assert status == 200 and body["model"]["ok"] is True, body
    with pytest.raises(aiohttp.ClientConnectionError):  # stopped with the bot
        await scrape(base)
