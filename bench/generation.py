"""Generation benchmark: batching, prefix cache, streaming latency, event-loop lag, memory.

    python -m bench.generation [--quick] [--json] [--model NAME]

By default it runs the model the bot ships with (``bundled:smollm2-135m``: SmolLM2-135M-Instruct,
a Llama with 30 thin layers), converted once like the bot converts it. ``--model random-gpt2``
builds a GPT-2-small-sized model (124M parameters, random weights, a 50257-token byte-level BPE
tokenizer) once into ~/.cache/storybot/bench-gpt2-small; any model folder or .gguf file works
too. The model is loaded through the product's own loading code. Throughput and latency are measured through the whole
product path (story rules, SQLite, the generation queue, the local backend); the prefix-cache
figures call the backend directly, so they isolate the cache. The event-loop lag while a bot
starts (loads the model, writes its first turn) is measured by ``bench.load_lag`` in a fresh process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TypedDict

import torch

from bench import load_lag
from bench.harness import TurnTimings, bench_config, cpu_info, describe_cpu, percentile, start_sampling_loop_lag
from bench.models import build_random_gpt2
from bot import commands as c
from bot.app import open_app
from bot.config import Config, load_config
from bot.generation.backend import GenerationRequest, Sampling
from bot.generation.heavy import MODEL_THREAD
from bot.generation.local import LocalBackend, pick_device
from bot.generation.model_files import model_source
from bot.identity import Actor, ChannelRef

DEFAULT_MODEL = "bundled:smollm2-135m"
RANDOM_GPT2 = "random-gpt2"
RANDOM_GPT2_DIR = Path.home() / ".cache" / "storybot" / "bench-gpt2-small"
CHANNEL_COUNTS = (1, 4, 8)
LAG_SLEEP_S = 0.010  # the sampler's sleep while generating (README: "10 ms sleeper")


def benchmark_model(name: str) -> Path:
    """The folder of the model to measure; the random GPT-2 is built, a GGUF file converted, once."""
    if name != RANDOM_GPT2:
        return Path(model_source(name))
    if not (RANDOM_GPT2_DIR / "config.json").exists():
        print(f"building the benchmark model in {RANDOM_GPT2_DIR} (once)…", flush=True)
        build_model(RANDOM_GPT2_DIR)
    return RANDOM_GPT2_DIR


def build_model(folder: Path) -> None:
    """A randomly initialised GPT-2 small and a 50257-token tokenizer trained on made-up words."""
    build_random_gpt2(folder, _made_up_text(40000), vocab_size=50257, n_positions=1024)


def _made_up_text(lines: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    consonants, vowels = "bcdfghjklmnprstvwz", "aeiou"
    syllables = [a + b + (rng.choice(consonants) if rng.random() < 0.5 else "") for a in consonants for b in vowels]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(lines * 12)]
    return [" ".join(words[i * 12 : (i + 1) * 12]) + "." for i in range(lines)]


class ChannelFigures(TypedDict):
    """What one run of :func:`channels_at_once` measured; times in seconds."""

    tokens_per_s: float
    ttft: list[float]  # each turn's time to its first text
    loop_lag: list[float]  # samples of the event loop's lag while the turns ran


async def channels_at_once(
    config: Config, backend: LocalBackend, channels: int, rounds: int, story_lines: int
) -> ChannelFigures:
    """``channels`` stories each ask the bot for a passage at the same moment; ``rounds`` times.

    ``backend`` is loaded once and shared by all runs, so no run pays for loading the model.
    """
    timings = TurnTimings()
    lag: list[float] = []
    ttft: list[float] = []
    elapsed = 0.0
    async with open_app(config, backend_factory=lambda _name: backend) as app:
        app.queue.add_listener(timings)
        refs = [ChannelRef("bench", "w", f"channel-{i}") for i in range(channels)]
        actor = Actor("bench", "Bench")
        for index, ref in enumerate(refs):
            await app.sessions.handle(ref, actor, c.parse(f'/story start "Bench {index}" mode:free'))
            await app.sessions.handle(ref, actor, c.Add(" ".join(_made_up_text(story_lines, seed=index))))
        stop = asyncio.Event()
        lag_task = await start_sampling_loop_lag(lag, stop, LAG_SLEEP_S)
        for _ in range(rounds):
            began = time.perf_counter()
            results = await asyncio.gather(*(app.sessions.handle(ref, actor, c.Continue()) for ref in refs))
            job_ids = [r.job_id for r in results if r.job_id is not None]
            for job_id in job_ids:
                await timings.finished(job_id).wait()
            elapsed += time.perf_counter() - began
            ttft += [timings.first_text[j] - began for j in job_ids if j in timings.first_text]
        stop.set()
        await lag_task
    tokens = channels * rounds * config.model.max_new_tokens
    return {"tokens_per_s": tokens / elapsed, "ttft": ttft, "loop_lag": lag}


def prefix_cache_turn(model_dir: Path, prompt_tokens: int, tail_tokens: int, new_tokens: int) -> dict[str, float]:
    """One turn of a long story, with and without the channel's cached prompt prefix."""
    config = load_config(
        Path("/dev/null"), env={"STORYBOT_MODEL_NAME": str(model_dir), "STORYBOT_MODEL_LOCAL_FILES_ONLY": "true"}
    )
    cached_backend = LocalBackend(config.model)
    plain_backend = LocalBackend(replace(config.model, prefix_cache_mb=0))
    # On the model thread, as in the bot: torch runs slower once a second thread has used it.
    MODEL_THREAD.submit(cached_backend.load).result()  # loading is not part of any turn
    MODEL_THREAD.submit(plain_backend.load).result()
    words = " ".join(_made_up_text(400, seed=7)).split()
    previous = _prompt_of(cached_backend, words, prompt_tokens - tail_tokens)
    current = _prompt_of(cached_backend, words, prompt_tokens)
    assert current.startswith(previous)
    sampling = Sampling(max_new_tokens=new_tokens, min_new_tokens=new_tokens)

    def turn(backend: LocalBackend, prompt: str, key: str | None) -> tuple[float, float]:
        first: list[float] = []
        began = time.perf_counter()
        request = GenerationRequest(
            prompt, sampling, on_text=lambda _: first.append(time.perf_counter()), cache_key=key
        )
        MODEL_THREAD.submit(lambda: backend.generate([request])).result()
        return first[0] - began, time.perf_counter() - began

    turn(cached_backend, previous, "story")  # the channel's previous turn fills its cache
    cached_ttft, cached_total = turn(cached_backend, current, "story")
    plain_ttft, plain_total = turn(plain_backend, current, None)
    return {
        "prompt_tokens": cached_backend.count_tokens(current),
        "ttft_cached_ms": cached_ttft * 1000,
        "ttft_uncached_ms": plain_ttft * 1000,
        "turn_cached_ms": cached_total * 1000,
        "turn_uncached_ms": plain_total * 1000,
    }


