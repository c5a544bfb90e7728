"""Quality of the bot's passages: storybot's product path against the "seed recipe" most bots copy.

    python -m bench.quality [--model NAME] [--samples N] [--quick] [--json] [--out FILE]
                            [--prompt-style STYLE] [--quantize Q] [--dtype D]
                            [--skip-seed-recipe | --skip-storybot] [--seed N]

Both systems continue the same story openings (``bench.openings``) with the same model:

- ``storybot``: the whole product path. A fresh SQLite database, ``open_app``; each opening is
  started with ``/story start`` in free mode, its other passages are added by other people, its
  memory, author's note and lore are set, then ``/story continue`` asks for a passage and
  ``/story retry`` for each further sample (a retry replaces the bot's last passage, so every
  sample continues the same opening). The product's own prompt, sampling settings (``ModelConfig``
  defaults: temperature, top-k, top-p, repetition penalty, 8 to 120 new tokens), stop rules and
  cleaning apply; a turn that stores nothing counts as an empty passage.
- ``seed_recipe``: ``model.generate(**tokenizer(text, return_tensors="pt"), do_sample=True,
  top_k=50, top_p=0.95, num_beams=5, max_new_tokens=N)`` on the opening as plain prose (title and
  passages), N being the product's ``max_new_tokens``, loaded with ``AutoModelForCausalLM`` as
  the recipe does (no dtype given); only the new tokens are decoded (special tokens skipped,
  as the recipe does) and stripped.

Why these figures: a small model's worst failures in a chat are not subtle prose flaws but junk
that no reader accepts: an empty or numbers-only message, a list ("1." "2."), echoed prompt
markup or chat-template tokens, lines written as a participant ("Mara: ..."), an assistant
talking about the story instead of telling it ("The following is a continuation..."), or an
answer in another language than the opening's. Then loops (repeated 4-grams), copying the
opening back (8-grams shared with it), samples that all say the same (distinct-2 across one
opening's samples), passages cut mid-sentence, passages that have left the story (they name
none of its people, places or things: ``Opening.anchors``), their length and speed. Seconds
are wall time on a machine that may be doing other work: compare them within one run.

Words are counted with each CJK character as its own unit in the n-gram figures; ``mean_words``
counts a CJK character as 1/1.5 of a word (a Chinese word averages about 1.5 characters), so
the Chinese opening's length is comparable with the others.

``--prompt-style`` (auto, completion or chat) sets ``model.prompt_style`` for the storybot side,
validated as ``STORYBOT_MODEL_PROMPT_STYLE`` would be; without it the product's default applies.
``--quantize`` (auto, none, int8, int4) and ``--dtype`` set ``model.quantize`` and ``model.dtype``
the same way.
The report says which style ran ("auto" resolved for the model). The seed recipe has no style:
it always continues the plain prose.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from bench.harness import TurnTimings, bench_config, cpu_info
from bench.openings import OPENINGS, Opening, quick_openings
from bot import commands as c
from bot.app import open_app
from bot.config import Config, ConfigError, ModelConfig, validate_setting
from bot.identity import Actor, ChannelRef
from bot.language import HAN, language_of
from bot.results import BOT_NAME, Result
from bot.sessions import SessionManager

DEFAULT_MODEL = "bundled:smollm2-135m"
DEFAULT_OUT = "bench-quality.md"
SYSTEMS = ("storybot", "seed_recipe")
QUICK_SAMPLES = 2
PRODUCT = ModelConfig()  # the product's default sampling settings

# ------------------------------------------------------------------------------ the metrics

_UNIT = re.compile(f"[{HAN}]|[^\\s{HAN}]+")
_EDGE_PUNCTUATION = re.compile(r"^[\W_]+|[\W_]+$")
_CJK_CHAR = re.compile(f"[{HAN}]")

# A list item: "1." "2)" "- " "* " "• " or a Markdown heading, at the very start.
_LIST_MARKER = re.compile(r"\s*(?:\d+[.)](?:\s|$)|[-*•]\s|#)")
# The product's prompt markup (bot.context) and chat-template tokens, anywhere in a passage.
_MARKUP = ("Title:", "Genre:", "[Memory", "[Author's note", "[Lore", "[Next:")
_CHAT_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
_ROLE_LINE = re.compile(r"^[ \t]*(?:<\|im_start\|>)?(?:assistant|user|system)[ \t]*$", re.MULTILINE)
# A sentence end, possibly followed by closing quotes or brackets, at the very end.
_COMPLETE = re.compile(r"[.!?…。！？][\"'”’»」』）)\]]*\s*\Z")

# An assistant talking about the story or to the user instead of telling it (chat models do).
_ASSISTANT_OPENERS = re.compile(
    r"\W*(?:sure|certainly|of course|absolutely|here is|here's|the following (?:is|story|passage|text)"
    r"|i'm so glad|i am so glad"
    r"|i'd be happy|i would be happy|i hope you|as an ai|let me)\b",
    re.IGNORECASE,
)
_ASSISTANT_ANYWHERE = re.compile(r"continuation of the|the story continues|as an ai\b|language model", re.IGNORECASE)
JUNK_KINDS = (
    "empty",
    "no_letters",
    "list_start",
    "prompt_markup",
    "chat_token",
    "role_line",
    "speaker_line",
    "assistant_talk",
    "wrong_language",
)


def units(text: str) -> list[str]:
    """Lower-case words without the punctuation around them; each CJK character is a unit."""
    found = (_EDGE_PUNCTUATION.sub("", token) for token in _UNIT.findall(text.lower()))
    return [token for token in found if token]


def ngrams(items: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(items[i : i + n]) for i in range(len(items) - n + 1)]


def repeat_rate(text: str, n: int = 4) -> float | None:
    """Share of the passage's n-grams that repeat an earlier one in it; None when it has none."""
    grams = ngrams(units(text), n)
    return 1 - len(set(grams)) / len(grams) if grams else None


