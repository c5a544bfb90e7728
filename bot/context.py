"""Build the model's prompt from a story, under a token budget.

Layout, top to bottom: a short preamble (title, genre), the memory, the recap ("the story so
far": a summary of passages that no longer fit, ``bot.recaps``), the triggered lore, the most
recent passages that fit, the author's note ``note_depth`` passages from the end, and the
direction from ``/story continue``. The preamble, memory and recap come first and change rarely
(the recap only when the window's cut moves, a step of passages at a time), so the head of the
prompt stays byte-stable from turn to turn and prefix caches can be reused.

Everything is deterministic: the same story and budget give the same prompt. ``compose_prompt``
returns the text with the parts it chose (``Prompt``), so ``/story context`` reports exactly what
the queue sends, measured by ``ContextReport``, without a second copy of these rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

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

    def around(self, story_prompt: str, request: str | None = None) -> str:
        """The story in the frame, asking for ``request`` (default: the next passage)."""
        if not (self.head or self.tail):
            return story_prompt
        asked = request if request is not None else next_passage_request(story_prompt)
        return self.head + story_prompt.rstrip() + self.tail.replace(_REQUEST, asked)

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
    number: int | None = None  # as /story lore list numbers it: for reports, never in the prompt


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
    # Each passage's number as /story status shows it (hidden ones keep theirs, so the numbers
    # may skip): for reports, never in the prompt. Empty: counted from 1.
    numbers: tuple[int, ...] = ()
    recap: str = ""  # the story so far: what the passages before ``recap_covers`` told
    recap_covers: int = 0  # how many of ``passages`` (from the first) the recap summarises

    def number(self, index: int) -> int:
        """The number people know ``passages[index]`` by."""
        return self.numbers[index] if self.numbers else index + 1


@dataclass(frozen=True, slots=True)
class PromptLimits:
    budget_tokens: int  # the model's context length minus the tokens asked for
    lore_max_tokens: int = 256
    note_depth: int = 3
    lore_scan_passages: int = 10  # how far back a lore key counts as "recent"
    # When old passages must go, the window's start moves in steps of this many passages, so
    # the prompt's head stays the same for several turns and the channel's cache is reused.
    window_step: int = 8
    recap_max_tokens: int = 256  # a longer recap (a person's) is cut to this, word by word


@dataclass(frozen=True, slots=True)
class LoreMatch:
    """A lore entry whose key the recent story mentions: which key, where, and whether it got in."""

    item: LoreItem
    key: str
    passage: int | None  # the index in the story's passages of its latest mention; None: the direction
    included: bool = False  # False: triggered, but there was no room for it


@dataclass(frozen=True, slots=True)
class Prompt:
    """The prompt for the next passage with the parts ``compose_prompt`` chose for it: the one
    account of what the model reads, for the queue (``text``) and for ``/story context``."""

    story: StorySnapshot
    preamble: str  # the title and genre lines (the title alone when the budget pushed the memory out)
    memory: str  # the memory as rendered, or "" when there is none or no room for it
    recap: str  # the recap as rendered (cut to its budget), or "" when there is none or no room for it
    lore: tuple[LoreMatch, ...]  # every triggered entry, most recently mentioned first
    note: str  # the author's note as rendered, or "" when there is none or no room for it
    note_depth: int  # how many passages from the end the lore and the note sit
    window_step: int  # when old passages must go, the cut moves this many at a time
    first_passage: int  # the story's passages from this index on are in the prompt
    direction: str  # as rendered, or ""
    text: str

    @property
    def passages(self) -> tuple[str, ...]:
        return self.story.passages[self.first_passage :]


@dataclass(frozen=True, slots=True)
class Budget:
    """Where a prompt's token budget comes from: the model's context, less what the passage may
    take and the frame's own text at its longest."""

    context_length: int
    passage: int
    frame: int

    @property
    def tokens(self) -> int:
        return max(self.context_length - self.passage - self.frame, 1)


