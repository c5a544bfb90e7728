"""Slack acknowledgement times of a fresh ``storybot slack --http`` process, from its first second on.

    python -m bench.slack_acks [--model FOLDER] [--rate 20] [--channels 4] [--after 2] [--timeout 240]

Slack wants every slash command acknowledged within 3 seconds (the issue's target: a p99 under
1 s), and it does not wait for a freshly started bot to be ready: a deploy or a restart takes
traffic while the process still imports torch and transformers and loads the weights (in a
thread, in the background), and then writes its first turn. This benchmark starts a real bot
process and measures what Slack would see:

- the bot is started as ``python -m adapters.cli slack --http`` on a free loopback port, configured
  only through ``STORYBOT_*`` environment variables: a fresh SQLite file, the local backend on a
  local model (by default a random GPT-2 small, built once into ~/.cache/storybot/bench-gpt2-small
  as ``bench.generation`` does), and Slack's Web API faked on loopback in this process
  (``tests.fake_slack``);
- from the moment it is spawned, signed slash commands are posted to ``/slack/events`` at a
  steady rate, open loop (a slow answer never delays the next request). Refused connections
  before the port opens count as "not listening yet", not as samples. Once it listens: stories
  are started at once (the first in alternate mode with an opening, so the bot is asked for a
  turn right away, while the model is still loading), then ``status``, ``add`` and ``continue``
  across a handful of channels;
- ``GET /readyz`` is polled to see when the model is loaded (503 before, 200 after);
- it stops a couple of seconds after the first finished bot passage is shown in Slack (a message
  with the passage buttons), or at ``--timeout``.

An acknowledgement's time is the HTTP round trip of one signed POST, as the sender sees it. The
fake Slack and the sender share this process and the machine's CPUs with the bot, as a real
deployment's neighbours would not: on a small machine read the figures as a pessimistic bound.
It prints a short table, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import cpu_info, percentile
from tests.fake_slack import (
    BOT_TOKEN,
    SIGNING_SECRET,
    FakeSlack,
    Sent,
    SignedSender,
    start_fake_slack,
)
from tests.loopback import free_port

REPO = Path(__file__).resolve().parent.parent
# The model ``bench.generation`` builds (not imported from there: it imports torch at its top).
DEFAULT_MODEL_DIR = Path.home() / ".cache" / "storybot" / "bench-gpt2-small"
TARGET_P99_S = 1.0
SLACK_DEADLINE_S = 3.0
REQUEST_TIMEOUT_S = 30.0  # a request still unanswered after this is recorded as "timeout"
READY_POLL_S = 0.1
WATCH_S = 0.05
STOP_GRACE_S = 5.0
USERS = {
    "U0BENCH1": {"name": "ada", "profile": {"display_name": "Ada"}},
    "U0BENCH2": {"name": "bo", "profile": {"display_name": "Bo"}},
    "U0BENCH3": {"name": "cy", "profile": {"display_name": "Cy"}},
}
LINES = [
    "The lighthouse keeper climbed the stairs at dusk.",
    "The lamp was cold, and the sea was loud.",
    "A ship's horn answered from somewhere past the rocks.",
    "She counted the steps again, as she did every night.",
    "Down in the village, the bakery lights went out one by one.",
    "The wind carried salt and the smell of rain.",
]


# ---------------------------------------------------------------------- what is sent


@dataclass(frozen=True)
class Step:
    """One slash command: ``/story <text>`` by ``user`` in ``channel``."""

    kind: str  # start, status, add or continue: what the figures are broken down by
    channel: str
    user: str
    text: str


def channel_id(number: int) -> str:
    return f"C0BENCH{number}"


def opening_steps(channels: int) -> list[Step]:
    """Sent the moment the bot listens: a story in every channel but the last, bot turns asked for.

    Channel 1 starts in alternate mode with an opening, so the bot must answer at once (as in
    ``bench.load_lag``); the others start in free mode and channel 2 asks for a turn with
    ``continue``. The last channel stays without a story: its commands get quick refusals.
    """
    users = itertools.cycle(USERS)
    steps = [Step("start", channel_id(1), next(users), f'start "Bench 1" {LINES[0]} {LINES[1]}')]
    for number in range(2, max(channels, 2)):
        line = LINES[number % len(LINES)]
        steps.append(Step("start", channel_id(number), next(users), f'start "Bench {number}" mode:free {line}'))
        if number == 2:
            steps.append(Step("continue", channel_id(2), next(users), "continue"))
    return steps


def steady_steps(channels: int) -> list[Step]:
    """One round of what follows, repeated: ``status`` and ``add`` everywhere, ``continue`` in channel 2."""
    users = itertools.cycle(USERS)
    lines = itertools.cycle(LINES)
    steps: list[Step] = []
    for number in range(1, channels + 1):
        steps.append(Step("status", channel_id(number), next(users), "status"))
        steps.append(Step("add", channel_id(number), next(users), f"add {next(lines)}"))
    steps.append(Step("continue", channel_id(min(2, channels)), next(users), "continue"))
    return steps


class Script:
    """The commands in order; one that never reached the bot (not listening yet) is sent again first."""

    def __init__(self, channels: int) -> None:
        self._opening = deque(opening_steps(channels))
        self._steady = itertools.cycle(steady_steps(channels))
        self._again: deque[Step] = deque()

    def next(self) -> Step:
        if self._again:
            return self._again.popleft()
        if self._opening:
            return self._opening.popleft()
        return next(self._steady)

    def again(self, step: Step) -> None:
        self._again.appendleft(step)


# ---------------------------------------------------------------------- what is measured


@dataclass
class Ack:
    """One acknowledgement: what was sent, when (seconds since spawn), its status and round trip."""

    step: Step
    sent_at: float
    status: int | str  # the HTTP status, or "timeout" / "disconnected" / "refused"
    seconds: float
    refused_in_ack: bool = False  # the ack carried a "⚠️" answer (no story here, not your turn...)
    working: bool = False  # the ack said "working on it": the core had not stored it within its margin


@dataclass
class Timeline:
    """What happened when, in seconds since the bot process was spawned (``time.monotonic`` base)."""

    spawned: float
    refused_before_listening: int = 0
    listening: float | None = None
    ready: float | None = None
    first_turn_asked: float | None = None
    first_passage: float | None = None
    acks: list[Ack] = field(default_factory=list)
    readyz_seconds: list[float] = field(default_factory=list)

    def since_spawn(self, monotonic: float) -> float:
        return monotonic - self.spawned


class BotDied(RuntimeError):
    """The bot process exited while being measured."""


async def send_one(sender: SignedSender, step: Step, script: Script, timeline: Timeline) -> None:
    """Post ``step``; a refused connection before the bot first answered means "not listening yet"."""
    began = time.monotonic()
    try:
        sent = await asyncio.wait_for(post_command(sender, step), REQUEST_TIMEOUT_S)
    except aiohttp.ClientConnectorError:
        if timeline.listening is None:
            timeline.refused_before_listening += 1
            script.again(step)
            return
        timeline.acks.append(Ack(step, timeline.since_spawn(began), "refused", time.monotonic() - began))
        return
    except TimeoutError:
        timeline.acks.append(Ack(step, timeline.since_spawn(began), "timeout", time.monotonic() - began))
        return
    except aiohttp.ClientError:
        timeline.acks.append(Ack(step, timeline.since_spawn(began), "disconnected", time.monotonic() - began))
        return
    if timeline.listening is None or timeline.since_spawn(began) < timeline.listening:
        timeline.listening = timeline.since_spawn(began)
    answer = _ack_text(sent.body)
    ack = Ack(
        step,
        timeline.since_spawn(began),
        sent.status,
        sent.seconds,
        refused_in_ack=answer.startswith("⚠️"),
        working=answer.startswith("⏳"),
    )
    timeline.acks.append(ack)
    if (
        timeline.first_turn_asked is None
        and step.channel == channel_id(1)
        and step.kind == "start"
        and sent.status == 200
        and not ack.refused_in_ack
    ):
        timeline.first_turn_asked = timeline.since_spawn(began + sent.seconds)


async def post_command(sender: SignedSender, step: Step) -> Sent:
    """``/story <text>`` as Slack posts it, signed. (``SignedSender.command`` would also parse the
    answer as JSON, which a plain-text acknowledgement such as "working on it" is not.)"""
    fields = sender.command_fields(step.text, user=step.user, channel=step.channel)
    return await sender.send(urllib.parse.urlencode(fields).encode(), "application/x-www-form-urlencoded")


def _ack_text(body: str) -> str:
    """The text a slash command's acknowledgement shows the asker: Bolt answers JSON when the ack has
    blocks, the bare text when it has only text; empty for a bare 200."""
    try:
        answer = json.loads(body) if body else {}
    except ValueError:
        return body
    return str(answer.get("text", "")) if isinstance(answer, dict) else body


async def send_steadily(
    sender: SignedSender, script: Script, timeline: Timeline, interval_s: float, stop: asyncio.Event
) -> None:
    """Start one request every ``interval_s``, whatever the previous ones are doing; then wait for all
    (and raise what any of them raised: a bug here, not a slow bot)."""
    sending: list[asyncio.Task[None]] = []
    due = time.monotonic()
    while not stop.is_set():
        sending.append(asyncio.create_task(send_one(sender, script.next(), script, timeline)))
        due += interval_s
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, due - time.monotonic()))
    await asyncio.gather(*sending)


async def poll_ready(url: str, timeline: Timeline, stop: asyncio.Event) -> None:
    """``GET /readyz`` every ``READY_POLL_S``: note when it first answers 200."""
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while not stop.is_set():
            began = time.monotonic()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url) as response:
                    await response.read()
                timeline.readyz_seconds.append(time.monotonic() - began)
                if response.status == 200 and timeline.ready is None:
                    timeline.ready = timeline.since_spawn(began)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), READY_POLL_S)


def first_passage_at(api: FakeSlack) -> float | None:
    """When the bot first showed a finished passage: a posted or updated message with buttons."""
    for call in list(api.calls):
        if call.method in ("chat.postMessage", "chat.update") and _has_buttons(call.args):
            return call.at
    return None


def _has_buttons(args: dict[str, Any]) -> bool:
    blocks = args.get("blocks") or []
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    return any(block.get("type") == "actions" for block in blocks)


async def watch(
    bot: subprocess.Popen[bytes], api: FakeSlack, timeline: Timeline, after_s: float, timeout_s: float
) -> None:
    """Return ``after_s`` after the first bot passage is shown, or at ``timeout_s``; raise if the bot exits."""
    while True:
        if bot.poll() is not None:
            raise BotDied(f"the bot exited with status {bot.returncode}")
        now = timeline.since_spawn(time.monotonic())
        if timeline.first_passage is None and (shown := first_passage_at(api)) is not None:
            timeline.first_passage = timeline.since_spawn(shown)
        if timeline.first_passage is not None and now >= timeline.first_passage + after_s:
            return
        if now >= timeout_s:
            return
        await asyncio.sleep(WATCH_S)


# ---------------------------------------------------------------------- the bot process


def bot_environment(api_url: str, folder: Path, model_dir: Path, new_tokens: int) -> dict[str, str]:
    """This process's environment without any ``STORYBOT_*``, plus the benchmark's settings."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("STORYBOT_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(
        {
            "STORYBOT_SLACK_BOT_TOKEN": BOT_TOKEN,
            "STORYBOT_SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "STORYBOT_SLACK_API_BASE_URL": f"{api_url}/api/",
            "STORYBOT_GENERATION_STREAM_INTERVAL_S": "0.25",
            "STORYBOT_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'stories.db'}",
            "STORYBOT_MODEL_NAME": str(model_dir),
            "STORYBOT_MODEL_LOCAL_FILES_ONLY": "true",
            "STORYBOT_MODEL_MAX_NEW_TOKENS": str(new_tokens),
            "STORYBOT_MODEL_MIN_NEW_TOKENS": str(new_tokens),
            "STORYBOT_STORY_PASSAGES_PER_MINUTE": "0",
            "STORYBOT_LOGGING_LEVEL": "WARNING",
        }
    )
    return env


