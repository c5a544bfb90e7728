"""What ``/story show`` says about a finished story: a short summary and its opening."""

from __future__ import annotations

from bot.export.common import contributor_label, date_line
from bot.export.model import ExportStory
from bot.words import story_size

OPENING_PASSAGES = 3
OPENING_CHARS = 600


def opening(story: ExportStory) -> list[str]:
    """The first passages, ``author: text``, cut to about ``OPENING_CHARS`` characters in all."""
    lines, left = [], OPENING_CHARS
    for passage in [p for p in story.canonical if p.chapter_mark is None][:OPENING_PASSAGES]:
        text = " ".join(passage.text.split())
        if len(text) > left:
            lines.append(f"{passage.author_name}: {text[: max(left - 1, 0)].rstrip()}…")
            break
        lines.append(f"{passage.author_name}: {text}")
        left -= len(text)
    return lines


def summary(story: ExportStory, story_id: int, branched: str | None = None) -> str:
    """``branched``: the line naming a branch's parent (``bot.branches.branch_line``)."""
    passages = len([p for p in story.canonical if p.chapter_mark is None])
    people = ", ".join(contributor_label(p) for p in story.contributors) or "nobody yet"
    lines = [
        f"#{story_id} “{story.title}” — {date_line(story)} · rated {story.rating} · {story_size(passages, story.words)}.",
        f"Contributors: {people}.",
    ]
    if branched:
        lines.insert(1, branched)
    if start := opening(story):
        lines += ["Opening:", *start]
    lines.append(f"Download it with /story export <md|txt|html|epub|json> {story_id}.")
    return "\n".join(lines)
