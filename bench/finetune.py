"""Fine-tuning: how long ``storybot finetune`` takes per 1,000 training tokens, and what it does to the held-out perplexity.

    storybot bench finetune [--model NAME] [--epochs N] [--context N] [--threads N] [--dtype D] [--stories N] [--json]

The sample community (``bench.finetune_corpus``: twelve finished stories of one harbour town,
168 passages, people and the bot taking turns) is imported into a fresh SQLite database as
finished stories, read back the way ``storybot finetune`` reads them, split by story (the
command's default: a fifth held out, seed 0), and an adapter is trained with the command's
defaults on the bundled model (``bundled:smollm2-135m``) unless ``--model`` names another.
``--dtype float32`` measures without the bfloat16 autocast that ``auto`` uses on a CPU with
AVX-512 BF16.

Printed: the CPU (and what torch computes with), dtype and threads; the corpus and the split;
the training tokens (contexts and passages, every epoch) and the seconds per 1,000 of them; the
held-out loss and perplexity before and after. Seconds are wall time on a machine that may be
doing other work: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.finetune_corpus import STORIES, CorpusStory
from bench.harness import bench_config, cpu_info, describe_cpu
from bot.config import Config
from bot.export.archive import import_story
from bot.export.model import ExportParticipant, ExportPassage, ExportStory
from bot.identity import ChannelRef
from bot.tuning.examples import Selection, SourceStory, read_stories, split_by_story, stories_counted
from bot.tuning.settings import Settings
from bot.words import counted
from storage.database import Database

DEFAULT_MODEL = "bundled:smollm2-135m"
CHANNEL = ChannelRef("console", "local", "greyhaven")
PEOPLE = (("u-mara", "Mara"), ("u-tobias", "Tobias"), ("u-ines", "Ines"))
START = datetime(2025, 1, 1, 20, 0, tzinfo=UTC)


def export_story(number: int, story: CorpusStory) -> ExportStory:
    """One corpus story as a finished story in the channel: people and the bot take turns."""
    began = START + timedelta(days=7 * number)
    person_id, person = PEOPLE[number % len(PEOPLE)]
    passages = tuple(
        ExportPassage(
            number=index + 1,
            author_kind="bot" if index % 2 else "human",
            author_id="bot" if index % 2 else person_id,
            author_name="storybot" if index % 2 else person,
            text=text,
            status="canonical",
            created_at=began + timedelta(minutes=2 * index),
            requested_by_id=person_id if index % 2 else None,
        )
        for index, text in enumerate(story.passages)
    )
    return ExportStory(
        title=story.title,
        genre=story.genre,
        language="en",
        mode="alternate",
        status="finished",
        starter_id=person_id,
        starter_name=person,
        created_at=began,
        finished_at=began + timedelta(hours=1),
        channel=CHANNEL,
        memory=story.memory,
        passages=passages,
        participants=(ExportParticipant(person_id, person, 0, True, began),),
    )


async def stored_corpus(config: Config, stories: tuple[CorpusStory, ...]) -> list[SourceStory]:
    """The corpus imported into the config's database and read back as ``storybot finetune`` reads it."""
    db = Database(config.database.url)
    try:
        await db.migrate()
        for number, story in enumerate(stories):
            await import_story(db, export_story(number, story), now=START)
        return await read_stories(db, Selection())
    finally:
        await db.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="storybot bench finetune", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"the base model (default {DEFAULT_MODEL})")
    parser.add_argument("--epochs", type=int, default=Settings.epochs, help="default: the command's (2)")
    parser.add_argument("--context", type=int, default=Settings.context, help="default: the command's (256)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's own)")
    parser.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="model.dtype: auto = bfloat16 autocast on a CPU with AVX-512 BF16, else float32 (default auto)",
    )
    parser.add_argument(
        "--stories", type=int, default=len(STORIES), help=f"use the first N corpus stories (default {len(STORIES)})"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = parser.parse_args(argv)
    if not 2 <= args.stories <= len(STORIES):
        parser.error(f"--stories must be 2 to {len(STORIES)}")
    settings = Settings(epochs=args.epochs, context=args.context)
    settings.check()

    from bot.tuning.train import finetune

    info = cpu_info()
    print(describe_cpu(info), flush=True)
    with tempfile.TemporaryDirectory() as folder:
        config = bench_config(Path(args.model), Path(folder) / "finetune.db", new_tokens=120, max_batch=1)
        config = replace(config, model=replace(config.model, threads=args.threads, dtype=args.dtype))
        corpus = STORIES[: args.stories]
        stories = asyncio.run(stored_corpus(config, corpus))
        print(
            f"Corpus: bench.finetune_corpus, {len(stories)} finished stories, "
            f"{sum(len(s.passages) for s in corpus)} passages, "
            f"{sum(len(p.split()) for s in corpus for p in s.passages):,} words",
            flush=True,
        )
        train, held = split_by_story(stories, settings.holdout, settings.seed)
        outcome = finetune(
            config, args.model, train, held, Path(folder) / "adapter", settings, sources=["bench.finetune_corpus"]
        )
    figures = outcome.figures
    print()
    print(f"model {outcome.base}, {outcome.dtype} on {outcome.device}, {counted(outcome.threads, 'thread')}")
    print(
        f"training: {stories_counted(outcome.train.stories)}, {counted(outcome.train.passages, 'passage')}, "
        f"{figures.train_tokens:,} training tokens ({counted(settings.epochs, 'epoch')}), "
        f"{counted(figures.steps, 'step')}, "
        f"{figures.train_seconds:.1f} s"
    )
    print(f"seconds per 1,000 training tokens: {figures.seconds_per_1k_tokens:.2f}")
    print(
        f"held out: {stories_counted(outcome.held_out.stories)}, {counted(outcome.held_out.passages, 'passage')}, "
        f"{outcome.held_out.target_tokens:,} passage tokens"
    )
    print(f"held-out loss before {figures.loss_before:.4f} (perplexity {figures.perplexity_before:.2f})")
    print(f"held-out loss after  {figures.loss_after:.4f} (perplexity {figures.perplexity_after:.2f})")
    if args.json:
        report: dict[str, Any] = {
            "cpu": info,
            "model": outcome.base,
            "frame": outcome.frame,
            "dtype": outcome.dtype,
            "device": outcome.device,
            "threads": outcome.threads,
            "settings": {
                "epochs": settings.epochs,
                "rank": settings.rank,
                "lr": settings.lr,
                "context": settings.context,
            },
            "train": asdict(outcome.train),
            "held_out": asdict(outcome.held_out),
            "train_tokens": figures.train_tokens,
            "train_seconds": round(figures.train_seconds, 2),
            "seconds_per_1k_tokens": round(figures.seconds_per_1k_tokens, 3),
            "loss_before": round(figures.loss_before, 4),
            "loss_after": round(figures.loss_after, 4),
            "perplexity_before": round(figures.perplexity_before, 3),
            "perplexity_after": round(figures.perplexity_after, 3),
        }
        print(json.dumps(report))


if __name__ == "__main__":
    main()