def spawn_bot(port: int, env: dict[str, str], folder: Path, log: Path) -> subprocess.Popen[bytes]:
    """``storybot slack --http`` on ``127.0.0.1:port``, run from ``folder`` (no stray storybot.toml)."""
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "adapters.cli", "slack", "--http", "--host", "127.0.0.1", "--port", str(port)],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=subprocess.STDOUT,
        )


def stop_bot(bot: subprocess.Popen[bytes]) -> None:
    """Terminate, then kill if it has not exited within ``STOP_GRACE_S``."""
    if bot.poll() is not None:
        return
    bot.terminate()
    try:
        bot.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        bot.kill()
        bot.wait()


def tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def ensure_model(model_dir: Path | None) -> Path:
    """``model_dir``, or the default benchmark model, built once in a subprocess (torch stays out of here)."""
    if model_dir is not None:
        return model_dir
    if not (DEFAULT_MODEL_DIR / "config.json").exists():
        print(f"building the benchmark model in {DEFAULT_MODEL_DIR} (once)…", flush=True)
        build = f"from pathlib import Path; from bench.generation import build_model; build_model(Path({str(DEFAULT_MODEL_DIR)!r}))"
        subprocess.run([sys.executable, "-c", build], cwd=REPO, check=True)
    return DEFAULT_MODEL_DIR


