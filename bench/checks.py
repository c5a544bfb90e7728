"""Content checks: how long each checker adds to a passage.

    storybot bench checks [--quick] [--json]

Every bot passage waits for its rating's checkers before it is shown whole, and a person's
passage before it is stored, so each checker's time is added to every turn. This measures it on
200 passages (``--quick``: 50) of 60 to 250 words, cut from the prose of ``bench.finetune_corpus``
(its paragraphs in order, each passage's length drawn with seed 0), each checked once, one after
another, from the event loop as the bot calls them, for a story rated general (the most word
lists), after 20 checks of other passages (timed apart: a classifier's first checks in a process
take several times as long, while torch warms up):

- ``words``: ``WordListChecker.from_config`` on the default ``[safety]`` (the shipped lists);
- ``classifier``: ``ClassifierChecker`` on a random-weight BERT built into a temporary folder
  (``bench.models.build_random_classifier``): 4 layers, hidden size 256, 4 heads, feed-forward
  1024, 512 positions, three labels, a byte-level BPE tokenizer trained on the corpus (about
  2,300 tokens, so about 4 million parameters: BERT-mini's shape, whose 30,522-token vocabulary
  adds embeddings that cost no time). A BERT-base toxicity model (12 layers, hidden 768, about
  110 million parameters) does about 27 times the work per token in its layers: expect its
  times to be many times these. Its load is timed apart (torch already imported);
- ``moderation``: ``ModerationChecker`` against ``tests.fake_moderation`` on loopback, in this
  process: the HTTP round trip and JSON only, not a real service's network or judging time.

Printed: the CPU (and what torch computes with) and torch's threads; the passages; per checker
the mean, p50 and p95 milliseconds per passage, and the mean of its first 20 checks; the
classifier's load. ``--json``: one JSON object on the last line.
Seconds are wall time on a machine that may be doing other work: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.finetune_corpus import STORIES
from bench.harness import cpu_info, describe_cpu, percentile
from bench.models import build_random_classifier
from bot.config import SafetyConfig
from bot.safety.checker import Checker, Standard
from bot.safety.classifier import ClassifierChecker
from bot.safety.moderation import ModerationChecker
from bot.safety.wordlist import WordListChecker
from tests.fake_moderation import running_fake_moderation

PASSAGES = 200
QUICK_PASSAGES = 50
FIRST_CHECKS = 20  # before the timed ones, on other passages
MIN_WORDS, MAX_WORDS = 60, 250
LABELS = ("toxic", "obscene", "threat")
CLASSIFIER_SHAPE = {
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 1024,
    "max_position_embeddings": 512,
}
VOCAB_SIZE = 8000  # at most: the corpus is small, the trained tokenizer has fewer
STANDARD = Standard()  # general: every word list applies


def passages(count: int, seed: int = 0) -> list[str]:
    """``count`` passages of ``MIN_WORDS`` to ``MAX_WORDS`` words, the corpus's paragraphs in
    order (from the start again when they run out), each cut at a length drawn with ``seed``."""
    paragraphs = [paragraph for story in STORIES for paragraph in story.passages]
    lengths = random.Random(seed)
    texts: list[str] = []
    next_paragraph = 0
    while len(texts) < count:
        wanted = lengths.randint(MIN_WORDS, MAX_WORDS)
        words: list[str] = []
        while len(words) < wanted:
            words += paragraphs[next_paragraph % len(paragraphs)].split()
            next_paragraph += 1
        texts.append(" ".join(words[:wanted]))
    return texts


async def milliseconds(checker: Checker, texts: list[str]) -> list[float]:
    """How long ``checker`` takes on each text, one after another."""
    times: list[float] = []
    for text in texts:
        began = time.perf_counter()
        await checker.check(text, STANDARD)
        times.append((time.perf_counter() - began) * 1000)
    return times


async def timed(checker: Checker, first: list[str], texts: list[str]) -> dict[str, float]:
    """Milliseconds per text of ``texts``, after ``first`` (their mean is reported apart: the
    first checks of a process pay for torch's warming up)."""
    warming = await milliseconds(checker, first)
    ms = await milliseconds(checker, texts)
    return {
        "mean_ms": round(statistics.fmean(ms), 3),
        "p50_ms": round(percentile(ms, 50), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "first_checks_mean_ms": round(statistics.fmean(warming), 3),
    }


def describe(name: str, figures: dict[str, float]) -> str:
    return (
        f"{name:10}: mean {figures['mean_ms']:7.2f} ms, p50 {figures['p50_ms']:7.2f} ms, "
        f"p95 {figures['p95_ms']:7.2f} ms per passage (its first {FIRST_CHECKS} checks: "
        f"mean {figures['first_checks_mean_ms']:.2f} ms)"
    )


async def measure(texts: list[str], classifier_dir: Path, report: dict[str, Any]) -> None:
    """Each checker's figures into ``report["checkers"]``, printed as they come."""
    first = passages(FIRST_CHECKS, seed=1)
    figures: dict[str, dict[str, float]] = {}
    report["checkers"] = figures
    figures["words"] = await timed(WordListChecker.from_config(SafetyConfig()), first, texts)
    print(describe("words", figures["words"]), flush=True)

    classifier = ClassifierChecker(str(classifier_dir), [f"{LABELS[0]}=0.9"])
    began = time.perf_counter()
    await classifier.load()
    report["classifier_load_s"] = round(time.perf_counter() - began, 3)
    figures["classifier"] = await timed(classifier, first, texts)
    print(describe("classifier", figures["classifier"]), flush=True)

    async with running_fake_moderation() as server:
        moderation = ModerationChecker(server.url, api_key="bench-key")
        try:
            figures["moderation"] = await timed(moderation, first, texts)
        finally:
            await moderation.close()
    print(describe("moderation", figures["moderation"]), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="storybot bench checks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_PASSAGES} passages instead of {PASSAGES}")
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = parser.parse_args(argv)

    import torch
    from safetensors import safe_open
    from transformers import AutoTokenizer

    info = cpu_info()
    print(describe_cpu(info), f"torch threads {torch.get_num_threads()}", sep="; ", flush=True)
    texts = passages(QUICK_PASSAGES if args.quick else PASSAGES)
    words = [len(text.split()) for text in texts]
    with tempfile.TemporaryDirectory() as folder:
        classifier_dir = Path(folder)
        build_random_classifier(
            classifier_dir, (p for s in STORIES for p in s.passages), VOCAB_SIZE, LABELS, **CLASSIFIER_SHAPE
        )
        tokenizer = AutoTokenizer.from_pretrained(classifier_dir)
        with safe_open(classifier_dir / "model.safetensors", framework="pt") as weights:
            parameters = sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())  # noqa: SIM118
        tokens = [len(tokenizer(text)["input_ids"]) for text in texts]
        classifier = {
            **CLASSIFIER_SHAPE,
            "vocab_size": tokenizer.vocab_size,
            "parameters": parameters,
            "labels": list(LABELS),
        }
        print(
            f"{len(texts)} passages from bench.finetune_corpus, {min(words)}-{max(words)} words "
            f"(mean {statistics.fmean(words):.0f}), {min(tokens)}-{max(tokens)} classifier tokens "
            f"(mean {statistics.fmean(tokens):.0f})",
            flush=True,
        )
        print(
            f"classifier: random BERT, {CLASSIFIER_SHAPE['num_hidden_layers']} layers, hidden "
            f"{CLASSIFIER_SHAPE['hidden_size']}, {CLASSIFIER_SHAPE['num_attention_heads']} heads, feed-forward "
            f"{CLASSIFIER_SHAPE['intermediate_size']}, vocabulary {tokenizer.vocab_size}, "
            f"{parameters / 1e6:.1f} M parameters",
            flush=True,
        )
        report: dict[str, Any] = {
            "cpu": info,
            "torch_threads": torch.get_num_threads(),
            "quick": args.quick,
            "passages": len(texts),
            "words": {"min": min(words), "max": max(words), "mean": round(statistics.fmean(words), 1)},
            "classifier_tokens": {"min": min(tokens), "max": max(tokens), "mean": round(statistics.fmean(tokens), 1)},
            "classifier": classifier,
        }
        asyncio.run(measure(texts, classifier_dir, report))
    print(f"classifier load: {report['classifier_load_s']:.2f} s (torch already imported)")
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
