"""``storybot stats`` and ``storybot export-dataset``: people's judgement of the bot, from a shell.

Both read the database directly (no model, no chat platform), so they run beside the bot.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from bot.app import migrated_database
from bot.config import Config
from bot.export.archive import parse_channel
from bot.export.files import write_new
from bot.feedback import dataset, stats
from bot.feedback.judged import JudgedPassage, judged_passages
from bot.results import UserError
from bot.words import counted

CHANNEL_HELP = "only this channel: NAME (console) or PLATFORM:WORKSPACE:CHANNEL[:THREAD]; may be repeated"


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    stats_parser = sub.add_parser(
        "stats", help="how people judged the bot's passages, per model, adapter and sampling setting"
    )
    stats_parser.add_argument("--channel", action="append", default=[], metavar="C", help=CHANNEL_HELP)
    stats_parser.add_argument("--since", metavar="DATE", help="only passages written since DATE (YYYY-MM-DD, UTC)")
    stats_parser.add_argument("--json", action="store_true", help="print JSON: the groups and every passage's votes")
    data = sub.add_parser(
        "export-dataset", help="the bot's turns as training data: prompt, chosen passage, rejected alternatives"
    )
    data.add_argument(
        "--format",
        choices=dataset.FORMATS,
        default="jsonl",
        help="jsonl: one object per bot turn (rejected: a list); pairs: one object per chosen/rejected pair",
    )
    data.add_argument("--channel", action="append", default=[], metavar="C", help=CHANNEL_HELP)
    data.add_argument("--since", metavar="DATE", help="only turns written since DATE (YYYY-MM-DD, UTC)")
    data.add_argument("--chat", action="store_true", help="give each prompt as chat messages, as chat models see it")
    data.add_argument("-o", "--output", metavar="FILE", help="write a new FILE (default: stdout)")


async def _read(config: Config, args: argparse.Namespace) -> list[JudgedPassage]:
    try:
        keys = [parse_channel(text).key for text in args.channel]
    except ValueError as error:
        raise UserError(str(error)) from None
    async with migrated_database(config) as db:
        return await judged_passages(db, channel_keys=keys, since=_since(args.since))


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"--since takes a date like 2026-12-01 (got {text!r}).") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def stats_command(config: Config, args: argparse.Namespace) -> None:
    passages = await _read(config, args)
    rows = stats.groups(passages)
    if args.json:
        print(json.dumps(stats.as_json(rows, passages), ensure_ascii=False, indent=2))
    elif not rows:
        print("No bot passages yet.")
    else:
        print(stats.table(rows))


async def export_dataset_command(config: Config, args: argparse.Namespace) -> None:
    found = dataset.turns(await _read(config, args))
    lines = [json.dumps(r, ensure_ascii=False) for r in dataset.records(found, args.format, chat=args.chat)]
    data = "".join(line + "\n" for line in lines).encode()
    if args.output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        try:
            write_new(Path(args.output), data)
        except FileExistsError:
            raise UserError(f"{args.output} exists; choose a new file name.") from None
        except OSError as error:
            raise UserError(f"cannot write {args.output}: {error.strerror or error}.") from None
    missing = dataset.without_prompt(found)
    note = f"; {counted(missing, 'turn')} written before prompts were recorded left out" if missing else ""
    print(f"{counted(len(lines), 'record')} from {counted(len(found), 'bot turn')}{note}.", file=sys.stderr)