def probe_device(env: dict[str, str], folder: Path) -> dict[str, str]:
    """The device and dtype the bot chose, asked of a separate process after the measurement."""
    script = (
        "from bot.config import load_config; from bot.generation.local import pick_device, pick_dtype; "
        "import torch; m = load_config().model; d = pick_device(m.device); "
        "print(d, str(pick_dtype(m.dtype, d)).removeprefix('torch.'), torch.get_num_threads())"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=folder, env=env, capture_output=True, text=True, timeout=120, check=True
        )
        device, dtype, threads = done.stdout.split()[-3:]
    except (subprocess.SubprocessError, ValueError):
        return {"device": "unknown", "dtype": "unknown", "torch_threads": "unknown"}
    return {"device": device, "dtype": dtype, "torch_threads": threads}


# ---------------------------------------------------------------------- the run and the report


async def measure(
    model_dir: Path, rate: float, channels: int, new_tokens: int, after_s: float, timeout_s: float
) -> dict[str, Any]:
    """Spawn the bot, send to it until its first passage is shown (plus ``after_s``); the figures."""
    api = FakeSlack(users=dict(USERS))
    runner = await start_fake_slack(api)
    with tempfile.TemporaryDirectory(prefix="slack-acks-") as name:
        folder = Path(name)
        log = folder / "bot.log"
        port = free_port()
        env = bot_environment(api.url, folder, model_dir, new_tokens)
        sender = SignedSender(f"http://127.0.0.1:{port}/slack/events", api.url)
        stop = asyncio.Event()
        timeline = Timeline(spawned=time.monotonic())
        bot = spawn_bot(port, env, folder, log)
        tasks = [
            asyncio.create_task(send_steadily(sender, Script(channels), timeline, 1 / rate, stop)),
            asyncio.create_task(poll_ready(f"http://127.0.0.1:{port}/readyz", timeline, stop)),
        ]
        died: BotDied | None = None
        try:
            await watch(bot, api, timeline, after_s, timeout_s)
        except BotDied as error:
            died = error
        finally:
            stop.set()
            try:
                await asyncio.gather(*tasks)  # the requests in flight get their answers first
            finally:
                stop_bot(bot)
                await runner.cleanup()
        if died is not None:
            print(f"{died}; its last output:\n{tail(log)}", file=sys.stderr)
            raise SystemExit(1)
        log_text = log.read_text(errors="replace")
        device = probe_device(env, folder)
    figures = summarise(timeline)
    figures.update(cpu_info())
    figures.update(device)
    figures.update(
        {
            "model": str(model_dir),
            "rate_per_s": rate,
            "channels": channels,
            "new_tokens": new_tokens,
            "bot_log_warnings": sum(" WARNING " in line for line in log_text.splitlines()),
            "bot_log_errors": sum(" ERROR " in line for line in log_text.splitlines()),
        }
    )
    return figures


