"""The content checks as the bot runs them: each rating's checkers, in order, with a time limit,
and what a checker that is down means for a person's text and for the bot's.

``Checks`` is built once per process from ``[safety]`` (``Checks.from_config``): only the
checkers some rating names are made, each once, and shared by every story. A text passes when
every checker of its story's rating passes it; the first that refuses gives the reason.

A checker that cannot answer (``CheckerDown``, or slower than ``safety.timeout_s``) fails closed
for the bot (the error reaches the queue, which holds the passage back) and, for people, as
``safety.human_when_down`` says: refuse the text, or let that one checker's judgement go.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from bot.config import Config, ConfigError, SafetyConfig
from bot.safety.checker import Checker, CheckerDown, Standard, Verdict
from storage.models import ContentRating

__all__ = ["CHECKS_DOWN", "Checks"]

log = logging.getLogger(__name__)

CHECKS_DOWN = "the content checks are not answering right now"


class Checks:
    """Every rating's checkers (see the module docstring)."""

    def __init__(self, safety: SafetyConfig, checkers: Mapping[str, Checker]) -> None:
        self.safety = safety
        self._checkers = MappingProxyType(dict(checkers))
        self._by_rating = {
            rating: tuple(self._checkers[name] for name in self.names(rating)) for rating in ContentRating
        }

    @classmethod
    def from_config(cls, config: Config) -> Checks:
        """The checkers the config's ratings use, each made once (a bad setting: ConfigError)."""
        safety = config.safety
        wanted = {name for rating in ContentRating for name in getattr(safety, rating.value)}
        checkers: dict[str, Checker] = {}
        if "words" in wanted:
            from bot.safety.wordlist import WordListChecker

            checkers["words"] = WordListChecker.from_config(safety)
        if "classifier" in wanted:
            from bot.safety.classifier import ClassifierChecker

            checkers["classifier"] = ClassifierChecker.from_config(safety)
        if "moderation" in wanted:
            from bot.safety.moderation import ModerationChecker

            checkers["moderation"] = ModerationChecker.from_config(safety, config.openai)
        return cls(safety, checkers)

    def names(self, rating: ContentRating) -> tuple[str, ...]:
        """The checkers a story of ``rating`` goes through, in order."""
        names: tuple[str, ...] = getattr(self.safety, rating.value)
        unknown = [name for name in names if name not in self._checkers]
        if unknown:
            raise ConfigError(f"safety.{rating.value} names {', '.join(unknown)}, which this process did not make.")
        return names

    async def warm_up(self) -> None:
        """Load what the checkers load (a classifier's model) before the first text needs it."""
        for checker in self._checkers.values():
            load = getattr(checker, "load", None)
            if load is not None:
                try:
                    await load()
                except Exception as error:  # checks of that kind fail (closed) until it loads
                    log.warning("the %s check could not load: %s", checker.name, error)

    async def close(self) -> None:
        for checker in self._checkers.values():
            close = getattr(checker, "close", None)
            if close is not None:
                await close()

    async def check(self, text: str, standard: Standard) -> Verdict:
        """The bot's text: every checker of the rating must pass it; raises ``CheckerDown`` when
        one cannot answer (the bot's passage then waits: fail closed)."""
        for checker in self._by_rating[standard.rating]:
            verdict = await self._ask(checker, text, standard)
            if not verdict.passed:
                return verdict
        return Verdict.PASS

    async def judge(self, text: str, standard: Standard) -> Verdict:
        """``check``, with a checker that is down answering a refusal marked ``down``."""
        try:
            return await self.check(text, standard)
        except CheckerDown as error:
            log.warning("a bot passage could not be checked by the %s check: %s", error.checker, error)
            return Verdict(False, error.checker, CHECKS_DOWN, down=True)

    async def check_human(self, texts: Iterable[str], standard: Standard) -> Verdict:
        """A person's texts: as ``check``, but a checker that is down refuses them or is skipped,
        as ``safety.human_when_down`` says."""
        for text in texts:
            for checker in self._by_rating[standard.rating]:
                try:
                    verdict = await self._ask(checker, text, standard)
                except CheckerDown as error:
                    if self.safety.human_when_down == "allow":
                        log.warning("the %s check is down (%s); letting a person's text past it", checker.name, error)
                        continue
                    return Verdict(False, checker.name, CHECKS_DOWN, down=True)
                if not verdict.passed:
                    return verdict
        return Verdict.PASS

    def decode_bans(self, standard: Standard) -> tuple[str, ...]:
        """Words the model must not write for this standard (its plain banned words), when the
        word lists are one of the rating's checkers and ``safety.decode_bans`` is on."""
        words = self._checkers.get("words")
        if not self.safety.decode_bans or words is None or "words" not in self.names(standard.rating):
            return ()
        from bot.safety.wordlist import WordListChecker

        assert isinstance(words, WordListChecker)
        return words.decode_bans(standard)

    async def _ask(self, checker: Checker, text: str, standard: Standard) -> Verdict:
        try:
            return await asyncio.wait_for(checker.check(text, standard), self.safety.timeout_s)
        except TimeoutError:
            message = f"took longer than {self.safety.timeout_s:g} s"
            raise CheckerDown(message, checker.name) from None
        except CheckerDown as error:
            raise CheckerDown(str(error), checker.name) from error
        except Exception as error:  # a broken checker is a checker that is down, never a crash
            log.exception("the %s check failed", checker.name)
            raise CheckerDown("it failed", checker.name) from error
