"""``storybot audit``: the moderation log from a shell, for the people who run the bot.

Every moderator action (hide, unhide, rating changes, ends, the channel's word list), every
report and every bot passage the content checks withheld, oldest first; with the passage's
text where one is named, since the shell is where a withheld passage can be read at all.
It reads the database directly (no model, no chat platform), so it runs beside the bot.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.app import migrated_database
from bot.config import Config
from bot.export.archive import parse_channel
from bot.results import UserError
from storage import queries as q
from storage.models import ModerationEntry, Passage

EXCERPT_CHARS = 120


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("audit", help="the moderation log: hides, reports, rating changes, withheld passages")
    parser.add_argument(
        "--channel", metavar="C", help="only this channel and its threads: NAME (console) or PLATFORM:WORKSPACE:CHANNEL"
    )
    parser.add_argument("--story", type=int, metavar="ID", help="only this story")
    parser.add_argument("--json", action="store_true", help="print JSON, with each named passage's whole text")


async def _entries(tx: AsyncSession, channel_key: str | None, story_id: int | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for entry in await q.moderation_log(tx, channel_key=channel_key, story_id=story_id):
        passage = await tx.get(Passage, entry.passage_id) if entry.passage_id is not None else None
        rows.append(_row(entry, passage))
    return rows


def _row(entry: ModerationEntry, passage: Passage | None) -> dict[str, Any]:
    return {
        "at": entry.created_at.isoformat(timespec="seconds"),
        "channel": entry.channel_key,
        "story": entry.story_id,
        "action": entry.action,
        "by": {"id": entry.actor_id, "name": entry.actor_name},
        "detail": entry.detail,
        "passage": None
        if passage is None
        else {"id": passage.id, "status": passage.status, "author": passage.author_name, "text": passage.text},
    }


def _line(row: dict[str, Any]) -> str:
    story = f" story #{row['story']}" if row["story"] is not None else ""
    detail = f": {row['detail']}" if row["detail"] else ""
    line = f"{row['at']}  {row['channel']}{story}  {row['action']} by {row['by']['name']}{detail}"
    passage = row["passage"]
    if passage is not None:
        text = " ".join(passage["text"].split())
        text = text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"
        line += f"\n    passage id {passage['id']} ({passage['status']}, by {passage['author']}): {text}"
    return line


async def audit_command(config: Config, args: argparse.Namespace) -> None:
    try:
        channel_key = parse_channel(args.channel).key if args.channel else None
    except ValueError as error:
        raise UserError(str(error)) from None
    async with migrated_database(config) as db:
        rows = await db.transaction(lambda tx: _entries(tx, channel_key, args.story), write=False)
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    elif not rows:
        print("The moderation log is empty" + (" for that channel or story." if channel_key or args.story else "."))
    else:
        print("\n".join(_line(row) for row in rows))
