"""How story text looks in a Discord channel: attribution, limits, and where long text splits.

Pure functions, no discord.py calls, so the layout rules are easy to read and to test. Every
message holds at most :data:`MESSAGE_LIMIT` characters; a longer passage continues in the next
message, cut at the last sentence end that fits, so each message reads as whole sentences.
"""

from __future__ import annotations

import re

import discord

from bot.results import PassageView
from bot.sessions import BOT_NAME, JobSpec

MESSAGE_LIMIT = 2000
# Room kept free in every message for the small footer line under a passage.
FOOTER_ROOM = 120
BODY_LIMIT = MESSAGE_LIMIT - FOOTER_ROOM

# Nothing the bot sends may ping anyone: not model output, not a person's passage, not names.
NO_PINGS = discord.AllowedMentions.none()

# A sentence end (with closing quotes or brackets) followed by white space, or a paragraph break.
_SENTENCE_BREAK = re.compile(r"[.!?…][\"'”’»)\]*_]*\s+|\n\s*")
_SPACE = re.compile(r"\s+")
# What a model emits mid-way through a multi-byte character, or when it babbles: never shown.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffd]")


def _cut(text: str, limit: int) -> int:
    """Where to end a message of at most ``limit`` characters: a sentence end, else a space.

    Depends only on ``text[: limit + 1]``, so while a passage streams in, the cut of a full
    message never moves and earlier messages need no more edits.
    """
    window = text[: limit + 1]
    floor = limit // 4  # a cut this early would leave a stub of a message
    sentence = [m.end() for m in _SENTENCE_BREAK.finditer(window) if floor <= m.end() <= limit]
    if sentence:
        return sentence[-1]
    space = [m.end() for m in _SPACE.finditer(window) if floor <= m.end() <= limit]
    return space[-1] if space else limit


def split_message(text: str, limit: int = BODY_LIMIT) -> list[str]:
    """``text`` as consecutive messages of at most ``limit`` characters (at least one)."""
    chunks: list[str] = []
    while len(text) > limit:
        cut = _cut(text, limit)
        chunks.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    chunks.append(text)
    return chunks


def with_footer(chunks: list[str], footer: str) -> list[str]:
    """Put a small grey footer line under the last message."""
    if not footer:
        return chunks
    return [*chunks[:-1], f"{chunks[-1]}\n-# {footer}"]


def _byline(author: str, text: str) -> str:
    """The author in bold, then the passage, as a script reads: **Alice:** The keeper…"""
    name = discord.utils.escape_markdown(author)
    return f"**{name}:** {text}"


def passage_messages(passage: PassageView, footer: str) -> list[str]:
    """A stored passage, attributed and split, with ``footer`` under its last message."""
    return with_footer(split_message(_byline(passage.author_name, passage.text)), footer)


def bot_footer(job: JobSpec, passage: PassageView) -> str:
    """Who asked for the bot's passage: the credit line people see under it."""
    asked = discord.utils.escape_markdown(job.requested_by)
    if job.kind == "retry":
        return f"passage {passage.number} · rewritten at {asked}'s request"
    return f"passage {passage.number} · asked by {asked}"


def streaming_messages(text: str) -> list[str]:
    """The bot's passage while it is being written (raw model text, so unprintables are dropped)."""
    return with_footer(split_message(_byline(BOT_NAME, _UNPRINTABLE.sub("", text))), f"{BOT_NAME} is writing…")


WRITING = f"-# ✍️ {BOT_NAME} is writing…"
WITHDRAWN = f"-# {BOT_NAME}'s turn was withdrawn."


def problem(text: str) -> str:
    """A one-line error from the core, marked so it stands out."""
    return f"⚠️ {text}"
