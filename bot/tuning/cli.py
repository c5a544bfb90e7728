"""``storybot finetune``: its arguments, and the command (read the stories, split them, train).

Light to import (``storybot --help`` must not load torch): the training module is imported only
when the command runs. Problems a person can fix are one-line ``UserError``s. The command is
synchronous: the database is read first (its own short event loop), then the model trains in
this thread, where Ctrl-C interrupts it at once.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from bot.app import migrated_database
from bot.config import Config
from bot.export.archive import parse_channel
from bot.identity import ChannelRef
from bot.results import UserError
from bot.tuning.examples import (
    Selection,
    SourceStory,
    read_stories,
    read_text_stories,
    split_by_story,
    stories_counted,
)
from bot.tuning.output import check_new_folder
from bot.tuning.settings import Settings

DEFAULTS = Settings()


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "finetune",
        help="train a LoRA adapter on finished stories (and text files) for a named model",
        description="Train a LoRA adapter on the finished stories of the database (or those of --story and "
        "--channel) and on --text files, passage by passage, in the bot's own prompt. Bot passages people "
        "turned down are left out. Some stories are held out whole to measure the adapter on.",
    )
    parser.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="a new (or empty) folder for the adapter"
    )
    parser.add_argument(
        "--story", type=int, nargs="+", action="extend", default=[], metavar="ID", help="finished stories by id"
    )
    parser.add_argument(
        "--channel",
        nargs="+",
        action="extend",
        default=[],
        metavar="C",
        help="the finished stories of a channel (and its threads): NAME (console) or PLATFORM:WORKSPACE:CHANNEL[:THREAD]",
    )
    parser.add_argument(
        "--text",
        type=Path,
        nargs="+",
        action="extend",
        default=[],
        metavar="FILE",
        help="a UTF-8 text file as one more story: its paragraphs (blank-line separated) are the passages",
    )
    parser.add_argument(
        "--base",
        metavar="MODEL",
        help="the base model, as model.name takes it: bundled:NAME, a .gguf file, a model folder or a hub id "
        "(default: model.name)",
    )
    parser.add_argument(
        "--epochs", type=int, metavar="N", default=DEFAULTS.epochs, help="passes over the data (default: 2)"
    )
    parser.add_argument(
        "--rank", type=int, metavar="R", default=DEFAULTS.rank, help="LoRA rank (default: 8; alpha is twice it)"
    )
    parser.add_argument("--lr", type=float, metavar="X", default=DEFAULTS.lr, help="peak learning rate (default: 2e-4)")
    parser.add_argument(
        "--context",
        type=int,
        default=DEFAULTS.context,
        metavar="N",
        help="tokens of prompt before each passage, the model's chat frame included (default: 256)",
    )
    parser.add_argument(
        "--batch-tokens",
        type=int,
        default=DEFAULTS.batch_tokens,
        metavar="N",
        help="padded tokens per training batch (default: 1024)",
    )
    parser.add_argument(
        "--holdout",
        type=float,
        default=DEFAULTS.holdout,
        metavar="F",
        help="share of the stories held out to measure on (default: 0.2; at least one story)",
    )
    parser.add_argument(
        "--seed", type=int, metavar="N", default=DEFAULTS.seed, help="for the split, the batches and LoRA's start"
    )


def finetune_command(config: Config, args: argparse.Namespace) -> None:
    settings = Settings(
        epochs=args.epochs,
        rank=args.rank,
        lr=args.lr,
        context=args.context,
        batch_tokens=args.batch_tokens,
        holdout=args.holdout,
        seed=args.seed,
    )
    settings.check()
    check_new_folder(args.out)
    selection = Selection(
        story_ids=tuple(dict.fromkeys(args.story)),
        channels=tuple(dict.fromkeys(_channel(text) for text in args.channel)),
        # One file named twice (a.txt, ./a.txt, a link) is one story: else it could be trained on and held out.
        text_files=tuple({path.resolve(): path for path in args.text}.values()),
    )
    stories = read_text_stories(selection.text_files)  # the files first: their errors cost no database
    if selection.reads_database:
        stories = asyncio.run(_read(config, selection)) + stories
    train_stories, held_stories = split_by_story(stories, settings.holdout, settings.seed)

    from bot.tuning.train import finetune

    finetune(
        config,
        args.base or config.model.name,
        train_stories,
        held_stories,
        args.out,
        settings,
        sources=describe_sources(selection, stories),
    )


async def _read(config: Config, selection: Selection) -> list[SourceStory]:
    async with migrated_database(config) as db:
        return await read_stories(db, selection)


def _channel(text: str) -> ChannelRef:
    try:
        return parse_channel(text)
    except ValueError as error:
        raise UserError(str(error)) from None


def describe_sources(selection: Selection, stories: list[SourceStory]) -> list[str]:
    """Where the stories came from, for the model card."""
    parts = []
    if selection.channels:
        parts.append("finished stories of " + ", ".join(f"`{c.key}`" for c in selection.channels))
    if selection.story_ids:
        parts.append("stories " + ", ".join(f"#{i}" for i in selection.story_ids))
    if selection.reads_database and not (selection.channels or selection.story_ids):
        found = sum(1 for s in stories if s.channel)
        parts.append(f"every finished story in the database ({stories_counted(found)})")
    if selection.text_files:
        parts.append("text files " + ", ".join(f"`{path}`" for path in selection.text_files))
    return parts
