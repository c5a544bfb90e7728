"""The ``storybot`` command: ``storybot [--config FILE] console|migrate``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from bot.config import Config, ConfigError, load_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="storybot", description="Write stories together in chat channels.")
    parser.add_argument("--config", metavar="FILE", help="settings file (default: ./storybot.toml if present)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("console", help="write a story in this terminal (or pipe a script through stdin)")
    sub.add_parser("migrate", help="create or upgrade the database schema, then exit")
    return parser


def _configure_logging(config: Config) -> None:
    logging.basicConfig(
        level=config.logging.level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Libraries that chat at INFO about HTTP requests and weights drown the story out.
    for noisy in ("httpx", "urllib3", "filelock", "huggingface_hub", "transformers", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


async def _console(config: Config) -> None:
    from adapters.console import ConsoleChannel
    from bot.app import open_app

    async with open_app(config) as app:
        await ConsoleChannel(app).run()


async def _migrate(config: Config) -> None:
    from storage.database import Database

    db = Database(config.database.url, busy_timeout_ms=config.database.busy_timeout_ms)
    try:
        await db.migrate()
    finally:
        await db.close()
    print(f"Database is up to date: {db.url.render_as_string(hide_password=True)}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"storybot: {error}", file=sys.stderr)
        return 2
    _configure_logging(config)
    runners = {"console": _console, "migrate": _migrate}
    try:
        asyncio.run(runners[args.command](config))
    except KeyboardInterrupt:
        return 130
    except (OSError, ValueError, SQLAlchemyError) as error:
        # A database that is down or a URL that is wrong: say which, without a traceback.
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"storybot: cannot use the database {_safe_url(config)}: {reason}", file=sys.stderr)
        return 1
    return 0


def _safe_url(config: Config) -> str:
    try:
        return make_url(config.database.url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable database.url)"


if __name__ == "__main__":
    sys.exit(main())
