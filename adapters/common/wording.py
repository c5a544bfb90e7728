"""The bot's stock lines, the same on every platform; each adapter only dresses them in its markup
(Discord's small ``-#`` text, a Slack context block, a console line in brackets)."""

from __future__ import annotations

from bot.jobs import JobKind, JobSpec
from bot.results import BOT_NAME

__all__ = ["PROBLEM", "WITHDRAWN", "WRITING", "WRITING_PLACEHOLDER", "bot_footer", "problem"]

WRITING = f"{BOT_NAME} is writing…"  # under the text while a bot passage streams in
WRITING_PLACEHOLDER = f"✍️ {WRITING}"  # a bot turn's message before any text has come
WITHDRAWN = f"{BOT_NAME}'s turn was withdrawn."
# A bug or an outage on the bot's side, said plainly; the details go to the log.
PROBLEM = "Something went wrong on the bot's side; please try again."


def problem(text: str) -> str:
    """A one-line error from the core, marked so it stands out."""
    return f"⚠️ {text}"


def bot_footer(job: JobSpec, number: int, requester: str | None = None) -> str:
    """Who asked for the bot's passage ``number``: the credit line people see under it.

    ``requester`` is the asker's name as the platform must write it (escaped for its markup);
    by default the name as the job holds it.
    """
    name = job.requested_by if requester is None else requester
    if job.kind == JobKind.RETRY:
        return f"passage {number} · rewritten at {name}'s request"
    return f"passage {number} · asked by {name}"