def _stats(seconds: list[float]) -> dict[str, float | int | None]:
    return {
        "count": len(seconds),
        "p50_s": _r(percentile(seconds, 50)),
        "p90_s": _r(percentile(seconds, 90)),
        "p99_s": _r(percentile(seconds, 99)),
        "max_s": _r(max(seconds, default=float("nan"))),
    }


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


def summarise(timeline: Timeline) -> dict[str, Any]:
    """The acknowledgement figures, overall, before and after ``/readyz`` turned 200, and per command."""
    acks = sorted(timeline.acks, key=lambda ack: ack.sent_at)
    seconds = [ack.seconds for ack in acks]
    ready = timeline.ready if timeline.ready is not None else float("inf")
    overall = _stats(seconds)
    kinds = sorted({ack.step.kind for ack in acks})
    slowest = sorted(acks, key=lambda ack: ack.seconds, reverse=True)[:5]
    return {
        "acks": overall["count"],
        **{f"ack_{key}": value for key, value in overall.items() if key != "count"},
        "acks_over_1s": sum(s > 1.0 for s in seconds),
        "acks_over_3s": sum(s > SLACK_DEADLINE_S for s in seconds),
        "non_200": {
            str(status): count for status, count in _count(ack.status for ack in acks).items() if status != 200
        },
        "acks_refusing_the_command": sum(ack.refused_in_ack for ack in acks),
        "acks_working_on_it": sum(ack.working for ack in acks),
        "refused_connections_before_listening": timeline.refused_before_listening,
        "listening_after_s": _r(timeline.listening, 2),
        "first_turn_asked_after_s": _r(timeline.first_turn_asked, 2),
        "ready_after_s": _r(timeline.ready, 2),
        "first_passage_after_s": _r(timeline.first_passage, 2),
        "readyz_max_s": _r(max(timeline.readyz_seconds, default=float("nan"))),
        "before_ready": _stats([ack.seconds for ack in acks if ack.sent_at < ready]),
        "after_ready": _stats([ack.seconds for ack in acks if ack.sent_at >= ready]),
        "by_command": {kind: _stats([ack.seconds for ack in acks if ack.step.kind == kind]) for kind in kinds},
        "slowest": [
            {
                "seconds": _r(ack.seconds),
                "sent_at_s": _r(ack.sent_at, 2),
                "command": ack.step.kind,
                "channel": ack.step.channel,
                "status": ack.status,
            }
            for ack in slowest
        ],
        "target_p99_under_1s": bool(seconds) and percentile(seconds, 99) < TARGET_P99_S,
    }


