"""The small interface every generation backend implements.

Backends are blocking and run in a worker thread, never on the event loop. They take a batch of
requests, and while it runs they ask for more (``more``) so that a request arriving mid-batch
joins it at the next step instead of waiting for the whole batch: continuous batching. Each
request reports its own text the moment it is finished (``on_done``), so a short passage is not
held back by a long one beside it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bot.config import Adapter, ModelConfig
from bot.context import PromptFrame
from bot.story_settings import StorySettings

MIN_PROMPT_TOKENS = 64  # the least story a bot passage is written from


def longest_passage(context_length: int) -> int:
    """The most new tokens a model with this context can write beside a minimal prompt.

    Asking for more would run past the model's positions (an IndexError inside GPT-2).
    """
    return max(context_length - min(MIN_PROMPT_TOKENS, context_length // 2), 1)


class ModelUnavailable(Exception):
    """The model cannot be used; the message is one line that says what to do."""


_DEFAULTS = ModelConfig()


@dataclass(frozen=True, slots=True)
class Sampling:
    """How one request is sampled. The defaults are the config's, so a request built without a
    story (benchmarks, tests, warm-up) samples like a story that changed nothing; a story's turn
    gets its own from ``for_story``."""

    temperature: float = _DEFAULTS.temperature
    top_k: int = _DEFAULTS.top_k
    top_p: float = _DEFAULTS.top_p
    repetition_penalty: float = _DEFAULTS.repetition_penalty
    no_repeat_ngram_size: int = _DEFAULTS.no_repeat_ngram_size
    max_new_tokens: int = _DEFAULTS.max_new_tokens
    min_new_tokens: int = _DEFAULTS.min_new_tokens
    bad_words: tuple[str, ...] = _DEFAULTS.bad_words

    @classmethod
    def for_story(cls, settings: StorySettings, model: ModelConfig) -> Sampling:
        """A story's sampling: its settings, and the config's for what a story cannot change."""
        return cls(
            temperature=settings.temperature,
            top_k=settings.top_k,
            top_p=settings.top_p,
            repetition_penalty=settings.repetition_penalty,
            no_repeat_ngram_size=model.no_repeat_ngram_size,
            max_new_tokens=settings.length,
            min_new_tokens=model.min_new_tokens,
            bad_words=model.bad_words,
        )


@dataclass(slots=True)
class GenerationRequest:
    """One prompt to continue.

    ``on_text`` receives the whole text generated so far, from the worker thread, as it grows.
    ``stop_texts`` end the passage where they appear (a participant's name as a chat speaker);
    ``cancelled`` stops generation at the next token. ``cache_key`` (the channel) lets a
    backend reuse the work done for the channel's previous prompt. ``on_done`` receives the
    final raw text once, from the worker thread, as soon as this request is finished.
    ``adapter``: the LoRA adapter on the backend's base model that writes it (None: the base).
    """

    prompt: str
    sampling: Sampling
    stop_texts: tuple[str, ...] = ()
    on_text: Callable[[str], None] | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    cache_key: str | None = None
    on_done: Callable[[str], None] | None = None
    adapter: Adapter | None = None


class Backend(Protocol):
    model_name: str

    def load(self, adapter: Adapter | None = None) -> None:
        """Load the model if it is not loaded yet, and ``adapter`` on it if that is not; raise
        ModelUnavailable on failure (an adapter's fails only the turns that ask for it)."""

    @property
    def loaded(self) -> bool:
        """Whether ``load`` has finished, so that ``context_length`` answers without loading."""

    @property
    def context_length(self) -> int:
        """Prompt plus new tokens the model can attend to."""

    def count_tokens(self, text: str) -> int: ...

    @property
    def prompt_frame(self) -> PromptFrame:
        """What goes around the story in the prompt (empty for plain completion); needs ``load``."""

    def generate(
        self, requests: Sequence[GenerationRequest], more: Callable[[], Sequence[GenerationRequest]] | None = None
    ) -> list[str]:
        """Continue every prompt; return the raw generated text of each, in order.

        ``more``, when given, is asked again and again while the batch runs for requests that
        join it; their texts reach them only through ``on_done``. The call returns once every
        request it took is finished and ``more`` has nothing left.
        """
