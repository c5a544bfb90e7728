"""What a vote costs: a bot turn that writes 2 to 4 candidates against one that writes one passage.

    storybot bench votes [--turns 4] [--length 80] [--json]

The issue behind ``/story settings candidates`` asks that the candidates cost "close to one
passage". They are rows of one prompt in one batch: the first row's prefill stores the channel's
prefix and the others reuse it, and each decoding step makes one token for every row at once.
This runs the whole core (``open_app``: the rules, the queue, the configured model, by default
the bundled SmolLM2-135M; a fresh SQLite file) in one story, and times ``--turns`` bot turns for
each of ``candidates`` 1, 2, 3 and 4, taking turns between them (so a warm-up or a slower minute
falls on each alike): from ``/story continue`` to the turn's end (the passage stored, or the
candidates out for the vote), each turn after the same story so far (the vote is withdrawn,
the passage undone). Every turn writes exactly ``--length`` tokens (``min_new_tokens``), so rows
never end early. Printed: the CPU, the model, and per setting the median seconds a turn and the
median seconds of it the model was writing (the passages' ``generation["seconds"]``), each with
its ratio to one passage; ``--json``: one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.harness import cpu_info, describe_cpu
from bot import commands as c
from bot.app import Database, open_app
from bot.config import load_config
from bot.identity import Actor, ChannelRef
from bot.jobs import JobSpec
from bot.results import Result
from storage.models import Passage

CHANNEL = ChannelRef("bench", "local", "votes")
WRITER = Actor("bench-writer", "Writer")
OPENING = "The lighthouse keeper climbed the stairs at dusk. The lamp was cold, and the sea was loud."
SETTINGS = (1, 2, 3, 4)


class Ends:
    """A queue listener: when each turn ended."""

    def __init__(self) -> None:
        self.ended: dict[int, asyncio.Future[float]] = {}

    def _future(self, job_id: int) -> asyncio.Future[float]:
        return self.ended.setdefault(job_id, asyncio.get_running_loop().create_future())

    async def turn_started(self, job: JobSpec) -> None:
        return None

    async def turn_progress(self, job: JobSpec, text: str) -> None:
        return None

    async def turn_finished(self, job: JobSpec, result: Result | None) -> None:
        if not (future := self._future(job.job_id)).done():
            future.set_result(time.monotonic())


async def measure(turns: int, length: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        database = f"sqlite+aiosqlite:///{Path(folder) / 'votes.db'}"
        config = load_config(None, env={**os.environ, "STORYBOT_DATABASE_URL": database})
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, min_new_tokens=length))
        ends = Ends()
        async with open_app(config) as app:
            app.queue.add_listener(ends)
            await app.queue.warm_up()

            async def ask(text: str) -> Result:
                result = await app.sessions.handle(CHANNEL, WRITER, c.parse(text))
                assert result.ok, result.text
                return result

            await ask(f'/story start "Votes" mode:free {OPENING}')
            seconds: dict[int, list[float]] = {n: [] for n in SETTINGS}
            writing: dict[int, list[float]] = {n: [] for n in SETTINGS}
            for _ in range(turns + 1):  # the first round warms up and is not counted
                for candidates in SETTINGS:
                    await ask(f"/story settings candidates:{candidates} length:{length}")
                    began = time.monotonic()
                    asked = await ask("/story continue")
                    assert asked.job_id is not None
                    ended = await ends._future(asked.job_id)
                    seconds[candidates].append(ended - began)
                    writing[candidates].append(await written_in(app.db, asked.job_id))
                    await ask("/story undo")  # the passage, or the vote: the same story for the next
            model = app.config.model.name
    median = {n: statistics.median(times[1:]) for n, times in seconds.items()}
    model_time = {n: statistics.median(times[1:]) for n, times in writing.items()}
    return {
        **cpu_info(),
        "model": model,
        "length": length,
        "turns": turns,
        "seconds": {str(n): round(median[n], 2) for n in SETTINGS},
        "ratio": {str(n): round(median[n] / median[1], 2) for n in SETTINGS},
        "writing_seconds": {str(n): round(model_time[n], 2) for n in SETTINGS},
        "writing_ratio": {str(n): round(model_time[n] / model_time[1], 2) for n in SETTINGS},
    }


async def written_in(db: Database, job_id: int) -> float:
    """The seconds the model spent on a turn (its passages' ``generation["seconds"]``: the whole
    batch for candidates): the turn's time less its showing (a passage's last streamed edit goes
    out before its end, up to ``generation.stream_interval_s`` later; candidates do not stream)."""
    async with db.read() as tx:
        records = (await tx.execute(select(Passage.generation).where(Passage.job_id == job_id))).scalars().all()
    return max(float(record.get("seconds", 0.0)) for record in records if record)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="storybot bench votes", description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=4, help="timed turns per setting")
    parser.add_argument("--length", type=int, default=80, help="tokens each candidate writes")
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = parser.parse_args(argv)
    figures = asyncio.run(measure(args.turns, args.length))
    print(describe_cpu(figures), f"model {figures['model']}, {args.length} tokens a passage", sep="; ")
    for n in SETTINGS:
        key = str(n)
        print(
            f"candidates {n}: {figures['seconds'][key]:5.2f} s a turn ({figures['ratio'][key]:.2f}× one passage), "
            f"{figures['writing_seconds'][key]:5.2f} s of it writing ({figures['writing_ratio'][key]:.2f}×)"
        )
    if args.json:
        print(json.dumps(figures))
