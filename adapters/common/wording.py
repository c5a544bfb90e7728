"""The bot's stock lines, the same on every platform; each adapter only dresses them in its markup
(Discord's small ``-#`` text, a Slack context block, a console line in brackets)."""

from __future__ import annotations

from bot.results import BOT_NAME, Ballot, PassageView

__all__ = [
    "PROBLEM",
    "WITHDRAWN",
    "WRITING",
    "WRITING_PLACEHOLDER",
    "ballot_heading",
    "bot_footer",
    "candidate_label",
    "problem",
]

WRITING = f"{BOT_NAME} is writing…"  # under the text while a bot passage streams in
WRITING_PLACEHOLDER = f"✍️ {WRITING}"  # a bot turn's message before any text has come
WITHDRAWN = f"{BOT_NAME}'s turn was withdrawn."
# A bug or an outage on the bot's side, said plainly; the details go to the log.
PROBLEM = "Something went wrong on the bot's side; please try again."


def problem(text: str) -> str:
    """A one-line error from the core, marked so it stands out."""
    return f"⚠️ {text}"


def bot_footer(passage: PassageView, asked_by: str | None = None) -> str:
    """The credit line under the bot's passage: its number, which of its alternatives it is when
    there are several, who asked for it, and its 👍/👎 once anyone rated it ("passage 3 · 2 / 3 ·
    asked by Alice · 👍 2 · 👎 1"). One line for every showing of the passage, so the counts a
    rating adds, or another alternative picked, look the same as the line the turn ended with. A
    passage the channel chose by vote says so, with the count ("chosen by 3 of 4 votes").

    ``asked_by`` is the asker's name as the platform must write it (escaped for its markup); by
    default the name as the passage's turn holds it.
    """
    name = passage.asked_by if asked_by is None else asked_by
    parts = [f"passage {passage.number}"]
    if passage.alternatives is not None:
        parts.append(str(passage.alternatives))
    if name:
        parts.append(f"rewritten at {name}'s request" if passage.rewrite else f"asked by {name}")
    if passage.elected is not None:
        parts.append(str(passage.elected))
    if counts := str(passage.votes):
        parts.append(counts)
    return " · ".join(parts)


def ballot_heading(ballot: Ballot, closes: str) -> str:
    """The line above the bot's candidates: what to do, and when the vote closes (``closes``: the
    deadline as the platform writes a time, e.g. "in 3 minutes")."""
    count = len(ballot.candidates)
    everyone = f"all {ballot.electorate} participants have" if ballot.electorate != 1 else "the participant has"
    return (
        f"🗳️ {BOT_NAME} wrote {count} candidates for its next passage: vote for the one the story keeps "
        f"(/story vote 1-{count}, or the buttons). The vote closes when {everyone} voted, or {closes}; "
        "the others stay as alternatives."
    )


def candidate_label(number: int) -> str:
    """A candidate's heading, and its vote button's label."""
    return f"Candidate {number}"
