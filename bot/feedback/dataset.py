"""``storybot export-dataset``: the bot's turns as preference data, for people who tune elsewhere.

One record per bot turn: the story as the model saw it (``prompt``), the passage people kept
(``chosen``), and the alternatives they turned down (``rejected``: retried away, undone, or
rated down). A turn is a passage and every passage linked to it by retries (``/story retry`` links
each new passage to the one it replaced; ``bot.alternatives.retry_families``), so all of a turn's
tries share one prompt; the one chosen is the try the story kept, which a pick may have made an
earlier one (``/story pick``). The ``pairs`` format
writes one record per chosen/rejected pair with plain strings: what DPO trainers (TRL's
``DPOTrainer``, for one) read as they are.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from bot.alternatives import retry_families
from bot.context import chat_messages
from bot.feedback.judged import JudgedPassage
from bot.language import next_passage_request

FORMATS = ("jsonl", "pairs")


@dataclass(frozen=True, slots=True)
class Turn:
    """One bot turn: its last try, and the tries before it, oldest first."""

    last: JudgedPassage
    earlier: tuple[JudgedPassage, ...]

    @property
    def tries(self) -> tuple[JudgedPassage, ...]:
        return (*self.earlier, self.last)

    @property
    def story_prompt(self) -> str | None:
        """The story the model continued; None for turns written before prompts were recorded."""
        prompts = [p.generation.get("story_prompt") for p in reversed(self.tries)]
        return next((p for p in prompts if isinstance(p, str) and p), None)

    @property
    def chosen(self) -> JudgedPassage | None:
        """The try the story kept (at most one is in it), unless people rated it down."""
        return next((p for p in self.tries if not p.turned_down), None)

    @property
    def rejected(self) -> list[JudgedPassage]:
        return [p for p in self.tries if p.turned_down]


def turns(passages: Sequence[JudgedPassage]) -> list[Turn]:
    """The passages (in story order) grouped into turns: each first try with every try linked to it."""
    families = retry_families(passages, lambda p: p.id, lambda p: p.replaces_id)
    return [Turn(tries[-1], tuple(tries[:-1])) for tries in families]


Text = str | list[dict[str, str]]


def _prompt(story_prompt: str, chat: bool) -> Text:
    """The prompt as text to continue, or (``chat``) as the chat turns the bot puts it in."""
    return chat_messages(story_prompt, next_passage_request(story_prompt)) if chat else story_prompt


def _answer(passage: JudgedPassage, chat: bool) -> Text:
    """A passage as the answer to the prompt: text, or (``chat``) the assistant's turn, since
    trainers read a conversational prompt's answers as conversations too."""
    return [{"role": "assistant", "content": passage.text}] if chat else passage.text


def records(found: Sequence[Turn], format: str, *, chat: bool = False) -> Iterator[dict[str, Any]]:
    """The dataset's records; turns with no recorded prompt are left out (count them with
    :func:`without_prompt`)."""
    for turn in found:
        story_prompt = turn.story_prompt
        if story_prompt is None:
            continue
        prompt = _prompt(story_prompt, chat)
        chosen, rejected = turn.chosen, turn.rejected
        if format == "pairs":
            if chosen is not None:
                for other in rejected:
                    yield {"prompt": prompt, "chosen": _answer(chosen, chat), "rejected": _answer(other, chat)}
            continue
        yield {
            "prompt": prompt,
            "chosen": _answer(chosen, chat) if chosen is not None else None,
            "rejected": [_answer(p, chat) for p in rejected],
            "story_id": turn.last.story_id,
            "channel": turn.last.channel_key,
            "model": turn.last.generation.get("model"),
            "adapter": turn.last.generation.get("adapter"),
        }


def without_prompt(found: Sequence[Turn]) -> int:
    """Turns written before the bot recorded its prompts: they cannot be exported."""
    return sum(turn.story_prompt is None for turn in found)
