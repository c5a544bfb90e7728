"""The openai backend against a fake OpenAI-compatible server on loopback that streams SSE.

The fake runs in the test's event loop (aiohttp); the backend is blocking, as in the queue's
worker thread, so the tests call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from bot import commands as c
from bot.app import open_app
from bot.config import Config
from bot.context import CHAT_SYSTEM
from bot.generation.backend import GenerationRequest, ModelUnavailable, Sampling
from bot.generation.batcher import Batcher
from bot.generation.openai_backend import OpenAIBackend
from bot.identity import Actor, ChannelRef
from storage.models import Passage
from tests.conftest import TurnRecorder, make_config
from tests.fake_openai import Answer, FakeOpenAI, running_fake_openai
from tests.waiting import until

API_KEY = "sk-test-not-a-real-key"
STORY = "Title: The Lighthouse\n\nThe keeper climbed the stairs at dusk.\n\n"


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with running_fake_openai() as server:
        yield server


def backend_for(tmp_path: Path, base_url: str, **settings: str) -> OpenAIBackend:
    env = {
        "STORYBOT_MODEL_BACKEND": "openai",
        "STORYBOT_MODEL_NAME": str(tmp_path / "no-local-model"),
        "STORYBOT_OPENAI_BASE_URL": base_url,
        "STORYBOT_OPENAI_MODEL": "served-model",
        "STORYBOT_OPENAI_RETRY_BACKOFF_S": "0.01",
        **{f"STORYBOT_{key.upper()}": value for key, value in settings.items()},
    }
    return OpenAIBackend(make_config(tmp_path, env))


def app_config(tmp_path: Path, base_url: str, **settings: str) -> Config:
    """The whole app on a SQLite file, writing through the fake server, streaming and taking
    turns without pauses; ``settings`` as for ``backend_for``."""
    env = {
        "STORYBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'stories.db'}",
        "STORYBOT_MODEL_BACKEND": "openai",
        "STORYBOT_MODEL_NAME": str(tmp_path / "no-local-model"),
        "STORYBOT_OPENAI_BASE_URL": base_url,
        "STORYBOT_OPENAI_MODEL": "served-model",
        "STORYBOT_GENERATION_STREAM_INTERVAL_S": "0",
        "STORYBOT_STORY_PASSAGES_PER_MINUTE": "0",
        **{f"STORYBOT_{key.upper()}": value for key, value in settings.items()},
    }
    return make_config(tmp_path, env)


def request(prompt: str = STORY, *, stops: tuple[str, ...] = (), seen: list[str] | None = None) -> GenerationRequest:
    sampling = Sampling(
        temperature=0.7, top_k=40, top_p=0.9, repetition_penalty=1.2, max_new_tokens=64, min_new_tokens=8
    )
    on_text = seen.append if seen is not None else None
    return GenerationRequest(prompt, sampling, stops, on_text)


async def ready(backend: OpenAIBackend) -> OpenAIBackend:
    """Load first (the tokenizer look-up imports transformers) so that timings measure only the request."""
    await asyncio.to_thread(backend.load)
    return backend


async def generate(backend: OpenAIBackend, *requests: GenerationRequest) -> list[str]:
    return await asyncio.to_thread(backend.generate, list(requests))


async def test_text_streams_in_growing_pieces_and_arrives_whole(fake: FakeOpenAI, tmp_path: Path) -> None:
    backend = backend_for(tmp_path, fake.url)
    seen: list[str] = []
    assert await generate(backend, request(seen=seen)) == ["The lamp was cold, and the sea was loud."]
    assert seen == [
        "The lamp",
        "The lamp was cold",
        "The lamp was cold, and the sea",
        "The lamp was cold, and the sea was loud.",
    ]


async def test_the_request_carries_the_prompt_sampling_stops_and_key(fake: FakeOpenAI, tmp_path: Path) -> None:
    backend = backend_for(tmp_path, fake.url, openai_api_key=API_KEY)
    stops = tuple(f"\n{name}:" for name in ("Ann", "Bob", "Cat", "Dan", "Eve", "Fay"))
    await generate(backend, request(stops=stops))
    sent = fake.requests[0]
    assert sent["path"] == "/v1/completions"
    assert sent["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert sent["body"] == {
        "model": "served-model",
        "prompt": STORY,
        "stream": True,
        "max_tokens": 64,
        "temperature": 0.7,
        "top_p": 0.9,
        "stop": list(stops[:4]),  # OpenAI's limit; the rest are checked by the backend
        "top_k": 40,
        "repetition_penalty": 1.2,
        "min_tokens": 8,
    }


async def test_without_extra_sampling_only_openai_fields_are_sent(fake: FakeOpenAI, tmp_path: Path) -> None:
    backend = backend_for(tmp_path, fake.url, openai_send_extra_sampling="false")
    await generate(backend, request())
    body = fake.requests[0]["body"]
    assert set(body) == {"model", "prompt", "stream", "max_tokens", "temperature", "top_p"}
    assert "Authorization" not in fake.requests[0]["headers"]


async def test_a_stop_text_beyond_the_servers_four_ends_the_passage_here(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.pieces = lambda body: ["The door opened.", "\nFa", "y: hello", " and more", " text"]
    fake.delay_s = 0.05
    backend = backend_for(tmp_path, fake.url)
    stops = tuple(f"\n{name}:" for name in ("Ann", "Bob", "Cat", "Dan", "Eve", "Fay"))
    seen: list[str] = []
    assert await generate(backend, request(stops=stops, seen=seen)) == ["The door opened."]
    assert all("Fay:" not in text for text in seen)
    # The client hung up: the rest of the stream was not read.
    await until(lambda: fake.disconnects == 1, "the client to hang up the stream", timeout=3)


async def test_the_chat_endpoint_sends_the_instruction_then_the_story_and_the_request(
    fake: FakeOpenAI, tmp_path: Path
) -> None:
    backend = backend_for(tmp_path, fake.url, openai_endpoint="chat")
    later_story = STORY + "She lit the wick.\n\n"
    assert await generate(backend, request(), request(later_story)) == ["The lamp was cold, and the sea was loud."] * 2
    first, second = (sent["body"] for sent in sorted(fake.requests, key=lambda r: len(json.dumps(r["body"]))))
    assert {sent["path"] for sent in fake.requests} == {"/v1/chat/completions"}
    # Byte-stable prefix: the second turn's request starts with exactly the first one's story.
    assert first["messages"] == [
        {"role": "system", "content": CHAT_SYSTEM},
        {"role": "user", "content": f"{STORY.rstrip()}\n\nWrite the next passage of the story."},
    ]
    assert second["messages"][0] == first["messages"][0]
    assert second["messages"][1]["content"].startswith(STORY)


async def test_the_chat_endpoint_asks_in_the_storys_language(fake: FakeOpenAI, tmp_path: Path) -> None:
    backend = backend_for(tmp_path, fake.url, openai_endpoint="chat")
    spanish = "Title: La casa\n\nLa casa de los relojes estaba en silencio, y el reloj del salón se paró.\n\n"
    await generate(backend, request(spanish))
    (sent,) = fake.requests
    assert sent["body"]["messages"][1]["content"].endswith("Escribe el siguiente pasaje de la historia, en español.")
    # The instruction's tokens come out of the prompt's budget.
    assert backend.context_length < fake.max_model_len


async def test_a_connection_dropped_mid_stream_keeps_the_text_received(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.answers = [Answer(drop_after=2)]
    backend = backend_for(tmp_path, fake.url)
    seen: list[str] = []
    assert await generate(backend, request(seen=seen)) == ["The lamp was cold"]
    assert seen[-1] == "The lamp was cold"
    assert len(fake.requests) == 1  # no second attempt that would replace what people saw


async def test_a_connection_dropped_before_any_text_is_retried(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.answers = [Answer(drop_after=0)]
    backend = backend_for(tmp_path, fake.url)
    assert await generate(backend, request()) == ["The lamp was cold, and the sea was loud."]
    assert len(fake.requests) == 2


async def test_server_errors_are_retried_with_backoff_then_succeed(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.answers = [Answer(status=500), Answer(status=429, retry_after="0.2")]
    backend = await ready(backend_for(tmp_path, fake.url, openai_retries="2"))
    started = time.monotonic()
    assert await generate(backend, request()) == ["The lamp was cold, and the sea was loud."]
    assert len(fake.requests) == 3
    assert time.monotonic() - started >= 0.2  # the server's Retry-After was honoured


async def test_a_server_that_keeps_failing_gives_one_clear_line(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.answers = [Answer(status=500)] * 3
    backend = backend_for(tmp_path, fake.url, openai_retries="2")
    with pytest.raises(ModelUnavailable) as raised:
        await generate(backend, request())
    assert len(fake.requests) == 3
    message = str(raised.value)
    assert "\n" not in message
    assert message == (
        f"The model server at {fake.url} failed 3 times (HTTP 500: scripted failure 500); "
        "try again later, or check the server's log."
    )


async def test_a_rejected_key_is_not_retried(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.answers = [Answer(status=401)]
    backend = backend_for(tmp_path, fake.url, openai_api_key="wrong")
    with pytest.raises(ModelUnavailable, match="Check STORYBOT_OPENAI_API_KEY") as raised:
        await generate(backend, request())
    assert len(fake.requests) == 1
    assert "wrong" not in str(raised.value)


async def test_a_refused_extra_field_points_at_the_setting(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.answers = [Answer(status=400, message="Unrecognized request argument supplied: top_k")]
    backend = backend_for(tmp_path, fake.url)
    with pytest.raises(ModelUnavailable) as raised:
        await generate(backend, request())
    assert len(fake.requests) == 1
    assert str(raised.value) == (
        f"The model server at {fake.url} refused the request (HTTP 400: Unrecognized request argument "
        "supplied: top_k 400). If the server does not take vLLM's extra sampling fields, "
        "set STORYBOT_OPENAI_SEND_EXTRA_SAMPLING=false."
    )


async def test_a_server_that_is_not_listening_fails_fast_and_clearly(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    backend = backend_for(tmp_path, url)
    started = time.monotonic()
    with pytest.raises(ModelUnavailable) as raised:
        await generate(backend, request())
    assert time.monotonic() - started < 2
    message = str(raised.value)
    assert message.startswith(f"Cannot reach the model server at {url}: ")
    assert message.endswith("Check STORYBOT_OPENAI_BASE_URL and that the server is running.")
    assert "\n" not in message


async def test_cancelling_closes_the_stream(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.pieces = lambda body: [f" word{i}" for i in range(100)]
    fake.delay_s = 0.05  # five seconds for the whole passage
    backend = await ready(backend_for(tmp_path, fake.url))
    job = request()
    job.on_text = lambda text: job.cancelled.set()
    started = time.monotonic()
    [text] = await generate(backend, job)
    assert time.monotonic() - started < 1
    assert text == " word0"
    await until(lambda: fake.disconnects == 1, "the client to hang up the stream", timeout=3)


async def test_cancelling_while_the_server_is_silent_returns_at_once(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.answers = [Answer(stall_s=5)]
    backend = await ready(backend_for(tmp_path, fake.url))
    job = request()
    threading.Timer(0.3, job.cancelled.set).start()
    started = time.monotonic()
    assert await generate(backend, job) == [""]
    assert time.monotonic() - started < 1.5
    await until(lambda: fake.disconnects == 1, "the client to hang up the stream", timeout=3)


async def test_one_call_sends_its_requests_at_once(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.pieces = lambda body: [body["prompt"].split()[-1], " replied."]
    fake.delay_s = 0.3
    backend = await ready(backend_for(tmp_path, fake.url))
    started = time.monotonic()
    texts = await generate(backend, *(request(f"Story of {name}") for name in ("Ann", "Bob", "Cat")))
    assert texts == ["Ann replied.", "Bob replied.", "Cat replied."]  # in the order asked
    assert fake.max_in_flight == 3
    assert time.monotonic() - started < 1.5  # one after another would take 1.8 s


async def test_a_request_handed_over_mid_call_is_sent_at_once_and_answered_on_its_own(
    fake: FakeOpenAI, tmp_path: Path
) -> None:
    fake.pieces = lambda body: [body["prompt"].split()[-1], " replied."]
    fake.delay_s = 0.3
    backend = await ready(backend_for(tmp_path, fake.url))
    done: list[str] = []
    first, joining = request("Story of Ann"), request("Story of Bob")
    first.on_done = joining.on_done = done.append
    offers = [[joining]]
    texts = await asyncio.to_thread(backend.generate, [first], lambda: offers.pop() if offers else [])
    assert texts == ["Ann replied."]  # a joined request's text goes to its on_done only
    assert sorted(done) == ["Ann replied.", "Bob replied."]
    assert fake.max_in_flight == 2


async def test_a_rejected_request_fails_only_its_own_turn(fake: FakeOpenAI, tmp_path: Path) -> None:
    """Through the queue's batcher: the server refuses one of two requests sent together."""
    fake.delay_s = 0.1
    fake.answers = [Answer(status=400, message="prompt too long")]
    batcher = Batcher(await ready(backend_for(tmp_path, fake.url)), max_batch=8)
    results = await asyncio.gather(batcher.generate(request()), batcher.generate(request()), return_exceptions=True)
    failed = [r for r in results if isinstance(r, ModelUnavailable)]
    assert len(failed) == 1 and "prompt too long" in str(failed[0])
    assert [r for r in results if isinstance(r, str)] == ["The lamp was cold, and the sea was loud."]


