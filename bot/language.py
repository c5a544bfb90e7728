"""Which language a story is written in: a guess good enough to ask the model to keep to it.

Why: asked in English for "the next passage", a small instruct model answers a Spanish or
Chinese story in English. Told the story's language, in English, and asked in that language, it
mostly keeps to it: on the bundled SmolLM2-135M, 2 of 12 passages for the Chinese, Spanish and
French openings came back in English, against 7 of 12 asked plainly and 5 of 12 asked only in
the story's language. The guess is cheap and deterministic —
the script for Chinese and Japanese, frequent short words for the others — so the same story
always gets the same prompt. The quality benchmark tells a passage's language the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Language:
    code: str
    name: str  # in English
    ask: str  # "write the next passage", in this language
    common_words: frozenset[str] = frozenset()  # frequent short words that tell it from the others

    @property
    def request(self) -> str:
        """What the person's turn asks a chat model for."""
        if self is ENGLISH:
            return self.ask
        return f"The story is written in {self.name}: write in {self.name}. {self.ask}"


ENGLISH = Language(
    "en",
    "English",
    "Write the next passage of the story.",
    frozenset({"the", "and", "of", "to", "was", "he", "she", "it", "in", "that", "his", "her", "with", "had"}),
)
_WORDED = (
    ENGLISH,
    Language(
        "es",
        "Spanish",
        "Escribe el siguiente pasaje de la historia, en español.",
        frozenset({"el", "los", "las", "y", "una", "del", "por", "con", "su", "se", "está", "pero", "como"}),
    ),
    Language(
        "fr",
        "French",
        "Écris le passage suivant de l'histoire, en français.",
        frozenset({"le", "les", "et", "est", "une", "il", "elle", "dans", "du", "des", "au", "pas", "qui"}),
    ),
    Language(
        "de",
        "German",
        "Schreibe den nächsten Abschnitt der Geschichte, auf Deutsch.",
        frozenset({"der", "die", "das", "und", "ist", "nicht", "ein", "eine", "sie", "er", "mit", "den", "auf"}),
    ),
    Language(
        "it",
        "Italian",
        "Scrivi il prossimo passaggio della storia, in italiano.",
        frozenset({"il", "gli", "di", "che", "non", "per", "della", "è", "sono", "nel", "una", "si", "lo"}),
    ),
    Language(
        "pt",
        "Portuguese",
        "Escreva o próximo trecho da história, em português.",
        frozenset({"o", "os", "não", "um", "uma", "do", "da", "em", "com", "é", "ao", "seu", "sua"}),
    ),
)
CHINESE = Language("zh", "Chinese", "请用中文写出故事的下一段。")
JAPANESE = Language("ja", "Japanese", "物語の次の一節を日本語で書いてください。")
LANGUAGES = (*_WORDED, CHINESE, JAPANESE)
LONGEST_REQUEST = max((language.request for language in LANGUAGES), key=len)  # for prompt budgets

HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs
_HAN = re.compile(f"[{HAN}]")
_KANA = re.compile("[\u3040-\u30ff]")
_CJK = re.compile(f"[{HAN}\u3040-\u30ff]+")
_WORD = re.compile(r"[^\W\d_]+")
MIN_COMMON_WORDS = 2  # fewer, and a short text in any language could have scored


def language_of(text: str) -> Language | None:
    """The likeliest language of ``text``; None when it cannot tell (no letters, too few cues).

    Chinese or Japanese (Japanese when any kana) when its ideographs and kana outnumber its
    other words: a Chinese story keeps its English labels ("Title:") and names, an English one
    its few Chinese names. Else the language whose common words occur most, at least
    ``MIN_COMMON_WORDS`` times."""
    ideographs, kana = len(_HAN.findall(text)), len(_KANA.findall(text))
    words = _WORD.findall(_CJK.sub(" ", text.lower()))
    if ideographs + kana > len(words):
        return JAPANESE if kana else CHINESE
    scores = {language: sum(word in language.common_words for word in words) for language in _WORDED}
    best = max(scores, key=lambda language: scores[language])  # ties: the earlier, English first
    return best if scores[best] >= MIN_COMMON_WORDS else None


def next_passage_request(story_text: str) -> str:
    """What the person's turn asks a chat model for, in the story's language (English when unsure)."""
    return (language_of(story_text) or ENGLISH).request


def written_in_another(passage: str, story_language: Language | None) -> Language | None:
    """The language ``passage`` is clearly written in, when that is not the story's; else None
    (also when either cannot be told)."""
    found = language_of(passage)
    return found if story_language is not None and found is not None and found != story_language else None
