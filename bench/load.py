"""The bot at scale, on one machine: two Slack chat processes and two generation workers on
PostgreSQL, a burst of channels writing at once, and a worker killed mid-burst.

    storybot bench load [--channels 200] [--turns 5] [--quick] [--tps 40] [--latency-ms 300]
                        [--tokens 40] [--openai-url URL] [--admin-url URL] [--json]

Everything runs on loopback: ``storybot slack --http --no-worker`` twice (the chat side: Bolt,
the rules, the platform's messages), ``storybot worker`` twice (the generation queue, claiming
turns from the job table with ``SKIP LOCKED``, woken by ``NOTIFY``), on a fresh PostgreSQL
database; Slack's Web API faked in this process (``tests.fake_slack``, the one the tests use);
and the model either a fake OpenAI-compatible server here that streams ``--tokens`` words at
``--tps`` words a second after ``--latency-ms`` (the shape of a busy vLLM or llama.cpp server),
or a real one (``--openai-url``).

Each of ``--channels`` channels starts a story (free mode) through a signed slash command to one
of the chat processes (alternating), then asks for ``--turns`` bot turns in a row, each once the
last one is shown (a message with the passage's buttons). All channels go at once: the burst.
When a third of the turns are done, worker 1 is killed with SIGKILL, and started again two
seconds later: the turns it was writing run again once their lease runs out (the
``generation.job_lease_s`` here is short), on the other worker or on it.

Printed: acknowledgement times (every slash command's HTTP round trip; Slack's deadline is 3 s),
turns a minute, time to first streamed text (from the ``continue`` being acknowledged to the first
``chat.update`` with text in that channel), passages lost (turns asked and acknowledged but never
stored) and written twice (two passages of one job), turns re-run after the kill (jobs with more
than one attempt), and each process's peak memory (RSS). ``--json`` ends with one JSON object.
The chat processes, the workers, the fake model, the fake Slack and this driver share the
machine's CPUs; read the figures as what one small machine does with all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil

from bench.harness import cpu_info, percentile
from tests.fake_openai import FakeOpenAI, running_fake_openai
from tests.fake_slack import BOT_TOKEN, SIGNING_SECRET, FakeSlack, SignedSender, start_fake_slack
from tests.loopback import free_port

REPO = Path(__file__).resolve().parent.parent
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
SLACK_DEADLINE_S = 3.0
REQUEST_TIMEOUT_S = 30.0
WRITING = "✍️ storybot is writing…"  # adapters.common.wording.WRITING_PLACEHOLDER: no text yet
LEASE_S = 6.0  # generation.job_lease_s here: a killed worker's turns run again this soon
KILL_AT = 1 / 3  # of the turns done
FAILED = "(no answer)"
TRIGGERS = itertools.count(1)
RESTART_AFTER_S = 2.0
USERS = {f"U0LOAD{n}": {"name": f"writer{n}", "profile": {"display_name": f"Writer {n}"}} for n in range(1, 4)}
OPENING = "The lighthouse keeper climbed the stairs at dusk."


@dataclass
class Process:
    """One bot process of the run, and the most memory it held."""

    name: str
    args: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    peak_rss: int = 0

    def start(self, env: dict[str, str], folder: Path) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "adapters.cli", *self.args],
                cwd=folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def sample(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(psutil.Error):
                self.peak_rss = max(self.peak_rss, psutil.Process(self.popen.pid).memory_info().rss)

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait()

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class Run:
    """What the driver saw."""

    started: float = field(default_factory=time.monotonic)
    acks: list[float] = field(default_factory=list)
    late_acks: int = 0
    failed_requests: int = 0
    ttft: list[float] = field(default_factory=list)
    turns_done: int = 0
    turns_asked: int = 0
    turns_timed_out: int = 0
    killed_at: float | None = None


async def post(sender: SignedSender, run: Run, channel: str, user: str, text: str) -> str:
    """One signed ``/story <text>``; its acknowledgement's time is recorded; returns the ack's text."""
    # Ids unique across both chat processes' senders: a repeated trigger id is a redelivery to the bot.
    fields = sender.command_fields(text, user=user, channel=channel, trigger_id=f"trigger-{next(TRIGGERS)}")
    try:
        sent = await asyncio.wait_for(
            sender.send(urllib.parse.urlencode(fields).encode(), "application/x-www-form-urlencoded"),
            REQUEST_TIMEOUT_S,
        )
    except (aiohttp.ClientError, TimeoutError):
        run.failed_requests += 1
        return FAILED
    run.acks.append(sent.seconds)
    run.late_acks += sent.seconds > SLACK_DEADLINE_S or sent.status != 200
    with contextlib.suppress(ValueError):
        answer = json.loads(sent.body) if sent.body else {}
        return str(answer.get("text", "")) if isinstance(answer, dict) else sent.body
    return sent.body


@dataclass
class Channel:
    """What one channel's messages show, as the Web API calls made them."""

    finished: set[str] = field(default_factory=set)  # messages that showed a finished bot passage (ts)
    texts: list[float] = field(default_factory=list)  # when a bot turn's message showed text (not "writing…")
    posted: bool = False  # anything at all (the story's opening)