def copy_rate(text: str, source: str, n: int = 8) -> float | None:
    """Share of the passage's n-grams that also occur in ``source``; None when it has none."""
    grams = ngrams(units(text), n)
    if not grams:
        return None
    seen = set(ngrams(units(source), n))
    return sum(gram in seen for gram in grams) / len(grams)


def distinct_n(texts: Iterable[str], n: int = 2) -> float | None:
    """Unique n-grams over all n-grams of several passages (none spans two); None when none."""
    grams = [gram for text in texts for gram in ngrams(units(text), n)]
    return len(set(grams)) / len(grams) if grams else None


def is_complete(text: str) -> bool:
    """Whether the passage ends with a sentence end (. ! ? … 。！？), maybe inside closing quotes."""
    return bool(_COMPLETE.search(text))


def word_count(text: str) -> float:
    """Words, a CJK character counting as 1/1.5 of one."""
    cjk = len(_CJK_CHAR.findall(text))
    return len(units(text)) - cjk + cjk / 1.5


def on_topic(text: str, anchors: Iterable[str]) -> bool:
    """Whether the passage names any of the story's anchors (``Opening.anchors``): at a word's
    start in any case ("map" finds "Maps"), a CJK anchor anywhere."""
    for anchor in anchors:
        start = "" if _CJK_CHAR.match(anchor) else r"(?<!\w)"
        if re.search(start + re.escape(anchor), text, re.IGNORECASE):
            return True
    return False


def junk_kinds(text: str, participants: Iterable[str], language: str | None = None) -> list[str]:
    """Why a passage is junk (``JUNK_KINDS``, in that order); empty when it is not.

    ``language`` is the opening's: a passage clearly in another one is junk to its readers.
    """
    if not text.strip():
        return ["empty"]
    kinds = []
    if not any(ch.isalpha() for ch in text):
        kinds.append("no_letters")
    if _LIST_MARKER.match(text):
        kinds.append("list_start")
    if any(marker in text for marker in _MARKUP):
        kinds.append("prompt_markup")
    if any(token in text for token in _CHAT_TOKENS):
        kinds.append("chat_token")
    if _ROLE_LINE.search(text):
        kinds.append("role_line")
    if _speaker_line(participants).search(text):
        kinds.append("speaker_line")
    if _ASSISTANT_OPENERS.match(text) or _ASSISTANT_ANYWHERE.search(text):
        kinds.append("assistant_talk")
    written_in = language_of(text)
    if language is not None and written_in is not None and written_in.code != language:
        kinds.append("wrong_language")
    return kinds


