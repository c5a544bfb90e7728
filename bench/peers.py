"""Peers benchmark: storybot's local backend against transformers and llama.cpp, on one machine.

    python -m bench.peers [--quick] [--json] [--threads N] [--quantize auto|none|int8|int4]
                          [--llama-server URL] [--llama-server-bin PATH]

Every system continues the same prompts with the same model (the bundled SmolLM2-135M-Instruct)
and the same sampling: temperature 0.8, top-k 50, top-p 0.95, no repetition penalty, and exactly
64 new tokens per request (the end of text is banned until then). The prompts are eight story
openings (``bench.openings``) of different lengths, 120 to 300 tokens, each rendered by the
product's own prompt construction (``bot.context.build_prompt`` inside the model's chat frame);
the very same strings go to every system. The systems:

- ``transformers``: ``model.generate`` in float32, the way most projects run a small model;
  eight at once is one left-padded batch.
- ``storybot``: ``LocalBackend.generate`` with ``model.quantize`` as configured (``--quantize``,
  default auto), no prefix cache; eight at once is one call with eight requests, which the
  backend batches.
- ``llama.cpp``: ``llama-server -np 8`` (eight slots, continuous batching), ``POST /completion``
  with ``cache_prompt: false``; the shipped Q4_1 file as it is, and F32 and Q8_0 files made from
  it once with ``llama-quantize`` into ~/.cache/storybot/peers. Needs ``make llama-server`` (or
  ``--llama-server-bin``); ``--llama-server URL`` measures a server that is already running.

Figures are aggregate tokens per second, prompt processing included: requests × new tokens /
wall time, for eight requests one after another and for all eight at once. A bot serves one
channel's turn alone as often as several channels' turns together, so both count. The second
table is the time to first token of a ~900-token prompt without any prefix cache (a long story's
turn on a cold cache): the wall time of a request for one new token, HTTP included for
llama.cpp, beside llama.cpp's own ``timings.prompt_ms`` (its prompt processing alone). Seconds
are wall time on a machine that may be doing other work: compare figures within one run, and
on the same machine (the header says which CPU features torch and llama.cpp could use;
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2`` make torch
behave like an AVX2-only CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any, TypeVar

from bench.harness import cpu_info, describe_cpu
from bench.openings import OPENINGS, Opening
from bot.config import load_config
from bot.context import LoreItem, PromptFrame, PromptLimits, StorySnapshot, build_prompt
from bot.generation.backend import GenerationRequest, Sampling
from bot.generation.model_files import bundled_file, default_cache_dir, model_source

MODEL = "bundled:smollm2-135m"
NEW_TOKENS, QUICK_NEW_TOKENS = 64, 16
PROMPTS, QUICK_PROMPTS = 8, 4
PROMPT_TOKENS = (120, 300)  # the range the story prompts are taken from
LONG_PROMPT_TOKENS = 900  # the time-to-first-token prompt
FIRST_TOKEN_REPEATS, QUICK_FIRST_TOKEN_REPEATS = 3, 1
TEMPERATURE, TOP_K, TOP_P, REPETITION_PENALTY = 0.8, 50, 0.95, 1.0
ROOT = Path(__file__).resolve().parents[1]
LLAMA_SERVER_BIN = ROOT / "build" / "llama.cpp" / "build" / "bin" / "llama-server"
LLAMA_SLOTS, LLAMA_CONTEXT = 8, 16384
LLAMA_TYPES = ("F32", "Q8_0")  # made from the shipped file
SHIPPED_TYPE = "Q4_1"
PEERS_DIR = default_cache_dir().parent / "peers"
HEALTH_TIMEOUT_S = 120.0

# Generates ``new_tokens`` for every prompt, all at once; returns the longest prompt processing
# time (ms) the system reports itself (llama.cpp's timings.prompt_ms), or None.
Runner = Callable[[Sequence[str], int], float | None]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Throughput:
    """Aggregate tokens per second of one system, prompt processing included."""

    system: str
    one_after_another: float
    all_at_once: float


@dataclass(frozen=True, slots=True)
class FirstToken:
    """Time to the first new token of the long prompt, median of the repeats."""

    system: str
    ms: float
    prompt_ms: float | None  # what the system reports for the prompt alone, where it does


# ------------------------------------------------------------------------------ the prompts


def snapshot(opening: Opening) -> StorySnapshot:
    return StorySnapshot(
        title=opening.title,
        genre=opening.genre,
        memory=opening.memory,
        note=opening.note,
        passages=tuple(text for _, text in opening.passages),
        lore=tuple(LoreItem(entry.keys, entry.text) for entry in opening.lore),
    )


def spread(items: Sequence[T], count: int) -> list[T]:
    """``count`` items evenly spaced from first to last (all of them when there are fewer)."""
    if count >= len(items):
        return list(items)
    if count == 1:
        return [items[0]]
    return [items[round(i * (len(items) - 1) / (count - 1))] for i in range(count)]


def story_prompts(frame: PromptFrame, count_tokens: Callable[[str], int], count: int) -> list[str]:
    """``count`` openings as the product prompts them, of lengths spread over ``PROMPT_TOKENS``."""
    low, high = PROMPT_TOKENS
    rendered = [frame.around(build_prompt(snapshot(o), PromptLimits(4096), count_tokens)) for o in OPENINGS]
    fitting = sorted((p for p in rendered if low <= count_tokens(p) <= high), key=count_tokens)
    return spread(fitting, count)


def long_prompt(frame: PromptFrame, count_tokens: Callable[[str], int], tokens: int) -> str:
    """One long story (the English openings' passages in a row) as the product prompts it, within
    ``tokens`` tokens, the frame included."""
    first = OPENINGS[0]
    passages = tuple(text for o in OPENINGS if o.language == "en" for _, text in o.passages)
    story = replace(snapshot(first), passages=passages)
    limits = PromptLimits(tokens - count_tokens(frame.overhead()), window_step=1)
    return frame.around(build_prompt(story, limits, count_tokens))


# ------------------------------------------------------------------------------ the systems


def storybot_runner(backend: Any) -> Runner:
    """``LocalBackend.generate``: one call with every request, which the backend batches."""

    def run(prompts: Sequence[str], new_tokens: int) -> None:
        sampling = Sampling(
            temperature=TEMPERATURE,
            top_k=TOP_K,
            top_p=TOP_P,
            repetition_penalty=REPETITION_PENALTY,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
        )
        backend.generate([GenerationRequest(prompt, sampling) for prompt in prompts])

    return run


def transformers_runner(folder: str) -> Runner:
    """``AutoModelForCausalLM.generate`` in float32; several prompts are one left-padded batch."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()

    def run(prompts: Sequence[str], new_tokens: int) -> None:
        inputs = tokenizer(list(prompts), return_tensors="pt", padding=True)
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                do_sample=True,
                temperature=TEMPERATURE,
                top_k=TOP_K,
                top_p=TOP_P,
                repetition_penalty=REPETITION_PENALTY,
                min_new_tokens=new_tokens,
                max_new_tokens=new_tokens,
                pad_token_id=tokenizer.pad_token_id,
            )
        written = output.shape[1] - inputs["input_ids"].shape[1]
        if written != new_tokens:
            raise RuntimeError(f"transformers wrote {written} tokens instead of {new_tokens}")

    return run


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy


def completion(url: str, prompt: str, new_tokens: int) -> dict[str, Any]:
    """One ``POST /completion`` that writes exactly ``new_tokens``; the server's timings."""
    body = {
        "prompt": prompt,
        "n_predict": new_tokens,
        "ignore_eos": True,
        "cache_prompt": False,
        "temperature": TEMPERATURE,
        "top_k": TOP_K,
        "top_p": TOP_P,
        "min_p": 0.0,  # llama.cpp's default is 0.05; the others have no such cut
        "repeat_penalty": REPETITION_PENALTY,
    }
    request = urllib.request.Request(
        f"{url}/completion", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with _OPENER.open(request, timeout=600) as response:
        timings: dict[str, Any] = json.load(response).get("timings", {})
    if timings.get("predicted_n") != new_tokens:
        raise RuntimeError(f"{url} wrote {timings.get('predicted_n')} tokens instead of {new_tokens}")
    return timings


def llama_runner(url: str) -> Runner:
    """Every prompt its own request, all sent at once (one thread each)."""

    def run(prompts: Sequence[str], new_tokens: int) -> float:
        with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
            timings = list(pool.map(lambda prompt: completion(url, prompt, new_tokens), prompts))
        return max(float(t["prompt_ms"]) for t in timings)

    return run


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def llama_server(binary: Path, model: Path, threads: int) -> Iterator[str]:
    """A ``llama-server`` for ``model`` on a free local port, stopped afterwards; its URL."""
    port = free_port()
    command: list[str | Path] = [
        binary,
        "-m",
        model,
        "-t",
        str(threads),
        "-np",
        str(LLAMA_SLOTS),
        "-c",
        str(LLAMA_CONTEXT),
    ]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_healthy(url, process, log)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    """Until ``GET /health`` answers 200 (the model is loaded); raises if the server exits first."""
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"llama-server exited ({process.returncode}): " + " | ".join(tail))
        try:
            with _OPENER.open(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass  # not listening yet, or 503 while loading
        time.sleep(0.2)
    raise RuntimeError(f"llama-server at {url} was not ready within {HEALTH_TIMEOUT_S:.0f} s")


def requantized(quantize: Path, source: Path, kind: str) -> Path:
    """``source`` as a ``kind`` GGUF file in ``PEERS_DIR``; written beside it and renamed, once."""
    target = PEERS_DIR / f"{source.stem.rsplit('.', 1)[0]}.{kind}.gguf"
    if target.is_file():
        return target
    print(f"making {target} with llama-quantize (once)…", flush=True)
    PEERS_DIR.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.partial")
    try:
        done = subprocess.run(
            [quantize, "--allow-requantize", source, partial, kind],
            check=False,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"llama-quantize failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
        partial.rename(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


# ------------------------------------------------------------------------------ measuring


def timed(action: Callable[[], object]) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def measure(
    system: str, run: Runner, prompts: Sequence[str], new_tokens: int, long: str, repeats: int
) -> tuple[Throughput, FirstToken]:
    """Both throughput figures and the time to first token of one system, after a warm-up."""
    run(["Once upon a time"], 2)  # first-use costs (thread pools, allocators) count nowhere
    tokens = len(prompts) * new_tokens
    one_after_another = tokens / timed(lambda: [run([prompt], new_tokens) for prompt in prompts])
    all_at_once = tokens / timed(lambda: run(prompts, new_tokens))
    firsts: list[tuple[float, float | None]] = []
    for _ in range(repeats):
        began = time.perf_counter()
        reported = run([long], 1)
        firsts.append(((time.perf_counter() - began) * 1000, reported))
    reports = [r for _, r in firsts if r is not None]
    first = FirstToken(
        system,
        round(statistics.median(ms for ms, _ in firsts), 1),
        round(statistics.median(reports), 1) if reports else None,
    )
    print(
        f"{system}: {one_after_another:.1f} tokens/s one after another, {all_at_once:.1f} at once; "
        f"first token {first.ms:.0f} ms",
        flush=True,
    )
    return Throughput(system, round(one_after_another, 2), round(all_at_once, 2)), first


def measure_llama(
    binary: Path | None, url: str | None, threads: int, measure_one: Callable[[str, Runner], None]
) -> None:
    """Every llama.cpp row there is a server for; a variant that fails is reported and skipped."""
    if url is not None:
        measure_one(f"llama.cpp at {url}", llama_runner(url.rstrip("/")))
    if binary is None:
        if url is None:
            print("llama.cpp rows skipped: no llama-server (`make llama-server`, or --llama-server URL)", flush=True)
        return
    shipped = bundled_file(MODEL)
    for kind in (*LLAMA_TYPES, None):
        label = f"llama.cpp {kind}" if kind else f"llama.cpp {SHIPPED_TYPE}, shipped"
        try:
            model = requantized(binary.with_name("llama-quantize"), shipped, kind) if kind else shipped
            with llama_server(binary, model, threads) as server:
                measure_one(label, llama_runner(server))
        except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as error:
            print(f"{label}: skipped: {error}", flush=True)


# ------------------------------------------------------------------------------ the report


def ratio(value: float | None, reference: float | None) -> str:
    """``value / reference`` as "1.23x"; "-" when either is missing or the reference is 0."""
    if value is None or not reference:
        return "-"
    return f"{value / reference:.2f}x"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table with padded columns (readable as text too); numbers right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def throughput_table(rows: Sequence[Throughput], reference: str, at_once: int) -> str:
    """Tokens per second of each system, and each as a multiple of the ``reference`` system's."""
    ref = next((row for row in rows if row.system == reference), None)
    header = [
        "system",
        "one after another (tokens/s)",
        f"{at_once} at once (tokens/s)",
        "vs storybot, one after another",
        f"vs storybot, {at_once} at once",
    ]
    return markdown_table(
        header,
        [
            [
                row.system,
                f"{row.one_after_another:.1f}",
                f"{row.all_at_once:.1f}",
                ratio(row.one_after_another, ref.one_after_another if ref else None),
                ratio(row.all_at_once, ref.all_at_once if ref else None),
            ]
            for row in rows
        ],
    )


def first_token_table(rows: Sequence[FirstToken], reference: str) -> str:
    """Time to first token of each system, and each as a multiple of the ``reference`` system's."""
    ref = next((row for row in rows if row.system == reference), None)
    header = ["system", "time to first token (ms)", "llama.cpp timings.prompt_ms", "vs storybot"]
    return markdown_table(
        header,
        [
            [
                row.system,
                f"{row.ms:.0f}",
                "-" if row.prompt_ms is None else f"{row.prompt_ms:.0f}",
                ratio(row.ms, ref.ms if ref else None),
            ]
            for row in rows
        ],
    )


def machine(threads: int) -> dict[str, Any]:
    """The CPU, the features that decide the kernels, torch's view of them, and the threads."""
    return {**cpu_info(), "threads": threads}


def describe_machine(report: dict[str, Any]) -> str:
    return f"{describe_cpu(report)}; {report['threads']} threads"


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="storybot bench peers", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_PROMPTS} prompts, {QUICK_NEW_TOKENS} new tokens")
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    parser.add_argument(
        "--threads", type=int, metavar="N", help="torch and llama.cpp threads (default: torch's default)"
    )
    parser.add_argument(
        "--quantize",
        choices=("auto", "none", "int8", "int4"),
        default="auto",
        help="model.quantize for storybot (default: auto)",
    )
    parser.add_argument("--llama-server", metavar="URL", help="also measure this running llama-server")
    parser.add_argument(
        "--llama-server-bin",
        type=Path,
        metavar="PATH",
        help=f"llama-server to start for each variant (default: {LLAMA_SERVER_BIN})",
    )
    args = parser.parse_args(argv)
    if args.llama_server_bin is not None and not args.llama_server_bin.is_file():
        parser.error(f"--llama-server-bin: there is no file {args.llama_server_bin}")
    binary = args.llama_server_bin or (LLAMA_SERVER_BIN if LLAMA_SERVER_BIN.is_file() else None)

    import torch

    from bot.generation.local import LocalBackend

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    new_tokens = QUICK_NEW_TOKENS if args.quick else NEW_TOKENS
    repeats = QUICK_FIRST_TOKEN_REPEATS if args.quick else FIRST_TOKEN_REPEATS
    report: dict[str, Any] = {"machine": machine(threads)}
    print(describe_machine(report["machine"]), flush=True)

    folder = model_source(MODEL)
    model = load_config(Path("/dev/null"), env={}).model
    model = replace(
        model, name=folder, prefix_cache_mb=0, quantize=args.quantize, local_files_only=True, threads=threads
    )
    backend = LocalBackend(model)
    backend.load()
    prompts = story_prompts(backend.prompt_frame, backend.count_tokens, QUICK_PROMPTS if args.quick else PROMPTS)
    long = long_prompt(backend.prompt_frame, backend.count_tokens, LONG_PROMPT_TOKENS)
    storybot = f"storybot local backend (quantize {model.quantize}: {backend.quantization})"
    report.update(
        model=MODEL,
        new_tokens=new_tokens,
        prompt_tokens=[backend.count_tokens(p) for p in prompts],
        long_prompt_tokens=backend.count_tokens(long),
        storybot_quantize=model.quantize,
        storybot_weights=backend.quantization,
        storybot_dtype=model.dtype,
        transformers_dtype="float32",
    )
    print(
        f"model {MODEL}; {len(prompts)} prompts of {report['prompt_tokens']} tokens, {new_tokens} new tokens "
        f"each; first token of a {report['long_prompt_tokens']}-token prompt; storybot: model.dtype {model.dtype}, "
        f"model.quantize {model.quantize} -> weights {backend.quantization}; transformers: float32",
        flush=True,
    )

    throughput: dict[str, Throughput] = {}
    first_token: dict[str, FirstToken] = {}

    def measure_one(system: str, run: Runner) -> None:
        throughput[system], first_token[system] = measure(system, run, prompts, new_tokens, long, repeats)

    measure_one(storybot, storybot_runner(backend))
    measure_one("transformers generate (float32)", transformers_runner(folder))
    measure_llama(binary, args.llama_server, threads, measure_one)

    order = ["transformers generate (float32)", storybot, *(s for s in throughput if s.startswith("llama.cpp"))]
    print()
    print(throughput_table([throughput[s] for s in order], storybot, len(prompts)))
    print()
    print(f"time to first token, {report['long_prompt_tokens']}-token prompt, no prefix cache (wall time of a")
    print("request for one new token; llama.cpp's own prompt processing time beside it):")
    print()
    print(first_token_table([first_token[s] for s in order], storybot))
    report.update(
        storybot_system=storybot,
        throughput=[asdict(throughput[s]) for s in order],
        first_token=[asdict(first_token[s]) for s in order],
    )
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