async def test_context_length_comes_from_the_server_unless_configured(fake: FakeOpenAI, tmp_path: Path) -> None:
    assert await asyncio.to_thread(lambda: backend_for(tmp_path, fake.url).context_length) == 2048
    configured = backend_for(tmp_path, fake.url, model_context_length="1000")
    assert await asyncio.to_thread(lambda: configured.context_length) == 1000


async def test_tokens_are_counted_with_the_local_tokenizer_or_estimated(
    fake: FakeOpenAI, tmp_path: Path, tiny_model_dir: Path
) -> None:
    from transformers import AutoTokenizer

    text = "The keeper climbed the stairs at dusk. Übermäßig."
    estimated = backend_for(tmp_path, fake.url)
    assert await asyncio.to_thread(estimated.count_tokens, text) == math.ceil(len(text.encode()) / 3)
    with_tokenizer = backend_for(tmp_path, fake.url, model_name=str(tiny_model_dir))
    expected = len(AutoTokenizer.from_pretrained(tiny_model_dir)(text, add_special_tokens=False)["input_ids"])
    assert await asyncio.to_thread(with_tokenizer.count_tokens, text) == expected


async def test_a_bot_turn_through_the_app_stores_the_streamed_passage(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.pieces = lambda body: ["The lamp", " was cold.", " The sea", " was loud.", " And then"]
    config = app_config(tmp_path, fake.url, model_max_new_tokens="16")
    turns = TurnRecorder()
    channel, alice = ChannelRef("test", "guild", "harbour"), Actor("u-alice", "Alice")
    async with open_app(config) as app:
        app.queue.add_listener(turns)
        started = await app.sessions.handle(
            channel, alice, c.parse('/story start "Lighthouse" The keeper climbed the stairs.')
        )
        result = await turns.wait(started.job_id, timeout=30)
        assert result is not None and result.ok and result.passage is not None
        async with app.db.read() as tx:
            passages = list((await tx.execute(select(Passage).order_by(Passage.seq))).scalars())
    assert [p.author_kind for p in passages] == ["human", "bot"]
    assert passages[1].text == "The lamp was cold. The sea was loud."  # the unfinished sentence trimmed
    assert passages[1].generation["backend"] == "openai"
    assert turns.progress[started.job_id]
    assert "The keeper climbed the stairs." in fake.requests[0]["body"]["prompt"]


async def first_passage(fake: FakeOpenAI, tmp_path: Path, answers: list[str], start: str) -> str:
    """The bot's passage after ``start`` when the server answers ``answers`` in turn."""
    replies = iter(answers)
    fake.pieces = lambda body: [next(replies)]
    turns = TurnRecorder()
    channel, alice = ChannelRef("test", "guild", "harbour"), Actor("u-alice", "Alice")
    async with open_app(app_config(tmp_path, fake.url)) as app:
        app.queue.add_listener(turns)
        started = await app.sessions.handle(channel, alice, c.parse(start))
        result = await turns.wait(started.job_id, timeout=30)
    assert result is not None and result.passage is not None
    return result.passage.text


async def test_a_passage_in_another_language_than_the_story_is_written_again(fake: FakeOpenAI, tmp_path: Path) -> None:
    answers = [
        "The house was quiet and the clocks had stopped, and she was alone.",  # English
        "",  # empty
        "El reloj del salón se paró, y la casa se quedó en silencio.",
    ]
    start = '/story start "La casa" La casa de los relojes estaba en silencio y el reloj se paró.'
    assert await first_passage(fake, tmp_path, answers, start) == answers[2]
    assert len(fake.requests) == 3


async def test_an_assistant_talking_instead_of_telling_the_story_is_written_again(
    fake: FakeOpenAI, tmp_path: Path
) -> None:
    answers = ["I'd be happy to help you continue your story about the lighthouse.", "The lamp was cold."]
    start = '/story start "Lighthouse" The keeper climbed.'
    assert await first_passage(fake, tmp_path, answers, start) == "The lamp was cold."
    assert len(fake.requests) == 2


async def test_a_turn_cancelled_by_another_process_stops_at_the_next_heartbeat_and_shows_once(
    tmp_path: Path, fake: FakeOpenAI
) -> None:
    fake.pieces = lambda body: [f" Word{i}" for i in range(40)]
    fake.delay_s = 0.2  # an eight-second turn
    config = app_config(tmp_path, fake.url, model_max_new_tokens="64", generation_job_lease_s="0.4")
    turns = TurnRecorder()
    channel, alice = ChannelRef("test", "guild", "harbour"), Actor("u-alice", "Alice")
    async with open_app(config) as app:
        app.queue.add_listener(turns, shows="test")
        started = await app.sessions.handle(channel, alice, c.parse('/story start "Lighthouse" The keeper climbed.'))
        assert started.job_id is not None
        await turns.writing(started.job_id, timeout=30)
        # An undo handled by another process: only the database changes, nobody wakes this one.
        async with app.db.engine.begin() as connection:
            await connection.execute(
                text("UPDATE generation_jobs SET status = 'cancelled', show_after = CURRENT_TIMESTAMP")
            )
        begun = time.monotonic()
        assert await turns.wait(started.job_id, timeout=10) is None  # withdrawn
        assert time.monotonic() - begun < 2.0  # at the next heartbeat, not after the whole turn
        await asyncio.sleep(1.5)  # several sweeps of owed showings
    assert turns.outcomes[started.job_id] == [None]  # shown once, by the process that was writing it