def _speaker_line(participants: Iterable[str]) -> re.Pattern[str]:
    """A line that starts with "Name:" (or "**Name:**", or a full-width colon) for a participant or the bot."""
    names = "|".join(re.escape(name) for name in sorted({*participants, BOT_NAME}, key=len, reverse=True))
    return re.compile(rf"^[ \t>*_\"“]*(?:{names})[ \t*_]*[:：]", re.MULTILINE | re.IGNORECASE)


# ------------------------------------------------------------------------------ summaries


@dataclass(frozen=True, slots=True)
class Sample:
    """One passage a system wrote, and how long it took."""

    text: str
    seconds: float
    error: str = ""  # storybot: why the turn stored no passage


def _mean(values: Iterable[float | None]) -> float | None:
    """The mean of the values that are not None; None when there are none (JSON has no NaN)."""
    kept = [value for value in values if value is not None]
    return statistics.fmean(kept) if kept else None


def summarize(openings: Sequence[Opening], samples: Sequence[Sequence[Sample]]) -> dict[str, Any]:
    """The figures of one system: ``samples[i]`` are its passages for ``openings[i]``.

    Rates over passages, except ``distinct_2`` (per opening, then averaged); the n-gram rates
    leave out passages too short to have any n-gram.
    """
    passages = [(opening, sample) for opening, row in zip(openings, samples, strict=True) for sample in row]
    kinds = [junk_kinds(sample.text, opening.participants, opening.language) for opening, sample in passages]
    counted = Counter(kind for found in kinds for kind in found)
    figures = {
        "passages": len(passages),
        "junk_rate": _mean(float(bool(found)) for found in kinds),
        "repeat_4gram": _mean(repeat_rate(sample.text) for _, sample in passages),
        "copy_8gram": _mean(copy_rate(sample.text, opening.source_text()) for opening, sample in passages),
        "distinct_2": _mean(distinct_n(sample.text for sample in row) for row in samples),
        "complete_rate": _mean(float(is_complete(sample.text)) for _, sample in passages),
        "on_topic_rate": _mean(float(on_topic(sample.text, opening.anchors)) for opening, sample in passages),
        "mean_words": _mean(word_count(sample.text) for _, sample in passages),
        "seconds_per_passage": _mean(sample.seconds for _, sample in passages),
        "junk_kinds": {kind: counted[kind] for kind in JUNK_KINDS if counted[kind]},
        "failed_turns": sum(bool(sample.error) for _, sample in passages),
    }
    return {key: round(value, 3) if isinstance(value, float) else value for key, value in figures.items()}


# ------------------------------------------------------------------------------ storybot


def product_config(
    model: str, db_path: Path, prompt_style: str | None, precision: dict[str, str] | None = None
) -> Config:
    """``bench_config`` with the product's own passage length (8 to 120 new tokens; the
    harness pins the minimum to the maximum) and, when given, a prompt style and precision
    (``quantize``, ``dtype``)."""
    config = bench_config(Path(model), db_path, PRODUCT.max_new_tokens, max_batch=1)
    overrides: dict[str, Any] = {"min_new_tokens": PRODUCT.min_new_tokens, **(precision or {})}
    if prompt_style is not None:
        if "prompt_style" not in {f.name for f in fields(ModelConfig)}:
            raise SystemExit("--prompt-style: this storybot has no model.prompt_style setting yet.")
        overrides["prompt_style"] = prompt_style
    try:
        checked = {
            key: validate_setting("model", key, value, f"--{key.replace('_', '-')}") for key, value in overrides.items()
        }
    except ConfigError as error:
        raise SystemExit(str(error)) from None
    return replace(config, model=replace(config.model, **checked))


