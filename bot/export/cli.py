"""``storybot export``, ``storybot list`` and ``storybot import``: the archive from a shell.

These work on the database directly (no model, no chat platform). Problems a person can fix
(an unknown story id, a file that is not a story export) raise ``UserError`` with one line.
``storybot export`` never writes over a file, or through a symlink, unless ``--force`` says to
replace it: people export into folders they keep other things in, and titles repeat.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bot.app import migrated_database
from bot.config import Config
from bot.export import FORMATS, ExportOptions, render
from bot.export.archive import StoryRow, import_story, list_stories, parse_channel
from bot.export.files import replace, save_in, write_new
from bot.export.json_format import DocumentError, loads
from bot.export.snapshot import load_story
from bot.progress import Stages
from bot.results import UserError
from bot.words import counted
from storage import queries as q
from storage.models import utcnow


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = sub.add_parser("export", help="write a story to a file (md, txt, html, epub or json)")
    export.add_argument("--story", type=int, required=True, metavar="ID", help="story id (see storybot list)")
    export.add_argument("--format", choices=tuple(FORMATS), default="md", help="file format (default: md)")
    export.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write (default: a name from the title, here, or the next free one: story-2.md; - = stdout)",
    )
    export.add_argument(
        "--force",
        action="store_true",
        help="replace FILE (or the title's file) if it exists; a symlink is replaced, its target left alone",
    )
    export.add_argument("--no-authors", action="store_true", help="leave out who wrote each passage")
    export.add_argument("--body", action="store_true", help="html: only the story body, to paste into AO3")
    export.add_argument(
        "--chapter-passages",
        type=int,
        metavar="N",
        help="epub: passages per chapter (default: export.chapter_passages)",
    )
    sub.add_parser("list", help="every story in the database: id, channel, title, status, passages, words")
    importer = sub.add_parser("import", help="bring a JSON export back as a finished story")
    importer.add_argument("file", metavar="FILE.json")
    importer.add_argument(
        "--channel", help="put it in this channel: NAME (console) or PLATFORM:WORKSPACE:CHANNEL[:THREAD]"
    )


async def export_command(config: Config, args: argparse.Namespace) -> None:
    if args.body and args.format != "html":
        raise UserError("--body goes with --format html.")
    if args.chapter_passages is not None and args.chapter_passages < 1:
        raise UserError("--chapter-passages must be 1 or more.")
    with Stages(f"exporting story #{args.story}", ("reading", "rendering", "writing")) as stages:
        stages.step("reading")
        async with migrated_database(config) as db, db.read() as tx:
            story = await q.story_by_id(tx, args.story)
            if story is None:
                raise UserError(f"there is no story #{args.story}; storybot list shows them.")
            snapshot = await load_story(tx, story, language=config.export.language)
        options = ExportOptions(
            authors=not args.no_authors,
            body=args.body,
            chapter_passages=args.chapter_passages or config.export.chapter_passages,
        )
        stages.step("rendering")
        file = render(snapshot, args.format, options)
        stages.step("writing")
        path = _write(args, file.filename, file.data)
    if path is not None:
        print(f"Wrote {path} ({len(file.data):,} bytes).")


def _write(args: argparse.Namespace, filename: str, data: bytes) -> Path | None:
    """Write an export where ``--output`` says (None: it went to stdout); never over a file unless ``--force``."""
    if args.output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return None
    path = Path(args.output or filename)
    try:
        if args.force:
            replace(path, data)
        elif args.output is None:
            path = save_in(Path(), filename, data)
        else:
            write_new(path, data)
    except FileExistsError:
        raise UserError(f"{path} exists; use --force to replace it.") from None
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}.") from None
    return path


def _indented(row: StoryRow) -> str:
    """A story's id, a branch's under its parent's (``↳``)."""
    return f"{'  ' * (row.depth - 1)}↳ {row.id}" if row.depth else str(row.id)


async def list_command(config: Config, args: argparse.Namespace) -> None:
    async with migrated_database(config) as db:
        rows = await list_stories(db)
    if not rows:
        print("No stories yet.")
        return
    header = ("id", "channel", "title", "status", "rating", "passages", "words")
    table = [
        header,
        *((_indented(r), r.channel, r.title, r.status, r.rating, str(r.passages), str(r.words)) for r in rows),
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


async def import_command(config: Config, args: argparse.Namespace) -> None:
    with Stages(f"importing {Path(args.file).name}", ("reading", "storing")) as stages:
        stages.step("reading")
        try:
            data = Path(args.file).read_bytes()
        except OSError as error:
            raise UserError(f"cannot read {args.file}: {error.strerror or error}.") from None
        try:
            story = loads(data)
            channel = parse_channel(args.channel) if args.channel else None
        except (DocumentError, ValueError) as error:
            raise UserError(f"{args.file}: {error}") from None
        stages.step("storing")
        async with migrated_database(config) as db:
            story_id = await import_story(db, story, channel=channel, now=utcnow())
    where = channel.key if channel else story.channel.key
    print(f"Imported “{story.title}” as story #{story_id} in {where} ({counted(len(story.passages), 'passage')}).")
