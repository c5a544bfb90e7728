"""How story text looks in a Discord channel: attribution, small text, and the message limit.

Pure functions, no discord.py calls, so the layout rules are easy to read and to test. Every
message holds at most :data:`MESSAGE_LIMIT` characters; a longer passage continues in the next
message, cut where a sentence ends (``adapters.common.split``), so each message reads as whole
sentences.
"""

from __future__ import annotations

import discord

from adapters.common import wording
from adapters.common.split import split_text
from bot.results import BOT_NAME, Ballot, PassageView

MESSAGE_LIMIT = 2000
# Room kept free in every message for the small footer line under a passage: its longest is a
# 4-digit passage number, "12 / 12" alternatives, a rewrite credit with a 32-character name escaped
# (64), "chosen by 999 of 999 votes" and 3-digit counts.
FOOTER_ROOM = 200
BODY_LIMIT = MESSAGE_LIMIT - FOOTER_ROOM

# Nothing the bot sends may ping anyone: not model output, not a person's passage, not names.
NO_PINGS = discord.AllowedMentions.none()


def small(text: str) -> str:
    """A line in Discord's small grey subtext."""
    return f"-# {text}"


WRITING = small(wording.WRITING_PLACEHOLDER)
WITHDRAWN = small(wording.WITHDRAWN)


def split_message(text: str, limit: int = BODY_LIMIT) -> list[str]:
    """``text`` as consecutive messages of at most ``limit`` characters (at least one)."""
    return split_text(text, limit)


def with_footer(chunks: list[str], footer: str) -> list[str]:
    """Put a small grey footer line under the last message."""
    if not footer:
        return chunks
    return [*chunks[:-1], f"{chunks[-1]}\n{small(footer)}"]


def _byline(author: str, text: str) -> str:
    """The author in bold, then the passage, as a script reads: **Alice:** The keeper…"""
    name = discord.utils.escape_markdown(author)
    return f"**{name}:** {text}"


def passage_messages(passage: PassageView, footer: str) -> list[str]:
    """A stored passage, attributed and split, with ``footer`` under its last message."""
    return with_footer(split_message(_byline(passage.author_name, passage.text)), footer)


def bot_footer(passage: PassageView) -> str:
    """The credit line under the bot's passage (who asked, the counts), the name safe from Discord's markdown."""
    asker = discord.utils.escape_markdown(passage.asked_by) if passage.asked_by else None
    return wording.bot_footer(passage, asker)


def streaming_messages(text: str) -> list[str]:
    """The bot's passage while it is being written (the queue has made the text printable)."""
    return with_footer(split_message(_byline(BOT_NAME, text)), wording.WRITING)


def ballot_messages(ballot: Ballot) -> list[str]:
    """The bot's candidates for a vote: the heading (the deadline in Discord's relative time, which
    every reader sees in their own clock), then each candidate, as few messages as hold them (the
    winner is drawn in these messages: fewer leave fewer spare ones), a candidate split only when
    it alone is too long for one."""
    closes = f"<t:{int(ballot.closes_at.timestamp())}:R>"
    pieces = [wording.ballot_heading(ballot, closes)]
    for candidate in ballot.candidates:
        pieces.extend(split_message(f"**{wording.candidate_label(candidate.number)}:** {candidate.text}"))
    messages: list[str] = []
    for piece in pieces:
        if messages and len(messages[-1]) + 2 + len(piece) <= BODY_LIMIT:
            messages[-1] += f"\n\n{piece}"
        else:
            messages.append(piece)
    return messages