async def write_with_storybot(openings: Sequence[Opening], samples: int, config: Config) -> list[list[Sample]]:
    """``samples`` bot passages for each opening, through the product path (``product_config``)."""
    async with open_app(config) as app:
        timings = TurnTimings()
        app.queue.add_listener(timings)
        problem = await app.queue.warm_up()  # loading the model is not part of any passage's time
        if problem is not None:
            raise SystemExit(f"the model did not load: {problem}")
        written = []
        for index, opening in enumerate(openings):
            channel = ChannelRef("bench", "quality", f"opening-{index}")
            asker = await start_story(app.sessions, channel, opening)
            row: list[Sample] = []
            for _ in range(samples):
                # Retry rewrites the bot's last passage; after a turn that stored none, continue.
                command = c.Retry() if row and not row[-1].error else c.Continue()
                row.append(await bot_turn(app.sessions, timings, channel, asker, command))
            written.append(row)
            print(f"  storybot   {index + 1:2}/{len(openings)} {opening.title}", flush=True)
    return written


async def start_story(sessions: SessionManager, channel: ChannelRef, opening: Opening) -> Actor:
    """Start the opening's story as its people would; returns the last writer, who asks the bot."""
    actors = {name: Actor(f"bench-{number}", name) for number, name in enumerate(opening.participants)}
    (first_name, first_text), *others = opening.passages
    starter = actors[first_name]
    commands: list[tuple[Actor, c.Command]] = [
        (starter, c.Start(title=opening.title, genre=opening.genre, mode=c.Mode.FREE, opening=first_text)),
        *((actors[name], c.Add(text)) for name, text in others),
    ]
    if opening.memory:
        commands.append((starter, c.Memory(opening.memory)))
    if opening.note:
        commands.append((starter, c.Note(opening.note)))
    commands += [(starter, c.LoreAdd(entry.keys, entry.text)) for entry in opening.lore]
    for actor, command in commands:
        result = await sessions.handle(channel, actor, command)
        if not result.ok:
            raise SystemExit(f"{opening.title}: /story {command.name} was refused: {result.text}")
    return actors[opening.passages[-1][0]]


async def bot_turn(
    sessions: SessionManager, timings: TurnTimings, channel: ChannelRef, actor: Actor, command: c.Command
) -> Sample:
    """Ask for a bot passage and wait for the queue to finish it; its text, or why there is none."""
    began = time.perf_counter()
    asked = await sessions.handle(channel, actor, command)
    if asked.job_id is None:
        raise SystemExit(f"the bot was not asked to write: {asked.text}")
    await timings.finished(asked.job_id).wait()
    seconds = time.perf_counter() - began
    result = timings.results.get(asked.job_id)
    if isinstance(result, Result) and result.ok and result.passage is not None:
        return Sample(result.passage.text, seconds)
    return Sample("", seconds, error=result.text if isinstance(result, Result) else "no passage stored")


# ------------------------------------------------------------------------------ the seed recipe


def model_folder(name: str) -> str:
    """What ``from_pretrained`` loads for a ``model.name``: the product's resolver where it exists."""
    try:
        from bot.generation.model_files import model_source
    except ImportError:  # a storybot without bundled models: a folder or hub id, as given
        return name
    from bot.generation.backend import ModelUnavailable

    try:
        return model_source(name, getattr(PRODUCT, "cache_dir", ""))
    except ModelUnavailable as error:
        raise SystemExit(str(error)) from None