class Watcher:
    """Reads the fake Slack's calls as they come, once each, into each channel's state: a driver
    that scanned every message for every channel on every poll would itself be the bottleneck
    (and its event loop's lag would show up as the bot's acknowledgement time)."""

    def __init__(self, api: FakeSlack) -> None:
        self.api = api
        self.channels: dict[str, Channel] = {}
        self._seen = 0

    def channel(self, name: str) -> Channel:
        calls = self.api.calls
        for call in calls[self._seen : len(calls)]:
            if call.method not in ("chat.postMessage", "chat.update"):
                continue
            state = self.channels.setdefault(str(call.args.get("channel")), Channel())
            state.posted = True
            if call.method == "chat.update" and call.args.get("text") not in (None, "", WRITING):
                state.texts.append(call.at)
            if "story_retry" in str(call.args.get("blocks", "")):
                state.finished.add(str(call.args.get("ts", call.at)))
        self._seen = len(calls)
        return self.channels.setdefault(name, Channel())


async def write_channel(
    number: int, senders: list[SignedSender], watcher: Watcher, run: Run, turns: int, turn_timeout_s: float
) -> None:
    """One channel: start a story, then ``turns`` bot turns, each once the last is shown."""
    channel = f"C0LOAD{number}"
    sender = senders[number % len(senders)]
    users = list(USERS)
    await post(sender, run, channel, users[0], f'start "Load {number}" mode:free {OPENING}')
    # The answer may come after the acknowledgement (a busy process acknowledges first): the story
    # runs once its opening is posted in the channel.
    deadline = time.monotonic() + turn_timeout_s
    while not watcher.channel(channel).posted:
        if time.monotonic() > deadline:
            run.turns_timed_out += 1
            return
        await asyncio.sleep(0.05)
    for turn in range(turns):
        asked_at = time.monotonic()
        answer = await post(sender, run, channel, users[turn % len(users)], "continue")
        if answer.startswith("⚠️") or answer == FAILED:
            continue  # refused (the queue is full), or never answered: not a turn asked
        run.turns_asked += 1
        deadline = asked_at + turn_timeout_s
        first: float | None = None
        while time.monotonic() < deadline:
            state = watcher.channel(channel)
            first = first or next((at for at in state.texts if at >= asked_at), None)
            if len(state.finished) > turn:
                break
            await asyncio.sleep(0.05)
        else:
            run.turns_timed_out += 1
            return
        run.turns_done += 1
        if first is not None:
            run.ttft.append(first - asked_at)


@contextlib.asynccontextmanager
async def fresh_database(admin_url: str) -> AsyncIterator[str]:
    name = f"storybot_load_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def environment(database_url: str, slack_url: str, model_url: str, tokens: int) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("STORYBOT_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(
        {
            "STORYBOT_DATABASE_URL": database_url.replace("postgresql://", "postgresql+asyncpg://", 1),
            "STORYBOT_SLACK_BOT_TOKEN": BOT_TOKEN,
            "STORYBOT_SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "STORYBOT_SLACK_API_BASE_URL": f"{slack_url}/api/",
            "STORYBOT_MODEL_BACKEND": "openai",
            "STORYBOT_MODEL_NAME": "served-model",  # what the fake lists (a real server: its own name)
            "STORYBOT_OPENAI_BASE_URL": model_url,
            "STORYBOT_MODEL_MAX_NEW_TOKENS": str(tokens),
            "STORYBOT_GENERATION_JOB_LEASE_S": str(LEASE_S),
            "STORYBOT_GENERATION_MAX_PENDING": "1000",
            "STORYBOT_GENERATION_MAX_BATCH": "64",
            "STORYBOT_STORY_PASSAGES_PER_MINUTE": "0",
            "STORYBOT_LOGGING_LEVEL": "WARNING",
        }
    )
    return env