@dataclass(frozen=True, slots=True)
class ContextReport:
    """A prompt measured part by part, in the model's own tokens (``/story context``). The parts'
    counts need not add up to ``total``: a tokenizer may merge across a boundary."""

    prompt: Prompt
    budget: Budget
    preamble: int
    memory: int
    recap: int
    lore: tuple[int, ...]  # each of ``prompt.lore``'s, in its order
    note: int
    passages: int
    direction: int
    total: int  # the prompt's own count, as the budget is checked

    @classmethod
    def measure(cls, prompt: Prompt, budget: Budget, count_tokens: Callable[[str], int]) -> ContextReport:
        """Each part counted as it is rendered (slow for a long story: not on the event loop)."""

        def count(text: str) -> int:
            return count_tokens(text) if text else 0

        return cls(
            prompt=prompt,
            budget=budget,
            preamble=count(prompt.preamble),
            memory=count(prompt.memory),
            recap=count(prompt.recap),
            lore=tuple(count(_lore_line(match.item)) for match in prompt.lore),
            note=count(_passage_block(prompt.note)) if prompt.note else 0,
            passages=sum(count(_passage_block(passage)) for passage in prompt.passages),
            direction=count(prompt.direction),
            total=count(prompt.text),
        )


def build_prompt(story: StorySnapshot, limits: PromptLimits, count_tokens: Callable[[str], int]) -> str:
    """The prompt for the bot's next passage; never more than ``limits.budget_tokens`` tokens."""
    return compose_prompt(story, limits, count_tokens).text


def compose_prompt(story: StorySnapshot, limits: PromptLimits, count_tokens: Callable[[str], int]) -> Prompt:
    """The prompt for the bot's next passage, with its parts; never more than ``limits.budget_tokens`` tokens.

    Layout: preamble, memory and recap | older passages | triggered lore | author's note | the last
    ``note_depth`` passages | direction. Lore and the note sit near the end, where they change
    nothing above them, so everything up to them is byte-stable from turn to turn.
    """
    parts = _Parts(
        story,
        preamble=_preamble(story),
        memory=_memory(story),
        recap=_recap(story.recap, limits.recap_max_tokens, count_tokens),
        note=f"[Author's note: {story.note.strip()}]" if story.note.strip() else "",
        tail=_direction(story.direction),
        first=len(story.passages),
    )
    while count_tokens(parts.fixed()) > limits.budget_tokens and parts.drop_optional():
        pass  # only a tiny context gets here: memory and note are capped in length by the rules
    matches = _triggered_lore(story, limits)
    parts.lore = _lore_within(
        matches, min(limits.lore_max_tokens, limits.budget_tokens - count_tokens(parts.fixed())), count_tokens
    )
    parts.first = _window(story.passages, limits, limits.budget_tokens - count_tokens(parts.fixed()), count_tokens)
    while True:
        text = parts.render(limits.note_depth)
        # Token counts of pieces do not always add up exactly (merges across a boundary), so
        # the assembled prompt is checked, and the least needed part dropped until it fits.
        if count_tokens(text) <= limits.budget_tokens or not parts.drop_one():
            chosen = {id(match) for match in parts.lore}
            return Prompt(
                story=story,
                preamble=parts.preamble,
                memory=parts.memory,
                recap=parts.recap,
                lore=tuple(replace(match, included=id(match) in chosen) for match in matches),
                note=parts.note,
                note_depth=limits.note_depth,
                window_step=limits.window_step,
                first_passage=parts.first,
                direction=parts.tail,
                text=text,
            )


@dataclass
class _Parts:
    story: StorySnapshot
    preamble: str
    memory: str
    recap: str
    note: str
    tail: str
    first: int  # the index of the oldest passage in the prompt
    lore: list[LoreMatch] = field(default_factory=list)  # most recently mentioned first

    def lore_block(self) -> str:
        return "".join(_lore_line(match.item) for match in self.lore)

    def fixed(self) -> str:
        """Everything but the passages, as it will be rendered."""
        return self.render(note_depth=0, with_passages=False)

    def render(self, note_depth: int, *, with_passages: bool = True) -> str:
        inserts = [text for text in (self.lore_block().rstrip("\n"), self.note) if text]
        parts = list(self.story.passages[self.first :]) if with_passages else []
        parts[max(len(parts) - note_depth, 0) : max(len(parts) - note_depth, 0)] = inserts
        return self.preamble + self.memory + self.recap + "".join(_passage_block(part) for part in parts) + self.tail

    def drop_one(self) -> bool:
        """Drop the oldest passage, else an optional part; False when nothing is left to drop."""
        if self.first < len(self.story.passages):
            self.first += 1
            return True
        return self.drop_optional()

    def drop_optional(self) -> bool:
        """Drop the least recent lore, else the note, else the recap, else the memory (and genre);
        False when bare."""
        if self.lore:
            self.lore.pop()
        elif self.note:
            self.note = ""
        elif self.recap:
            self.recap = ""
        elif self.preamble + self.memory != _title_line(self.story):
            self.preamble, self.memory = _title_line(self.story), ""
        else:
            return False
        return True


