"""The judgement on one bot passage: its fate (kept, retried away, undone, hidden by a moderator,
withheld by the content checks) and its votes.

Nobody has to vote for a passage to be judged: retrying a passage or undoing it says as much as
a 👎, and a passage the story went on from was kept. The fate is read from the passage's
``status``, which the rules already record with who changed it and when.
"""

from __future__ import annotations

from enum import StrEnum

from storage.models import PassageStatus

VOTED = "vote"  # ``passages.changed_by_id`` of the candidates a closed vote settled (``bot.votes``)


class Fate(StrEnum):
    """What became of a bot passage."""

    KEPT = "kept"  # still in the story
    # Rewritten by /story retry, or another alternative picked over it (/story pick): kept as an
    # alternative. A passage picked back into the story is kept again.
    RETRIED = "retried"
    OUTVOTED = "outvoted"  # one of a turn's candidates that another won the channel's vote over
    UNDONE = "undone"  # withdrawn by /story undo
    HIDDEN = "hidden"  # taken out of the story by a moderator
    WITHHELD = "withheld"  # stopped by the content checks, never shown


_FATES = {
    PassageStatus.CANONICAL: Fate.KEPT,
    PassageStatus.SUPERSEDED: Fate.RETRIED,
    PassageStatus.UNDONE: Fate.UNDONE,
    PassageStatus.HIDDEN: Fate.HIDDEN,
    PassageStatus.WITHHELD: Fate.WITHHELD,
}


def fate_of(status: str, changed_by: str | None = None) -> Fate:
    """The fate of a passage with this ``passages.status``, set by ``changed_by`` (``VOTED``: the
    close of a vote, so a superseded candidate was outvoted, not retried away)."""
    if status == PassageStatus.SUPERSEDED and changed_by == VOTED:
        return Fate.OUTVOTED
    return _FATES[PassageStatus(status)]


def turned_down(status: str, up: int, down: int) -> bool:
    """Whether this bot passage was turned down: retried away, outvoted, undone, hidden, withheld
    by the checks, or rated more 👎 than 👍.

    Such a passage is left out of fine-tuning and is a "rejected" answer in preference data.
    """
    return fate_of(status) is not Fate.KEPT or down > up
