"""What every content checker is: ``check(text, standard) -> Verdict``, or ``CheckerDown``.

A checker judges one text against a ``Standard`` (the story's rating and its channel's
moderator word lists) and answers a ``Verdict``. The checkers (``bot.safety.wordlist``,
``bot.safety.classifier``, ``bot.safety.moderation``) know nothing of people, passages or
turns: ``bot.safety.checks.Checks`` combines them per rating, and decides what an outage means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

from storage.models import ContentRating

__all__ = ["Checker", "CheckerDown", "Standard", "Verdict"]


class CheckerDown(Exception):
    """A checker could not judge the text: its model failed to load, its server is down or slow.

    The message is one line a person may read (no secrets, no URLs with keys); ``checker`` names
    the checker, once ``Checks`` has seen the error."""

    def __init__(self, message: str, checker: str = "") -> None:
        super().__init__(message)
        self.checker = checker


@dataclass(frozen=True, slots=True)
class Standard:
    """What a story's text is judged against: its rating, and the words its channel's
    moderators banned (``banned``) or allowed back from the shipped lists (``allowed``)."""

    rating: ContentRating = ContentRating.GENERAL
    banned: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Verdict:
    """A checker's answer. ``reason`` is for people (one short clause, no offending word in
    it, so the refusal can be shown in the channel); ``found`` holds the offending words as the
    text wrote them, which the bot's second try bans at decode time. ``down``: the text was not
    judged, because a checker could not answer (a refusal all the same: checks fail closed)."""

    passed: bool
    checker: str = ""
    reason: str = ""
    found: tuple[str, ...] = ()
    down: bool = False

    PASS: ClassVar[Verdict]


Verdict.PASS = Verdict(True)


class Checker(Protocol):
    """One content checker. ``name`` is its name in the config (``words``, ``classifier``,
    ``moderation``). ``check`` raises ``CheckerDown`` when it cannot judge; it must be safe to call
    from the event loop (slow work goes to a thread or the network)."""

    name: str

    async def check(self, text: str, standard: Standard) -> Verdict: ...
