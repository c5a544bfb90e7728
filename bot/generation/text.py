"""Turn raw model output into a passage fit to show: no chat speakers, ends at a sentence."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Control characters (but newline and tab) and the replacement character: what a model emits
# when it stops inside a multi-byte character or babbles; never worth showing.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffd]")

# A sentence end: . ! ? or … possibly followed by closing quotes or brackets.
_SENTENCE_END = re.compile(r"[.!?…][\"'”’»)\]]*(?=\s|$)")


def speaker_stops(names: Iterable[str]) -> tuple[str, ...]:
    """Texts that mean the model started writing a chat line for someone ("\\nAlice:")."""
    return tuple(f"\n{name}:" for name in sorted(set(names)) if name.strip())


def cut_at_stops(text: str, stops: Iterable[str]) -> str:
    """Everything before the first stop text."""
    end = len(text)
    for stop in stops:
        found = text.find(stop)
        if found != -1:
            end = min(end, found)
    return text[:end]


def trim_to_sentence(text: str) -> str:
    """Drop an unfinished last sentence; text with no sentence end at all is kept whole."""
    text = text.strip()
    ends = list(_SENTENCE_END.finditer(text))
    if not ends:
        return text
    return text[: ends[-1].end()].strip()


def clean_passage(raw: str, stops: Iterable[str]) -> str:
    """The passage to store: cut at a speaker line or an echoed [bracket note], then at a sentence end."""
    text = _UNPRINTABLE.sub("", cut_at_stops(raw, stops))
    bracket = re.search(r"(?:^|\n)\s*\[", text)
    if bracket:
        text = text[: bracket.start()]
    return trim_to_sentence(text)
