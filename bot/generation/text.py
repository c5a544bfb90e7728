"""Turn raw model output into a passage fit to show: no chat speakers, ends at a sentence."""

from __future__ import annotations

import re
from collections.abc import Iterable

from bot.context import HEADER_LABELS
from bot.printable import CONTROL_CHARACTERS

# Control characters (but newline and tab) and the replacement character: what a model emits
# when it stops inside a multi-byte character or babbles; never worth showing.
_UNPRINTABLE = re.compile(f"[{CONTROL_CHARACTERS}\ufffd]")

# What ends a sentence: . ! ? or … before a space or the end of the text, or a Chinese/Japanese
# full stop, question or exclamation mark (no space follows those); either possibly followed by
# closing quotes or brackets. Public so that the adapters cut long messages where a sentence ends
# by the same reckoning (adapters/common/split.py).
SENTENCE_MARKS = ".!?…"
CLOSING_MARKS = "\"'”’»)]"
CJK_SENTENCE_MARKS = "。！？"
CJK_CLOSING_MARKS = "」』”’）》"
_SENTENCE_END = re.compile(
    rf"[{re.escape(SENTENCE_MARKS)}][{re.escape(CLOSING_MARKS)}]*(?=\s|$)"
    rf"|[{re.escape(CJK_SENTENCE_MARKS)}][{re.escape(CJK_CLOSING_MARKS)}]*"
)
# Titles whose full stop never ends a sentence ("Mr. Hale opened the door").
_TITLES = frozenset({"mr", "mrs", "ms", "dr", "prof", "st", "mt", "sr", "jr", "capt", "col", "gen", "lt", "sgt", "rev"})
_LAST_WORD = re.compile(r"(\w+)$")
# A line that writes one of the prompt's header labels ("Title: …"), or a [bracketed note]: the
# model echoing the prompt's markup rather than telling the story.
_LABELS = "|".join(HEADER_LABELS)
_OPENING_HEADERS = re.compile(rf"(?:\s*(?:{_LABELS})[ \t]*:[^\n]*(?:\n|$))+")
_MARKUP = re.compile(rf"(?:^|\n)[ \t]*(?:\[|(?:{_LABELS})[ \t]*:)")
# A chat model's announcement before the passage ("Here is the next passage of the story:",
# "Sure! Here's the continuation."): the passage is what follows it. It must announce what comes
# next, so that a story's own "Here is the map: ..." or "Here is the story of my hand." stays.
_PREAMBLE = re.compile(
    r"\s*(?:(?:sure|certainly|of course|absolutely|okay|ok)\b[!,.]*\s*)?here(?:'s|’s| is| are)\s+(?:the\s+|a\s+)?"
    r"(?:next|following|continuation|rest)\b[^:.!\n]{0,60}[:.!]\s*",
    re.IGNORECASE,
)
# A chat model talking as an assistant instead of telling the story: phrases a narrator hardly
# opens with ('"Sure," she said' is a story), and ones no story has anywhere.
_ASSISTANT_OPENING = re.compile(
    r"\s*(?:i'd be (?:happy|glad)|i would be (?:happy|glad)|i'm (?:happy|glad) to help|i hope you enjoy"
    r"|i've written|i have written|ladies and gentlemen"
    r"|(?:i am|i'm) (?:so |very )?(?:excited|thrilled|delighted|pleased) to (?:share|present|bring you|tell you))\b",
    re.IGNORECASE,
)
_ASSISTANT_ANYWHERE = re.compile(r"\bas an ai\b|\blanguage model\b", re.IGNORECASE)


def speaker_stops(names: Iterable[str]) -> tuple[str, ...]:
    """Texts that mean the model started writing a chat line for someone ("\\nAlice:")."""
    return tuple(f"\n{name}:" for name in sorted(set(names)) if name.strip())


def cut_at_stops(text: str, stops: Iterable[str]) -> str:
    """Everything before the first stop text.

    The prompt ends with a blank line, so the output starts on a new line: a stop text that
    begins with a newline also counts at the very start.
    """
    lined = "\n" + text
    end = len(lined)
    for stop in stops:
        found = lined.find(stop)
        if found != -1:
            end = min(end, found)
    return lined[1:end] if end else ""


def trim_to_sentence(text: str) -> str:
    """Drop an unfinished last sentence; text with no sentence end at all is kept whole."""
    text = text.strip()
    ends = [end.end() for end in _SENTENCE_END.finditer(text) if not _after_title(text, end.start())]
    return text[: ends[-1]].strip() if ends else text


def _after_title(text: str, stop: int) -> bool:
    """Whether the full stop at ``stop`` closes a title such as "Mr" rather than a sentence."""
    word = _LAST_WORD.search(text, 0, stop)
    return text[stop] == "." and word is not None and word[1].lower() in _TITLES


def visible_text(raw: str, stops: Iterable[str]) -> str:
    """What may be shown while the passage is still being written: no speaker lines, echoed
    prompt markup ("Title: …" headings, [bracket notes]) or unprintable characters. Header lines
    the passage opens with are dropped; markup later on ends it. (The last sentence may still
    be unfinished.) An assistant's announcement of the passage ("Here is the next passage:") is
    dropped too."""
    text = _UNPRINTABLE.sub("", cut_at_stops(raw, stops))
    for opening_pattern in (_PREAMBLE, _OPENING_HEADERS):
        opening = opening_pattern.match(text)
        if opening:
            text = text[opening.end() :]
    markup = _MARKUP.search(text)
    return text[: markup.start()] if markup else text


def talks_as_assistant(passage: str) -> bool:
    """Whether the passage is a chat assistant talking ("I'd be happy to help...", "As an AI")
    rather than the story: the bot writes such a passage again."""
    return bool(_ASSISTANT_OPENING.match(passage) or _ASSISTANT_ANYWHERE.search(passage))


def clean_passage(raw: str, stops: Iterable[str]) -> str:
    """The passage to store: the visible text, ending at a sentence end."""
    return trim_to_sentence(visible_text(raw, stops))