async def wait_ready(ports: list[int], processes: list[Process], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        for port in ports:
            while True:
                for process in processes:
                    if process.popen is not None and process.popen.poll() is not None:
                        raise SystemExit(f"{process.name} exited: {process.log.read_text(errors='replace')[-2000:]}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        if response.status in (200, 503):  # answering; the model is the workers'
                            break
                if time.monotonic() > deadline:
                    raise SystemExit(f"the chat process on port {port} did not answer in {timeout_s:.0f} s")
                await asyncio.sleep(0.2)


async def read_outcome(database_url: str) -> dict[str, int]:
    """What the job table and the passages say once the burst is over."""
    connection = await asyncpg.connect(database_url)
    try:
        twice = await connection.fetchval(
            "SELECT count(*) FROM (SELECT job_id FROM passages WHERE job_id IS NOT NULL"
            " GROUP BY job_id HAVING count(*) > 1) AS doubled"
        )
        rerun = await connection.fetchval("SELECT count(*) FROM generation_jobs WHERE attempts > 1")
        written = await connection.fetchval("SELECT count(*) FROM passages WHERE author_kind = 'bot'")
        asked = await connection.fetchval("SELECT count(*) FROM generation_jobs WHERE kind <> 'recap'")
        unfinished = await connection.fetchval(
            "SELECT count(*) FROM generation_jobs WHERE kind <> 'recap' AND status NOT IN ('done', 'cancelled')"
        )
    finally:
        await connection.close()
    return {"twice": twice, "rerun": rerun, "written": written, "jobs": asked, "unfinished": unfinished}


async def sample_memory(processes: list[Process], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for process in processes:
            process.sample()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def kill_one_worker(worker: Process, run: Run, total: int, env: dict[str, str], folder: Path) -> None:
    """SIGKILL ``worker`` once a third of the turns are done; start it again a little later."""
    while run.turns_done < total * KILL_AT:
        await asyncio.sleep(0.1)
    worker.kill()
    run.killed_at = time.monotonic() - run.started
    await asyncio.sleep(RESTART_AFTER_S)
    worker.start(env, folder)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    channels, turns = (30, 2) if args.quick else (args.channels, args.turns)
    api = FakeSlack(users=dict(USERS))
    slack_runner = await start_fake_slack(api)
    async with contextlib.AsyncExitStack() as stack:
        if args.openai_url:
            model_url = args.openai_url
        else:
            model: FakeOpenAI = await stack.enter_async_context(running_fake_openai())
            words = [" word" if n else "Word" for n in range(args.tokens)]
            model.pieces = lambda body: [*words, "."]
            model.delay_s = 1 / args.tps
            model.first_token_s = args.latency_ms / 1000
            model.max_model_len = 8192
            model_url = model.url
        database_url = await stack.enter_async_context(fresh_database(args.admin_url))
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="storybot-load-")))
        env = environment(database_url, api.url, model_url, args.tokens)
        subprocess.run(
            [sys.executable, "-m", "adapters.cli", "migrate"], cwd=folder, env=env, check=True, capture_output=True
        )
        ports = [free_port(), free_port()]
        chats = [
            Process(f"chat {n + 1}", ["slack", "--http", "--no-worker", "--host", "127.0.0.1", "--port", str(port)],
                    folder / f"chat{n + 1}.log")
            for n, port in enumerate(ports)
        ]  # fmt: skip
        workers = [Process(f"worker {n}", ["worker"], folder / f"worker{n}.log") for n in (1, 2)]
        processes = [*chats, *workers]
        for process in processes:
            process.start(env, folder)
            stack.callback(process.stop)
        await wait_ready(ports, processes)
        senders = [SignedSender(f"http://127.0.0.1:{port}/slack/events", api.url) for port in ports]
        run = Run()
        watcher = Watcher(api)
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_memory(processes, stop))
        killer = asyncio.create_task(kill_one_worker(workers[0], run, channels * turns, env, folder))
        await asyncio.gather(
            *(write_channel(n, senders, watcher, run, turns, args.turn_timeout) for n in range(1, channels + 1))
        )
        seconds = time.monotonic() - run.started
        killer.cancel()
        stop.set()
        await sampler
        outcome = await read_outcome(database_url)
        logs = {p.name: p.log.read_text(errors="replace") for p in processes}
        if run.turns_timed_out or run.failed_requests:
            for name, text in logs.items():  # what went wrong is in their logs, about to be deleted
                print(f"--- the end of {name}'s log:\n{text[-3000:]}", file=sys.stderr)
    await slack_runner.cleanup()
    acks_ms = [a * 1000 for a in run.acks]
    ttft_ms = [t * 1000 for t in run.ttft]
    return {
        **cpu_info(),
        "channels": channels,
        "turns_per_channel": turns,
        "model": args.openai_url or f"fake: {args.tokens} words at {args.tps}/s after {args.latency_ms} ms",
        "seconds": round(seconds, 1),
        "requests": len(run.acks),
        "failed_requests": run.failed_requests,
        "acks_over_3s": run.late_acks,
        "ack_p50_ms": round(percentile(acks_ms, 50), 1),
        "ack_p99_ms": round(percentile(acks_ms, 99), 1),
        "ack_max_ms": round(max(acks_ms, default=float("nan")), 1),
        "turns_asked": run.turns_asked,
        "turns_shown": run.turns_done,
        "turns_timed_out": run.turns_timed_out,
        "turns_per_min": round(run.turns_done / seconds * 60, 1),
        "ttft_p50_ms": round(percentile(ttft_ms, 50), 1),
        "ttft_p95_ms": round(percentile(ttft_ms, 95), 1),
        "worker_killed_at_s": round(run.killed_at, 1) if run.killed_at is not None else None,
        "passages_lost": max(0, run.turns_asked - outcome["written"]) + outcome["unfinished"],
        "passages_written_twice": outcome["twice"],
        "turns_rerun": outcome["rerun"],
        "peak_rss_mb": {p.name: round(p.peak_rss / 2**20) for p in processes},
        "log_errors": {name: text.count(" ERROR ") for name, text in logs.items()},
    }


