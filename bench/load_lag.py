"""Event-loop lag while a freshly started bot loads its model and writes its first turn.

    python -m bench.load_lag --model FOLDER [--json]

Measured in a fresh process, as a bot starts: nothing heavy is imported yet, so importing torch
and transformers and loading the weights all land inside the measured window (``bench.generation``
imports torch at its top, which would hide them; it runs this module as a subprocess). This
module therefore imports neither, nor ``bench.generation``.

After ``open_app`` yields (``ready_after_s``: seconds since the process started), a task sleeps
5 ms again and again and records how late each wake-up is, while the queue loads the default
model (``warm_up``) and one bot turn runs through the product path: a story started in
alternate mode with an opening, so the bot answers. Every late wake-up is a chat interaction
acknowledged that much later; the target is a p99 under 100 ms. The percentiles count wake-ups,
and a block of the loop is one late wake-up however long it lasts: read the max beside the p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import TurnTimings, bench_config, percentile, start_sampling_loop_lag
from bot import commands as c
from bot.app import open_app
from bot.identity import Actor, ChannelRef
from bot.results import Result

_IMPORTED = time.perf_counter()  # the fallback "process start" where /proc cannot tell
LAG_SLEEP_S = 0.005
NEW_TOKENS = 16
OPENING = "The lighthouse keeper climbed the stairs at dusk. The lamp was cold, and the sea was loud."
TARGET_P99_MS = 100.0


def seconds_since_process_start() -> float:
    """Seconds since this process was created (10 ms resolution), interpreter start-up included.

    Linux keeps the start time in /proc/self/stat (field 22, clock ticks since boot, on the
    CLOCK_BOOTTIME clock). Elsewhere: seconds since this module was imported, which leaves out
    the interpreter's start and the imports before it.
    """
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _IMPORTED


async def measure(model_dir: Path) -> dict[str, float]:
    """Start the app on ``model_dir`` as a bot process does; its loop's lag until the first turn is stored.

    ``ready_after_s`` is taken once ``open_app`` has yielded, the moment an adapter would start
    taking traffic; the lag window covers ``warm_up`` and the first turn, which run alongside it.
    """
    with tempfile.TemporaryDirectory() as folder:
        config = bench_config(model_dir, Path(folder) / "load-lag.db", NEW_TOKENS, max_batch=1)
        async with open_app(config) as app:
            ready_after = seconds_since_process_start()
            timings = TurnTimings()
            app.queue.add_listener(timings)
            lag: list[float] = []
            stop = asyncio.Event()
            sampler = await start_sampling_loop_lag(lag, stop, LAG_SLEEP_S)
            began = time.perf_counter()
            try:
                problem = await app.queue.warm_up()
                if problem is not None:
                    raise SystemExit(f"the model did not load: {problem}")
                loaded = time.perf_counter()
                # An opening in alternate mode: the bot answers it, through the queue like any turn.
                start = c.parse(f'/story start "Load lag" mode:alternate {OPENING}')
                channel, actor = ChannelRef("bench", "w", "load-lag"), Actor("bench", "Bench")
                started = await app.sessions.handle(channel, actor, start)
                if started.job_id is None:
                    raise SystemExit(f"the bot was not asked to write: {started.text}")
                await timings.finished(started.job_id).wait()
                finished = time.perf_counter()
                health = app.queue.health()
            finally:
                stop.set()
                await sampler
    result = timings.results.get(started.job_id)
    if not isinstance(result, Result) or not result.ok:
        raise SystemExit(f"the bot's first turn did not store a passage: {result}")
    return {
        "ready_after_s": round(ready_after, 2),
        "model_load_s": round(loaded - began, 2),
        "first_turn_s": round(finished - loaded, 2),
        "loop_lag_during_load_samples": len(lag),
        "loop_lag_during_load_p50_ms": round(percentile(lag, 50) * 1000, 2),
        "loop_lag_during_load_p99_ms": round(percentile(lag, 99) * 1000, 2),
        "loop_lag_during_load_max_ms": round(max(lag, default=float("nan")) * 1000, 2),
        # The generation worker's health (GenerationQueue.health): errors it survived, restarts.
        "worker_errors": health.errors,
        "worker_restarts": health.restarts,
    }


def describe(figures: dict[str, float]) -> str:
    """The figures as the one line both this module and ``bench.generation`` print."""
    return (
        f"event-loop lag while a fresh process loads the model and writes its first turn: "
        f"p50 {figures['loop_lag_during_load_p50_ms']} ms, p99 {figures['loop_lag_during_load_p99_ms']} ms "
        f"(target < {TARGET_P99_MS:.0f}), max {figures['loop_lag_during_load_max_ms']} ms; "
        f"ready after {figures['ready_after_s']} s, model loaded in {figures['model_load_s']} s, "
        f"first turn {figures['first_turn_s']} s"
    )


def run_in_fresh_process(model_dir: Path) -> dict[str, float]:
    """Run this benchmark in a new interpreter (so imports count) and return its figures.

    The child's stderr (warnings, a traceback) passes straight through; its stdout's last line
    is the JSON object.
    """
    completed = subprocess.run(
        [sys.executable, "-m", "bench.load_lag", "--model", str(model_dir), "--json"],
        cwd=Path(__file__).resolve().parent.parent,  # so ``bench`` imports even when not installed
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"bench.load_lag failed (exit {completed.returncode}): {completed.stdout.strip()}")
    figures: dict[str, float] = json.loads(completed.stdout.strip().splitlines()[-1])  # what main prints with --json
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load_lag", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a local model folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = parser.parse_args(argv)
    figures = asyncio.run(measure(args.model))
    print(describe(figures), flush=True)
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