def write_with_seed_recipe(openings: Sequence[Opening], samples: int, model: str) -> tuple[list[list[Sample]], str]:
    """``samples`` passages per opening from the copied recipe; and the dtype it ran in."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    # Silences the recipe's own warnings (no pad token, ...).
    transformers_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # transformers' logging helpers are untyped
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # transformers' logging helpers are untyped
    folder = model_folder(model)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    lm = AutoModelForCausalLM.from_pretrained(folder).eval()  # type: ignore[no-untyped-call]  # transformers' PreTrainedModel.eval is untyped
    lm.generate(**tokenizer("Warm up.", return_tensors="pt"), max_new_tokens=2)  # first-use costs
    written = []
    for index, opening in enumerate(openings):
        inputs = tokenizer(opening.as_prose(), return_tensors="pt")
        row = []
        for _ in range(samples):
            began = time.perf_counter()
            with torch.inference_mode():
                output = lm.generate(
                    **inputs, do_sample=True, top_k=50, top_p=0.95, num_beams=5, max_new_tokens=PRODUCT.max_new_tokens
                )
            text = str(tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))
            row.append(Sample(text.strip(), time.perf_counter() - began))
        written.append(row)
        print(f"  seed recipe {index + 1:2}/{len(openings)} {opening.title}", flush=True)
    return written, str(lm.dtype).removeprefix("torch.")


# ------------------------------------------------------------------------------ reports

_ROWS = (
    ("junk_rate", "junk rate (share of passages)"),
    ("repeat_4gram", "repeated 4-grams in a passage"),
    ("copy_8gram", "8-grams copied from the opening"),
    ("distinct_2", "distinct-2 across an opening's samples"),
    ("complete_rate", "ends at a sentence end"),
    ("on_topic_rate", "names the story's people or things"),
    ("mean_words", "mean words"),
    ("seconds_per_passage", "seconds per passage"),
    ("failed_turns", "turns that stored nothing"),
)


def table(report: dict[str, Any]) -> str:
    """Both systems side by side, for a person."""
    systems = [name for name in SYSTEMS if name in report]
    width = max(len(label) for _, label in _ROWS)
    lines = [f"{'':{width}}  " + "".join(f"{name:>14}" for name in systems)]
    for key, label in _ROWS:
        lines.append(f"{label:{width}}  " + "".join(f"{report[name][key]:>14}" for name in systems))
    for name in systems:
        kinds = ", ".join(f"{kind} {count}" for kind, count in report[name]["junk_kinds"].items()) or "none"
        lines.append(f"junk kinds, {name}: {kinds}")
    return "\n".join(lines)


def describe_machine(report: dict[str, Any]) -> str:
    flags = ", ".join(f"{flag} {'yes' if report[flag] else 'no'}" for flag in ("avx2", "avx512f", "avx512_bf16"))
    dtypes = ", ".join(f"{name} {report['dtype'][name]}" for name in SYSTEMS if name in report["dtype"])
    return (
        f"CPU {report['cpu']}, {report['cpus']} CPUs, {flags}; torch {report['device']}, {dtypes}, "
        f"{report['torch_threads']} threads; model {report['model']}"
    )


def markdown(report: dict[str, Any], openings: Sequence[Opening], written: dict[str, list[list[Sample]]]) -> str:
    """Every opening with each system's passages after it, for a person to read."""
    out = [
        "# storybot quality benchmark",
        "",
        describe_machine(report),
        "",
        f"{report['samples']} samples per opening and system; prompt style: {report['prompt_style']}.",
        "",
        "```",
        table(report),
        "```",
        "",
    ]
    for index, opening in enumerate(openings):
        out += [f"## {index + 1}. {opening.title} ({opening.genre})", ""]
        out += [
            f"- **{label}:** {text}"
            for label, text in (("Memory", opening.memory), ("Author's note", opening.note))
            if text
        ]
        out += [f"- **Lore** ({', '.join(entry.keys)}): {entry.text}" for entry in opening.lore]
        out += ["", *(f"> **{name}:** {text}\n>" for name, text in opening.passages), ""]
        for name, rows in written.items():
            out += [f"### {name}", ""]
            for number, sample in enumerate(rows[index], 1):
                kinds = junk_kinds(sample.text, opening.participants, opening.language)
                tags = f" — junk: {', '.join(kinds)}" if kinds else ""
                error = f" — {sample.error}" if sample.error else ""
                out += [
                    f"**Sample {number}** ({sample.seconds:.1f} s{tags}{error})",
                    "",
                    "```text",
                    sample.text.replace("```", "ʼʼʼ"),
                    "```",
                    "",
                ]
    return "\n".join(out)