def _prompt_of(backend: LocalBackend, words: list[str], tokens: int) -> str:
    """The longest run of the words, from the start, that stays within ``tokens`` tokens."""
    low, high = 1, len(words)
    while low < high:
        middle = (low + high + 1) // 2
        if backend.count_tokens(" ".join(words[:middle])) <= tokens:
            low = middle
        else:
            high = middle - 1
    return " ".join(words[:low])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.generation", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"{DEFAULT_MODEL} (default), {RANDOM_GPT2} (a GPT-2 small with random weights), "
        "a model folder or a .gguf file",
    )
    parser.add_argument("--quick", action="store_true", help="fewer tokens: finishes in about two minutes")
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = parser.parse_args(argv)

    model_dir = benchmark_model(args.model)
    new_tokens = 16 if args.quick else 64
    rounds = 1 if args.quick else 2
    # Each channel's story so far: ~75 or ~150 tokens of made-up words; in the chat frame, with
    # the system message and the request, a prompt of ~490 tokens for four lines.
    story_lines = 2 if args.quick else 4
    defaults = load_config(Path("/dev/null"), env={}).model
    device = pick_device(defaults.device)
    machine = cpu_info()
    print(describe_cpu(machine), flush=True)
    print(f"model {model_dir} on {device}, {torch.get_num_threads()} threads", flush=True)
    report: dict[str, object] = {
        **machine,
        "model": str(model_dir),
        "device": device,
        "new_tokens": new_tokens,
        "quick": args.quick,
        "rounds": rounds,
    }
    tokens_per_s: dict[str, dict[str, float]] = {"batched": {}, "sequential": {}}
    ttft: list[float] = []
    lag: list[float] = []
    # A fresh process of its own: this one has imported torch already, which would hide that cost.
    load = load_lag.run_in_fresh_process(model_dir)
    report.update(load)
    print(load_lag.describe(load), flush=True)
    with tempfile.TemporaryDirectory() as folder:
        backend: LocalBackend | None = None
        for channels in (1, 8) if args.quick else CHANNEL_COUNTS:
            for mode, max_batch in (("batched", 8), ("sequential", 1)):
                config = bench_config(model_dir, Path(folder) / f"{mode}-{channels}.db", new_tokens, max_batch)
                if backend is None:  # no prefix cache here: these runs measure batching alone
                    backend = LocalBackend(replace(config.model, prefix_cache_mb=0))
                    # One untimed turn, so first-use costs (thread pools, allocator) count nowhere.
                    warm_up = [GenerationRequest("Warm up.", Sampling(max_new_tokens=2, min_new_tokens=2))]
                    MODEL_THREAD.submit(partial(backend.generate, warm_up)).result()
                    report.update(precision=backend.precision, quantization=backend.quantization)
                    print(f"precision: {backend.precision} (model.quantize = {defaults.quantize})", flush=True)
                figures = asyncio.run(channels_at_once(config, backend, channels, rounds, story_lines))
                tokens_per_s[mode][str(channels)] = round(figures["tokens_per_s"], 1)
                print(f"{channels} channel(s), {mode:10}: {figures['tokens_per_s']:8.1f} tokens/s", flush=True)
                if channels == 8 and mode == "batched":
                    ttft, lag = figures["ttft"], figures["loop_lag"]
    cache = prefix_cache_turn(model_dir, prompt_tokens=900, tail_tokens=60, new_tokens=12 if args.quick else 48)
    report.update(
        tokens_per_s=tokens_per_s["batched"],
        tokens_per_s_sequential=tokens_per_s["sequential"],
        batching_speedup_8=round(tokens_per_s["batched"]["8"] / tokens_per_s["sequential"]["8"], 2),
        prefix_cache_ttft_speedup=round(cache["ttft_uncached_ms"] / cache["ttft_cached_ms"], 2),
        prefix_cache_turn_speedup=round(cache["turn_uncached_ms"] / cache["turn_cached_ms"], 2),
        prefix_cache={k: round(v, 1) for k, v in cache.items()},
        ttft_p50_ms=round(percentile(ttft, 50) * 1000, 1),
        ttft_p95_ms=round(percentile(ttft, 95) * 1000, 1),
        loop_lag_p99_ms=round(percentile(lag, 99) * 1000, 2),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )
    print(f"batching speedup, 8 channels: {report['batching_speedup_8']}x")
    print(
        f"prefix cache, {cache['prompt_tokens']:.0f}-token prompt: time to first token "
        f"{cache['ttft_uncached_ms']:.0f} ms -> {cache['ttft_cached_ms']:.0f} ms "
        f"({report['prefix_cache_ttft_speedup']}x); whole turn {cache['turn_uncached_ms']:.0f} ms -> "
        f"{cache['turn_cached_ms']:.0f} ms ({report['prefix_cache_turn_speedup']}x)"
    )
    print(f"time to first streamed text, 8 channels: p50 {report['ttft_p50_ms']} ms, p95 {report['ttft_p95_ms']} ms")
    print(f"event-loop lag while generating: p99 {report['loop_lag_p99_ms']} ms")
    print(f"peak resident memory: {report['peak_rss_mb']} MB")
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
