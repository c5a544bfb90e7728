"""What the benchmarks share: their configuration, a turn listener, a loop-lag sampler, percentiles.

Kept free of torch and transformers (and of ``bench.generation``, which imports torch at its
top) so that ``bench.load_lag`` can use it in a fresh process and still see what importing
them costs the running bot.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Any

from bot.config import Config, load_config
from bot.jobs import JobSpec


def bench_config(model_dir: Path, db_path: Path, new_tokens: int, max_batch: int) -> Config:
    """The product's configuration for a benchmark: a local model, a fresh SQLite file, passages
    of exactly ``new_tokens`` tokens, no rate limit and no streaming throttle."""
    empty = db_path.with_suffix(".toml")
    empty.write_text("")
    return load_config(
        empty,
        env={
            "STORYBOT_DATABASE_URL": f"sqlite+aiosqlite:///{db_path}",
            "STORYBOT_MODEL_NAME": str(model_dir),
            "STORYBOT_MODEL_LOCAL_FILES_ONLY": "true",
            "STORYBOT_MODEL_MAX_NEW_TOKENS": str(new_tokens),
            "STORYBOT_MODEL_MIN_NEW_TOKENS": str(new_tokens),
            "STORYBOT_GENERATION_MAX_BATCH": str(max_batch),
            "STORYBOT_GENERATION_STREAM_INTERVAL_S": "0",
            "STORYBOT_STORY_PASSAGES_PER_MINUTE": "0",
            "STORYBOT_LOGGING_LEVEL": "WARNING",
        },
    )


class TurnTimings:
    """Queue listener: when each bot turn first streamed, and an event set when it finished."""

    def __init__(self) -> None:
        self.first_text: dict[int, float] = {}
        self.results: dict[int, object] = {}
        self._finished: dict[int, asyncio.Event] = {}

    def finished(self, job_id: int) -> asyncio.Event:
        """Set once the job's turn is over; safe to ask for before the queue has started it."""
        return self._finished.setdefault(job_id, asyncio.Event())

    async def turn_started(self, job: JobSpec) -> None:
        self.finished(job.job_id)

    async def turn_progress(self, job: JobSpec, text: str) -> None:
        self.first_text.setdefault(job.job_id, time.perf_counter())

    async def turn_finished(self, job: JobSpec, result: object) -> None:
        self.results[job.job_id] = result
        self.finished(job.job_id).set()


async def sample_loop_lag(samples: list[float], stop: asyncio.Event, interval_s: float) -> None:
    """Sleep ``interval_s`` again and again until ``stop``; record how late each wake-up is (s).

    A wake-up is late by as long as something held the event loop (or the GIL) past the
    sleep's end: exactly the delay a chat interaction would see before being acknowledged.
    """
    while not stop.is_set():
        began = time.perf_counter()
        await asyncio.sleep(interval_s)
        samples.append(max(0.0, time.perf_counter() - began - interval_s))


async def start_sampling_loop_lag(samples: list[float], stop: asyncio.Event, interval_s: float) -> asyncio.Task[None]:
    """``sample_loop_lag`` as a task that is already asleep when this returns.

    A task only starts at the loop's next turn: without the yield here, whatever the caller
    does next without awaiting (a synchronous import, say) would run before the first sample
    and never be measured.
    """
    task = asyncio.create_task(sample_loop_lag(samples, stop, interval_s))
    await asyncio.sleep(0)
    return task


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (inclusive method); NaN for no values."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile")
ISA_LIMITS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def cpu_info() -> dict[str, Any]:
    """The CPU's model name and the vector extensions that decide the dtype (Linux; else unknown)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    fields = {
        key.strip(): value.strip() for key, value in (line.split(":", 1) for line in text.splitlines() if ":" in line)
    }
    flags = set(fields.get("flags", "").split())
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    import torch  # the benchmarks load it anyway; imported here so the harness alone stays light

    return {
        "cpu": fields.get("model name", "unknown"),
        "cpus": usable,
        **{flag: flag in flags for flag in CPU_FLAGS},
        # What torch's own kernels use: ATEN_CPU_CAPABILITY=avx2 (with ONEDNN_MAX_CPU_ISA=AVX2 and
        # MKL_ENABLE_INSTRUCTIONS=AVX2) makes an AVX-512 machine compute like an AVX2-only one.
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "isa_limits": {name: os.environ[name] for name in ISA_LIMITS if name in os.environ},
    }


def describe_cpu(info: dict[str, Any]) -> str:
    """One line: the CPU, its relevant flags, and what torch computes with."""
    flags = ", ".join(f"{flag} {'yes' if info[flag] else 'no'}" for flag in CPU_FLAGS)
    limits = " ".join(f"{name}={value}" for name, value in info["isa_limits"].items())
    return f"CPU {info['cpu']}, {info['cpus']} CPUs, {flags}; torch kernels {info['torch_capability']}" + (
        f" ({limits})" if limits else ""
    )
