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
from dataclasses import dataclass, field

from bot.language import LONGEST_REQUEST, next_passage_request

PASSAGE_SEPARATOR = "\n\n"

# How the story is put to a chat model: a system turn that says what to write, the story in the
# person's turn, and the model's own turn begun. Read by the quality benchmark's judgement, not
# by taste: asked plainly for the next passage, an instruct model writes prose; given the bare
# "Title: …" text it tends to answer with a numbered list of questions about it. The request
# is in the story's own language (``bot.language``): asked in English, it answers in English.
CHAT_SYSTEM = (
    "You are a novelist writing a story together with a group of people, one passage at a time. "
    "Write only the next passage of the story: a paragraph or two of prose that carries it forward, "
    "in the story's own language, tense and point of view. Never write a title, a list, a heading, "
    "a note or a question to the reader."
)
_STORY = "\x00story\x00"  # where the story goes in the rendered template
_REQUEST = "\x00request\x00"  # where the request goes
# The labels of the prompt's header lines: a passage that writes one is echoing the prompt.
HEADER_LABELS = ("Title", "Genre")


@dataclass(frozen=True, slots=True)
class PromptFrame:
    """Text before and after the story: a chat template's turns, or nothing (plain completion).

    The head never changes, so the prompt's start stays byte-stable for the prefix cache; the
    tail holds the request, put in the story's language."""

    head: str = ""
    tail: str = ""

    def around(self, story_prompt: str) -> str:
        if not (self.head or self.tail):
            return story_prompt
        return self.head + story_prompt.rstrip() + self.tail.replace(_REQUEST, next_passage_request(story_prompt))

    def overhead(self) -> str:
        """The frame's own text at its longest (the longest request): what a prompt budget keeps free."""
        return self.head + self.tail.replace(_REQUEST, LONGEST_REQUEST)


COMPLETION = PromptFrame()


def chat_messages(story_prompt: str, request: str) -> list[dict[str, str]]:
    """The story as a chat: the system turn says what to write, the person's turn holds the story
    and the request. Used for local chat templates and for OpenAI-compatible chat servers alike."""
    return [
        {"role": "system", "content": CHAT_SYSTEM},
        {"role": "user", "content": f"{story_prompt.rstrip()}\n\n{request}"},
    ]


def chat_frame(render: Callable[[list[dict[str, str]]], str]) -> PromptFrame:
    """The frame a chat template gives: ``render`` turns messages into the model's text, with the
    assistant's turn begun (``apply_chat_template(..., tokenize=False, add_generation_prompt=True)``)."""
    text = render(chat_messages(_STORY, _REQUEST))
    head, story, tail = text.partition(_STORY)
    if not story or _REQUEST not in tail:
        raise ValueError("the chat template dropped the story")
    return PromptFrame(head, tail)


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
    # When old passages must go, the window's start moves in steps of this many passages, so
    # the prompt's head stays the same for several turns and the channel's cache is reused.
    window_step: int = 8


def build_prompt(story: StorySnapshot, limits: PromptLimits, count_tokens: Callable[[str], int]) -> str:
    """The prompt for the bot's next passage; never more than ``limits.budget_tokens`` tokens.

    Layout: preamble and memory | older passages | triggered lore | author's note | the last
    ``note_depth`` passages | direction. Lore and the note sit near the end, where they change
    nothing above them, so everything up to them is byte-stable from turn to turn.
    """
    parts = _Parts(
        head=_preamble(story),
        note=f"[Author's note: {story.note.strip()}]" if story.note.strip() else "",
        tail=_direction(story.direction),
    )
    while count_tokens(parts.fixed()) > limits.budget_tokens and parts.drop_optional(story):
        pass  # only a tiny context gets here: memory and note are capped in length by the rules
    parts.lore = _triggered_lore(
        story, limits, min(limits.lore_max_tokens, limits.budget_tokens - count_tokens(parts.fixed())), count_tokens
    )
    parts.passages = _window(story.passages, limits, limits.budget_tokens - count_tokens(parts.fixed()), count_tokens)
    while True:
        prompt = parts.render(limits.note_depth)
        # Token counts of pieces do not always add up exactly (merges across a boundary), so
        # the assembled prompt is checked, and the least needed part dropped until it fits.
        if count_tokens(prompt) <= limits.budget_tokens or not parts.drop_one(story):
            return prompt


@dataclass
class _Parts:
    head: str
    note: str
    tail: str
    lore: list[LoreItem] = field(default_factory=list)
    passages: list[str] = field(default_factory=list)

    def lore_block(self) -> str:
        return "".join(f"[{item.text.strip()}]\n" for item in self.lore)

    def fixed(self) -> str:
        """Everything but the passages, as it will be rendered."""
        return self.render(note_depth=0, with_passages=False)

    def render(self, note_depth: int, *, with_passages: bool = True) -> str:
        inserts = [text for text in (self.lore_block().rstrip("\n"), self.note) if text]
        parts = list(self.passages) if with_passages else []
        parts[max(len(parts) - note_depth, 0) : max(len(parts) - note_depth, 0)] = inserts
        return self.head + "".join(part.strip() + PASSAGE_SEPARATOR for part in parts) + self.tail

    def drop_one(self, story: StorySnapshot) -> bool:
        """Drop the oldest passage, else an optional part; False when nothing is left to drop."""
        if self.passages:
            self.passages.pop(0)
            return True
        return self.drop_optional(story)

    def drop_optional(self, story: StorySnapshot) -> bool:
        """Drop the least recent lore, else the note, else the memory; False when bare."""
        if self.lore:
            self.lore.pop()
        elif self.note:
            self.note = ""
        elif self.head != _title_line(story):
            self.head = _title_line(story)
        else:
            return False
        return True


def _title_line(story: StorySnapshot) -> str:
    return f"{HEADER_LABELS[0]}: {story.title}\n\n"


def _preamble(story: StorySnapshot) -> str:
    lines = [f"{HEADER_LABELS[0]}: {story.title}"]
    if story.genre:
        lines.append(f"{HEADER_LABELS[1]}: {story.genre}")
    text = "\n".join(lines) + "\n\n"
    if story.memory.strip():
        text += f"[Memory: {story.memory.strip()}]\n\n"
    return text


def _direction(direction: str | None) -> str:
    return f"[Next: {direction.strip()}]\n\n" if direction and direction.strip() else ""


def _window(
    passages: Sequence[str], limits: PromptLimits, budget: int, count_tokens: Callable[[str], int]
) -> list[str]:
    """The newest whole passages that fit the budget, starting at a multiple of ``window_step``.

    Only whole passages are kept, and when the story no longer fits, the start jumps forward a
    step at a time rather than one passage a turn, so consecutive prompts share their head.
    """
    used = 0
    first = len(passages)
    for index in range(len(passages) - 1, -1, -1):
        used += count_tokens(passages[index].strip() + PASSAGE_SEPARATOR)
        if used > budget:
            break
        first = index
    if first > 0 and limits.window_step > 1:
        first = min(-(-first // limits.window_step) * limits.window_step, len(passages) - 1)
    return list(passages[first:]) if passages and first < len(passages) else []


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