def machine(model: str, dtype: dict[str, str]) -> dict[str, Any]:
    """CPU, flags and torch settings, as the other benchmarks print them."""
    import torch

    from bot.generation.local import pick_device

    return {
        **cpu_info(),
        "device": pick_device(PRODUCT.device),
        "dtype": dtype,
        "torch_threads": torch.get_num_threads(),
        "model": model,
    }


def prompt_style_used(config: ModelConfig, model: str) -> str:
    """The configured ``model.prompt_style`` and, for ``auto``, what it comes to for this model
    (chat wherever the tokenizer has a chat template, as ``bot.generation.local`` decides)."""
    style: str | None = getattr(config, "prompt_style", None)
    if style is None:
        return "completion (this storybot has no model.prompt_style)"
    if style != "auto":
        return style
    from transformers import AutoTokenizer

    template = getattr(AutoTokenizer.from_pretrained(model_folder(model)), "chat_template", None)
    return f"auto ({'chat' if template else 'completion'} for this model)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"a model name or folder (default {DEFAULT_MODEL})")
    parser.add_argument("--samples", type=int, default=3, help="passages per opening and system (default 3)")
    parser.add_argument("--quick", action="store_true", help=f"6 openings, {QUICK_SAMPLES} samples each")
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    parser.add_argument(
        "--out", type=Path, default=Path(DEFAULT_OUT), help=f"the Markdown file (default {DEFAULT_OUT})"
    )
    parser.add_argument("--prompt-style", help="model.prompt_style for the storybot side")
    parser.add_argument("--quantize", help="model.quantize for the storybot side (auto, none, int8, int4)")
    parser.add_argument("--dtype", help="model.dtype for the storybot side (auto, float32, bfloat16, float16)")
    skip = parser.add_mutually_exclusive_group()
    skip.add_argument("--skip-seed-recipe", action="store_true", help="measure the storybot side only")
    skip.add_argument("--skip-storybot", action="store_true", help="measure the seed recipe only")
    parser.add_argument("--seed", type=int, default=0, help="torch's random seed before each system (default 0)")
    args = parser.parse_args(argv)
    openings = quick_openings() if args.quick else OPENINGS
    samples = QUICK_SAMPLES if args.quick else args.samples
    if samples < 1:
        parser.error("--samples must be at least 1")

    import torch

    began = time.perf_counter()
    written: dict[str, list[list[Sample]]] = {}
    print(f"{len(openings)} openings, {samples} samples each, model {args.model}", flush=True)
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as folder:
        precision = {key: value for key, value in (("quantize", args.quantize), ("dtype", args.dtype)) if value}
        config = product_config(args.model, Path(folder) / "quality.db", args.prompt_style, precision)
        dtype = {"storybot": f"model.dtype {config.model.dtype}, model.quantize {config.model.quantize}"}
        style = prompt_style_used(config.model, args.model)
        if not args.skip_storybot:
            print(f"storybot's prompt style: {style}", flush=True)
            written["storybot"] = asyncio.run(write_with_storybot(openings, samples, config))
    if not args.skip_seed_recipe:
        torch.manual_seed(args.seed)
        written["seed_recipe"], dtype["seed_recipe"] = write_with_seed_recipe(openings, samples, args.model)
    report: dict[str, Any] = {name: summarize(openings, rows) for name, rows in written.items()}
    report.update(
        machine(args.model, dtype),
        openings=len(openings),
        samples=samples,
        prompt_style=style,
        seconds=round(time.perf_counter() - began, 1),
    )
    args.out.write_text(markdown(report, openings, written), encoding="utf-8")
    print(describe_machine(report))
    print(table(report))
    print(f"passages for reading: {args.out}; {report['seconds']} s in all", flush=True)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))


if __name__ == "__main__":
    main()
