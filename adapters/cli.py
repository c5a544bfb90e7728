"""The ``storybot`` command: ``storybot [--config FILE] console|migrate|discord|slack|worker|web|export|list|import|stats|export-dataset|audit|finetune|bench``.

The command line is one more way in, so it lives with the adapters: it is the one module that
knows every platform and the benchmarks (each imported only when its command runs, so
``storybot list`` never pays for discord.py or torch)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from bot.app import DatabaseBusy, DatabaseUnavailable, Role
from bot.audit import add_parser as add_audit_parser
from bot.audit import audit_command
from bot.config import Config, ConfigError, load_config
from bot.export.cli import add_parsers as add_archive_parsers
from bot.export.cli import export_command, import_command, list_command
from bot.feedback.cli import add_parsers as add_feedback_parsers
from bot.feedback.cli import export_dataset_command, stats_command
from bot.results import UserError
from bot.tuning.cli import add_parser as add_finetune_parser
from bot.tuning.cli import finetune_command

_NO_WORKER_HELP = "the chat side only: `storybot worker` processes write the bot's turns (PostgreSQL)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="storybot", description="Write stories together in chat channels.")
    parser.add_argument("--config", metavar="FILE", help="settings file (default: ./storybot.toml if present)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("console", help="write a story in this terminal (or pipe a script through stdin)")
    sub.add_parser("migrate", help="create or upgrade the database schema, then exit")
    discord_parser = sub.add_parser("discord", help="run the Discord bot (token: STORYBOT_DISCORD_TOKEN)")
    discord_parser.add_argument(
        "--sync", action="store_true", help="register /story with Discord (discord.guild_ids, else globally) first"
    )
    discord_parser.add_argument("--no-worker", action="store_true", help=_NO_WORKER_HELP)
    slack_parser = sub.add_parser(
        "slack", help="run the Slack app: Socket Mode (STORYBOT_SLACK_APP_TOKEN), or HTTP with --http"
    )
    slack_parser.add_argument(
        "--http", action="store_true", help="serve POST /slack/events (STORYBOT_SLACK_SIGNING_SECRET)"
    )
    slack_parser.add_argument("--host", default="0.0.0.0", help="address to listen on with --http (default: 0.0.0.0)")
    slack_parser.add_argument("--port", type=int, default=3000, help="port to listen on with --http (default: 3000)")
    slack_parser.add_argument("--no-worker", action="store_true", help=_NO_WORKER_HELP)
    sub.add_parser(
        "worker", help="write bot turns only, for `--no-worker` chat processes (PostgreSQL; several may run)"
    )
    web_parser = sub.add_parser("web", help="serve the web archive of published stories (settings: [web])")
    web_parser.add_argument("--host", help="address to listen on (default: web.host)")
    web_parser.add_argument("--port", type=int, help="port to listen on (default: web.port)")
    add_archive_parsers(sub)
    add_feedback_parsers(sub)
    add_audit_parser(sub)
    add_finetune_parser(sub)
    # Listed for --help; main() hands everything after "bench" to the benchmark's own parser.
    sub.add_parser(
        "bench",
        help="measure generation speed (`storybot bench --help`); `storybot bench quality` for the passages, "
        "`storybot bench peers` against transformers and llama.cpp, `storybot bench finetune` for fine-tuning, "
        "`storybot bench checks` for the content checkers, `storybot bench web` for the web archive's pages, "
        "`storybot bench load` for chat processes and workers under a burst, `storybot bench votes` for "
        "what candidates cost",
    )
    return parser


def _configure_logging(config: Config) -> None:
    logging.basicConfig(
        level=config.logging.level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Libraries that chat at INFO about HTTP requests and weights drown the story out; Bolt's INFO
    # line for a request with a bad signature holds the whole body (a response URL, a token).
    for noisy in ("httpx", "urllib3", "filelock", "huggingface_hub", "transformers", "alembic", "slack_bolt"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


async def _console(config: Config) -> None:
    from adapters.console import ConsoleChannel
    from bot.app import open_app

    async with open_app(config) as app:
        await ConsoleChannel(app).run()


def _role(no_worker: bool) -> Role:
    return Role.CHAT if no_worker else Role.ALL


async def _discord(config: Config, *, sync: bool, role: Role) -> None:
    from adapters.discord_bot import run_discord

    await run_discord(config, sync=sync, role=role)


async def _slack(config: Config, *, http: bool, host: str, port: int, role: Role) -> None:
    from adapters.slack_app import run_slack

    await run_slack(config, http=http, host=host, port=port, role=role)


async def _worker(config: Config) -> None:
    from adapters.worker import run_worker

    await run_worker(config)


async def _web(config: Config, *, host: str | None, port: int | None) -> None:
    from adapters.web.server import run_web

    await run_web(config, host=host, port=port)


async def _migrate(config: Config) -> None:
    from bot.app import open_database

    db = open_database(config)
    try:
        await db.migrate()
    finally:
        await db.close()
    print(f"Database is up to date: {db.url.render_as_string(hide_password=True)}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["bench", "quality"]:  # what the bot's passages read like
        from bench.quality import main as quality_main

        quality_main(argv[2:])
        return 0
    if argv[:2] == ["bench", "peers"]:  # storybot's local backend against transformers and llama.cpp
        from bench.peers import main as peers_main

        peers_main(argv[2:])
        return 0
    if argv[:2] == ["bench", "finetune"]:  # fine-tuning time and held-out perplexity on a sample corpus
        from bench.finetune import main as finetune_main

        finetune_main(argv[2:])
        return 0
    if argv[:2] == ["bench", "checks"]:  # the time each content checker adds to a passage
        from bench.checks import main as checks_main

        checks_main(argv[2:])
        return 0
    if argv[:2] == ["bench", "load"]:  # chat processes and workers on PostgreSQL under a burst, a worker killed
        from bench.load import main as load_main

        load_main(argv[2:])
        return 0
    if argv[:2] == ["bench", "votes"]:  # a turn with 2 to 4 candidates against one with one passage
        from bench.votes import main as votes_main

        votes_main(argv[2:])
        return 0
    if argv[:2] == ["bench", "web"]:  # the web archive's pages per second, on SQLite and PostgreSQL
        from bench.web import main as web_main

        web_main(argv[2:])
        return 0
    if argv[:1] == ["bench"]:  # its own options; it builds its own model and database
        from bench.generation import main as bench_main

        bench_main(argv[1:])
        return 0
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"storybot: {error}", file=sys.stderr)
        return 2
    _configure_logging(config)
    runners: dict[str, Callable[[Config], Coroutine[Any, Any, None]]] = {
        "export": lambda config: export_command(config, args),
        "list": lambda config: list_command(config, args),
        "import": lambda config: import_command(config, args),
        "stats": lambda config: stats_command(config, args),
        "export-dataset": lambda config: export_dataset_command(config, args),
        "audit": lambda config: audit_command(config, args),
        "console": _console,
        "migrate": _migrate,
        "discord": lambda config: _discord(config, sync=args.sync, role=_role(args.no_worker)),
        "slack": lambda config: _slack(
            config, http=args.http, host=args.host, port=args.port, role=_role(args.no_worker)
        ),
        "worker": _worker,
        "web": lambda config: _web(config, host=args.host, port=args.port),
    }
    try:
        if args.command == "finetune":
            # Not a coroutine: asyncio.run's Ctrl-C handler only cancels the main task, which
            # synchronous training would never notice. It reads the database with its own loop.
            finetune_command(config, args)
        else:
            asyncio.run(runners[args.command](config))
    except KeyboardInterrupt:
        return 130
    except UserError as error:  # e.g. an unknown story id, or a file that is not a story export
        print(f"storybot: {error}", file=sys.stderr)
        return 1
    except ConfigError as error:  # a setting only checked when it is used, e.g. discord.token
        print(f"storybot: {error}", file=sys.stderr)
        return 2
    except DatabaseUnavailable as error:
        print(f"storybot: {error}", file=sys.stderr)
        return 1
    except DatabaseBusy as error:  # e.g. `storybot import` while a long write holds SQLite
        print(f"storybot: {error}; try again in a moment", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
