"""What a streaming bot passage may show: only text the content checks have passed.

The queue streams a passage as the model writes it. Before any of it reaches a platform, the
gate cuts it after its last whole word (the word being written may not be finished) and has the
story's checks judge everything up to there; only text that passed is handed on. So the words a
check stops are never shown, not even for a moment: the channel keeps what it saw (text that
passed) until the turn ends with the passage written again, or a notice. Checks run at the
stream's own pace (``generation.stream_interval_s``, newest text only), so a slow checker costs
updates, not the model's time.

When the queue writes the passage again (a new ``attempt``), the gate starts over. A checker that
is down shows nothing more of that attempt (fail closed).
"""

from __future__ import annotations

import re

from bot.safety.checker import Standard
from bot.safety.checks import Checks


class StreamGate:
    """One turn's gate (see the module docstring)."""

    def __init__(self, checks: Checks, standard: Standard) -> None:
        self._checks = checks
        self._standard = standard
        self._attempt = 0
        self._passed = ""  # the longest text of this attempt that passed
        self._stopped = False  # this attempt failed a check (or could not be checked)

    async def admit(self, text: str, attempt: int = 1) -> str | None:
        """The part of ``text`` (of the passage's ``attempt``) that may be shown now, or None when
        nothing new may be."""
        if not self._checks.names(self._standard.rating):
            return text  # nothing to wait for
        if attempt != self._attempt or not text.startswith(self._passed):
            self._attempt, self._passed, self._stopped = attempt, "", False
        if self._stopped:
            return None
        candidate = _whole_words(text)
        if len(candidate) <= len(self._passed):
            return None
        if not (await self._checks.judge(candidate, self._standard)).passed:
            self._stopped = True
            return None
        self._passed = candidate
        return candidate


# Where a word is surely finished: a space, or a Chinese or Japanese punctuation mark (those
# scripts put no spaces between words).
_WORD_BREAK = re.compile(r"\s|[，。！？、；：]")


def _whole_words(text: str) -> str:
    """``text`` up to its last word break: the words that are finished."""
    breaks = [match.end() for match in _WORD_BREAK.finditer(text)]
    return text[: breaks[-1]].rstrip() if breaks else ""
