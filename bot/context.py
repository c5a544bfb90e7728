"""Build the model's prompt from a story, under a token budget.

Layout, top to bottom: a short preamble (title, genre), the memory, the triggered lore, the most
recent passages that fit, the author's note ``note_depth`` passages from the end, and the
direction from ``/story continue``. The preamble and memory come first and change rarely, so the
head of the prompt stays byte-stable from turn to turn and prefix caches can be reused.

Everything is deterministic: the same story and budget give the same prompt.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PASSAGE_SEPARATOR = "\n\n"


@dataclass(frozen=True, slots=True)
class LoreItem:
    keys: tuple[str, ...]
    text: str


@dataclass(frozen=True, slots=True)
class StorySnapshot:
    """What the prompt is made of, copied out of storage so the worker needs no database."""

    title: str
    genre: str | None
    memory: str
    note: str
    passages: tuple[str, ...]  # the canonical story, oldest first
    lore: tuple[LoreItem, ...] = ()
    direction: str | None = None


@dataclass(frozen=True, slots=True)
class PromptLimits:
    budget_tokens: int  # the model's context length minus the tokens asked for
    lore_max_tokens: int = 256
    note_depth: int = 3
    lore_scan_passages: int = 10  # how far back a lore key counts as "recent"


def build_prompt(story: StorySnapshot, limits: PromptLimits, count_tokens: Callable[[str], int]) -> str:
    """The prompt for the bot's next passage; never more than ``limits.budget_tokens`` tokens."""
    head = _preamble(story)
    tail = _direction(story.direction)
    note = f"[Author's note: {story.note.strip()}]" if story.note.strip() else ""
    fixed = count_tokens(head + tail + note)
    if fixed > limits.budget_tokens:
        # Memory, note and direction are capped in length by the rules; only a tiny model
        # context can get here. Drop the optional parts rather than fail the turn.
        head, note = _title_line(story), ""
        fixed = count_tokens(head + tail)
    lore = _triggered_lore(story, limits, min(limits.lore_max_tokens, limits.budget_tokens - fixed), count_tokens)
    lore_text = "".join(f"[{item.text.strip()}]\n" for item in lore)
    if lore_text:
        lore_text += "\n"
    remaining = limits.budget_tokens - fixed - count_tokens(lore_text)
    passages = _recent_passages(story.passages, remaining, count_tokens)
    while True:
        prompt = head + lore_text + _join_with_note(passages, note, limits.note_depth) + tail
        # Token counts of pieces do not always add up exactly (merges across a boundary), so
        # the assembled prompt is checked and the oldest passage dropped until it fits.
        if count_tokens(prompt) <= limits.budget_tokens or not passages:
            return prompt
        passages = passages[1:]


def _title_line(story: StorySnapshot) -> str:
    return f"Title: {story.title}\n\n"


def _preamble(story: StorySnapshot) -> str:
    lines = [f"Title: {story.title}"]
    if story.genre:
        lines.append(f"Genre: {story.genre}")
    text = "\n".join(lines) + "\n\n"
    if story.memory.strip():
        text += f"[Memory: {story.memory.strip()}]\n\n"
    return text


def _direction(direction: str | None) -> str:
    return f"[Next: {direction.strip()}]\n\n" if direction and direction.strip() else ""


def _join_with_note(passages: Sequence[str], note: str, depth: int) -> str:
    parts = list(passages)
    if note:
        parts.insert(max(len(parts) - depth, 0), note)
    return "".join(part.strip() + PASSAGE_SEPARATOR for part in parts)


def _recent_passages(passages: Sequence[str], budget: int, count_tokens: Callable[[str], int]) -> list[str]:
    """The newest passages whose tokens fit the budget; cut only at passage boundaries."""
    chosen: list[str] = []
    used = 0
    for passage in reversed(passages):
        cost = count_tokens(passage.strip() + PASSAGE_SEPARATOR)
        if used + cost > budget:
            break
        chosen.append(passage)
        used += cost
    chosen.reverse()
    return chosen


def _triggered_lore(
    story: StorySnapshot, limits: PromptLimits, budget: int, count_tokens: Callable[[str], int]
) -> list[LoreItem]:
    """Lore whose keys appear in the recent story, most recently mentioned first, within budget."""
    recent = list(story.passages[-limits.lore_scan_passages :])
    if story.direction:
        recent.append(story.direction)
    ranked: list[tuple[int, int, LoreItem]] = []
    for order, item in enumerate(story.lore):
        last_mention = max(
            (i for i, passage in enumerate(recent) if any(_mentions(passage, key) for key in item.keys)),
            default=-1,
        )
        if last_mention >= 0:
            ranked.append((-last_mention, order, item))
    chosen: list[LoreItem] = []
    used = 0
    for _, _, item in sorted(ranked, key=lambda entry: (entry[0], entry[1])):
        cost = count_tokens(f"[{item.text.strip()}]\n")
        if used + cost <= budget:
            chosen.append(item)
            used += cost
    return chosen


def _mentions(text: str, key: str) -> bool:
    key = key.strip()
    if not key:
        return False
    return re.search(rf"(?<!\w){re.escape(key)}(?!\w)", text, flags=re.IGNORECASE) is not None