def table(f: dict[str, Any]) -> str:
    rss = ", ".join(f"{name} {mb} MB" for name, mb in f["peak_rss_mb"].items())
    return "\n".join(
        [
            f"CPU: {f.get('cpu', '?')} ({f.get('cpus', '?')} cores)",
            f"model: {f['model']}",
            f"{f['channels']} channels × {f['turns_per_channel']} turns in {f['seconds']} s; "
            f"worker 1 killed at {f['worker_killed_at_s']} s and started again",
            f"acks: p50 {f['ack_p50_ms']} ms, p99 {f['ack_p99_ms']} ms, max {f['ack_max_ms']} ms; "
            f"{f['acks_over_3s']} over 3 s, {f['failed_requests']} failed, of {f['requests']}",
            f"turns: {f['turns_shown']} shown of {f['turns_asked']} asked ({f['turns_timed_out']} timed out); "
            f"{f['turns_per_min']} a minute",
            f"time to first streamed text: p50 {f['ttft_p50_ms']} ms, p95 {f['ttft_p95_ms']} ms",
            f"passages lost: {f['passages_lost']}; written twice: {f['passages_written_twice']}; "
            f"turns re-run after the kill: {f['turns_rerun']}",
            f"peak memory: {rss}",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="storybot bench load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=200)
    parser.add_argument("--turns", type=int, default=5, help="bot turns per channel")
    parser.add_argument("--quick", action="store_true", help="30 channels × 2 turns")
    parser.add_argument("--tps", type=float, default=40.0, help="the fake model's words a second, per stream")
    parser.add_argument("--latency-ms", type=float, default=300.0, help="the fake model's time to first word")
    parser.add_argument("--tokens", type=int, default=40, help="words per passage")
    parser.add_argument("--openai-url", help="a real OpenAI-compatible server (e.g. llama-server's /v1)")
    parser.add_argument("--admin-url", default=ADMIN_URL, help="a PostgreSQL database to create the run's in")
    parser.add_argument("--turn-timeout", type=float, default=180.0, help="seconds a turn may take to show")
    parser.add_argument("--json", action="store_true", help="end with one JSON object")
    args = parser.parse_args(argv)
    figures = asyncio.run(measure(args))
    print(table(figures))
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