def _title_line(story: StorySnapshot) -> str:
    return f"{HEADER_LABELS[0]}: {story.title}\n\n"


def _preamble(story: StorySnapshot) -> str:
    lines = [f"{HEADER_LABELS[0]}: {story.title}"]
    if story.genre:
        lines.append(f"{HEADER_LABELS[1]}: {story.genre}")
    return "\n".join(lines) + "\n\n"


def _memory(story: StorySnapshot) -> str:
    return f"[Memory: {story.memory.strip()}]\n\n" if story.memory.strip() else ""


def _recap(recap: str, max_tokens: int, count_tokens: Callable[[str], int]) -> str:
    """The recap as rendered, its words cut from the end until it fits ``max_tokens`` (a person's
    may run longer than the bot's, which is written within it)."""
    words = recap.split()
    if not words or max_tokens <= 0:
        return ""
    fits, longest = 0, len(words)
    while fits < longest:  # the most words whose rendering fits, by bisection
        middle = (fits + longest + 1) // 2
        if count_tokens(_recap_block(words[:middle])) <= max_tokens:
            fits = middle
        else:
            longest = middle - 1
    return _recap_block(words[:fits]) if fits else ""


def _recap_block(words: Sequence[str]) -> str:
    return f"[The story so far: {' '.join(words)}]\n\n"


def _direction(direction: str | None) -> str:
    return f"[Next: {direction.strip()}]\n\n" if direction and direction.strip() else ""


def _passage_block(passage: str) -> str:
    return passage.strip() + PASSAGE_SEPARATOR


def _lore_line(item: LoreItem) -> str:
    return f"[{item.text.strip()}]\n"


def _window(passages: Sequence[str], limits: PromptLimits, budget: int, count_tokens: Callable[[str], int]) -> int:
    """Where the newest whole passages that fit the budget start, at a multiple of ``window_step``.

    Only whole passages are kept, and when the story no longer fits, the start jumps forward a
    step at a time rather than one passage a turn, so consecutive prompts share their head.
    """
    used = 0
    first = len(passages)
    for index in range(len(passages) - 1, -1, -1):
        used += count_tokens(_passage_block(passages[index]))
        if used > budget:
            break
        first = index
    if first > 0 and limits.window_step > 1:
        first = min(-(-first // limits.window_step) * limits.window_step, len(passages) - 1)
    return first


def _triggered_lore(story: StorySnapshot, limits: PromptLimits) -> list[LoreMatch]:
    """Lore whose keys appear in the recent story (or the direction), most recently mentioned first."""
    start = len(story.passages) - len(story.passages[-limits.lore_scan_passages :])
    recent: list[tuple[int | None, str]] = [(start + i, p) for i, p in enumerate(story.passages[start:])]
    if story.direction:
        recent.append((None, story.direction))
    ranked: list[tuple[int, int, LoreMatch]] = []
    for order, item in enumerate(story.lore):
        for rank in range(len(recent) - 1, -1, -1):
            where, text = recent[rank]
            key = next((key for key in item.keys if _mentions(text, key)), None)
            if key is not None:
                ranked.append((-rank, order, LoreMatch(item, key.strip(), where)))
                break
    return [match for _, _, match in sorted(ranked, key=lambda entry: (entry[0], entry[1]))]


def _lore_within(matches: Sequence[LoreMatch], budget: int, count_tokens: Callable[[str], int]) -> list[LoreMatch]:
    """The triggered lore that fits ``budget``, taken in order (the most recently mentioned first)."""
    chosen: list[LoreMatch] = []
    used = 0
    for match in matches:
        cost = count_tokens(_lore_line(match.item))
        if used + cost <= budget:
            chosen.append(match)
            used += cost
    return chosen


def _mentions(text: str, key: str) -> bool:
    key = key.strip()
    if not key:
        return False
    return re.search(rf"(?<!\w){re.escape(key)}(?!\w)", text, flags=re.IGNORECASE) is not None
