"""Where a decoding step's and a prompt's time goes, for each way the local backend can run.

    python -m bench.steps [--model NAME] [--length N] [--prompt N] [--json]

For the model (default: the bundled SmolLM2-135M), it times one decoding step of 1 and of 8 rows
whose stories are ``--length`` tokens long (default 300), and the prefill of one ``--prompt``-token
prompt (default 900), through transformers' own forward (float32) and through the compact
forward with float32, int8 and int4 weights; then it profiles the int4 step and sorts its time
into weights (the quantized matmuls), the output layer, attention, and everything else (norms,
rotary, casts, cache writes, Python). These are the figures the README's "where the time goes"
cites; ``storybot bench`` measures the whole product path.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import AutoModelForCausalLM

from bench.harness import cpu_info, describe_cpu
from bot.generation.decoding import growing_cache
from bot.generation.llama_forward import LlamaForward
from bot.generation.model_files import model_source

STEPS = 20
KERNELS = {
    "_weight_int4pack_mm_for_cpu": "int4 weights",
    "_weight_int8pack_mm": "int8 weights (output layer)",
    "_scaled_dot_product_flash_attention_for_cpu": "attention",
}


def decoder_of(model: Any, variant: str) -> Callable[..., Any]:
    """The forward to time: transformers' own, or the compact one with ``variant`` weights."""
    if variant == "transformers":
        return lambda **inputs: model(**inputs, use_cache=True)
    return LlamaForward(model, variant, torch.float32)


def decoding(forward: Callable[..., Any], rows: int, length: int, layers: int) -> Callable[[int], None]:
    """Step ``i`` of decoding ``rows`` stories of ``length`` tokens, their prompts encoded already."""
    cache = growing_cache(layers)
    ids = torch.randint(100, 40000, (rows, length))
    positions = torch.arange(length).expand(rows, length)
    forward(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=positions, cache=cache, logits_to_keep=1)

    def step(i: int) -> None:
        mask = torch.ones(rows, length + i + 1, dtype=torch.long)
        position = torch.full((rows, 1), length + i)
        forward(input_ids=ids[:, :1], attention_mask=mask, position_ids=position, cache=cache, logits_to_keep=1)

    for i in range(3):  # first-use costs
        step(i)
    return step


def step_ms(step: Callable[[int], None], first: int = 3) -> float:
    """Mean time of ``STEPS`` decoding steps."""
    began = time.perf_counter()
    for i in range(first, first + STEPS):
        step(i)
    return (time.perf_counter() - began) / STEPS * 1000


def prefill_ms(forward: Callable[..., Any], tokens: int, layers: int) -> float:
    ids = torch.randint(100, 40000, (1, tokens))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "position_ids": torch.arange(tokens)[None]}
    forward(**inputs, cache=growing_cache(layers), logits_to_keep=1)  # first-use costs
    began = time.perf_counter()
    forward(**inputs, cache=growing_cache(layers), logits_to_keep=1)
    return (time.perf_counter() - began) * 1000


def breakdown(forward: Callable[..., Any], rows: int, length: int, layers: int) -> dict[str, float]:
    """Milliseconds per step in each kind of work, from torch's profiler (self CPU time)."""
    step = decoding(forward, rows, length, layers)
    total = step_ms(step)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        step_ms(step, first=3 + STEPS)
    share: dict[str, float] = dict.fromkeys(KERNELS.values(), 0.0)
    everything = 0.0
    for event in profiler.key_averages():
        everything += event.self_cpu_time_total
        name = KERNELS.get(event.key.removeprefix("aten::"))
        if name:
            share[name] += event.self_cpu_time_total
    figures = {name: total * spent / everything for name, spent in share.items()}
    figures["everything else"] = total - sum(figures.values())
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.steps", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled:smollm2-135m")
    parser.add_argument("--length", type=int, default=300, help="tokens in each story already (default 300)")
    parser.add_argument("--prompt", type=int, default=900, help="tokens in the prefilled prompt (default 900)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = parser.parse_args(argv)
    machine = cpu_info()
    print(describe_cpu(machine), f"{torch.get_num_threads()} threads", flush=True)
    model: Any = AutoModelForCausalLM.from_pretrained(model_source(args.model), dtype=torch.float32)
    model.eval()
    layers = model.config.num_hidden_layers
    report: dict[str, Any] = {**machine, "model": args.model, "length": args.length, "prompt": args.prompt}
    with torch.inference_mode():
        for variant in ("transformers", "none", "int8", "int4"):
            forward = decoder_of(model, variant)
            one = step_ms(decoding(forward, 1, args.length, layers))
            eight = step_ms(decoding(forward, 8, args.length, layers))
            prompt = prefill_ms(forward, args.prompt, layers)
            label = "transformers forward" if variant == "transformers" else f"compact forward, {variant}"
            report[variant] = {"step_1_ms": round(one, 1), "step_8_ms": round(eight, 1), "prefill_ms": round(prompt)}
            print(
                f"{label:28} step of 1 row {one:6.1f} ms ({1000 / one:5.1f} tokens/s), of 8 rows {eight:6.1f} ms "
                f"({8000 / eight:5.1f} tokens/s); {args.prompt}-token prompt {prompt:6.0f} ms",
                flush=True,
            )
        int4 = decoder_of(model, "int4")
        for rows in (1, 8):
            parts = breakdown(int4, rows, args.length, layers)
            report[f"int4_step_{rows}_parts_ms"] = {name: round(ms, 2) for name, ms in parts.items()}
            print(f"int4 step of {rows} row(s): " + ", ".join(f"{name} {ms:.1f} ms" for name, ms in parts.items()))
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