def _count(values: Iterator[int | str]) -> dict[int | str, int]:
    counts: dict[int | str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def table(f: dict[str, Any]) -> str:
    """The figures that matter, for a person."""

    def phase(name: str) -> str:
        s = f[name]
        return f"{s['count']} acks, p50 {s['p50_s']} s, p99 {s['p99_s']} s, max {s['max_s']} s"

    flags = ", ".join(f"{flag} {'yes' if f[flag] else 'no'}" for flag in ("avx2", "avx512f", "avx512_bf16"))
    refused = f["refused_connections_before_listening"]
    spread = ", ".join(f"{q} {f[f'ack_{q}_s']} s" for q in ("p50", "p90", "p99", "max"))
    slowest = "; ".join(f"{s['seconds']} s {s['command']} at {s['sent_at_s']} s" for s in f["slowest"][:3])
    rows = [
        ("CPU", f"{f['cpu']}, {f['cpus']} CPUs, {flags}"),
        ("torch", f"{f['device']}, {f['dtype']}, {f['torch_threads']} threads"),
        ("listening after", f"{f['listening_after_s']} s ({refused} connections refused before)"),
        ("first turn asked", f"{f['first_turn_asked_after_s']} s"),
        ("ready (/readyz 200)", f"{f['ready_after_s']} s"),
        ("first passage shown", f"{f['first_passage_after_s']} s"),
        ("acks", f"{f['acks']} at {f['rate_per_s']}/s: {spread}"),
        ("over 1 s / over 3 s", f"{f['acks_over_1s']} / {f['acks_over_3s']}"),
        ("non-200", json.dumps(f["non_200"]) if f["non_200"] else "none"),
        ("before ready", phase("before_ready")),
        ("after ready", phase("after_ready")),
        ("slowest", slowest or "-"),
        ("bot log", f"{f['bot_log_warnings']} warnings, {f['bot_log_errors']} errors"),
        ("p99 under 1 s", "yes" if f["target_p99_under_1s"] else "NO"),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"  {label:<{width}}  {value}" for label, value in rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.slack_acks", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a local model folder (default: a random GPT-2 small, built once)")
    parser.add_argument("--rate", type=float, default=20.0, help="signed requests per second (default: 20)")
    parser.add_argument("--channels", type=int, default=4, help="channels the commands go to (default: 4)")
    parser.add_argument("--new-tokens", type=int, default=16, help="tokens per bot passage, >= 16 (default: 16)")
    parser.add_argument(
        "--after",
        type=float,
        default=2.0,
        help="seconds to keep sending after the first bot passage is shown (default: 2)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=240.0,
        help="give up this many seconds after spawning, passage or not (default: 240)",
    )
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.channels < 1 or args.new_tokens < 16:
        parser.error("--rate must be > 0, --channels >= 1 and --new-tokens >= 16")
    model_dir = ensure_model(args.model)
    figures = asyncio.run(measure(model_dir, args.rate, args.channels, args.new_tokens, args.after, args.timeout))
    print(f"Slack acknowledgements of a fresh `storybot slack --http` (model {model_dir}):")
    print(table(figures))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
