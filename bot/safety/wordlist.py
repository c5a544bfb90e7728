"""The word-list checker: words, phrases and patterns a story of a given rating may not use.

Three lists ship in ``bot/safety/lists`` (their README gives the format and the policy), one per
rating, and a story is checked against every list at or above its own strictness: a story rated
``mature`` against ``mature.txt`` (refused in every story), ``teen`` against ``teen.txt`` and
``mature.txt``, ``general`` against all three. ``[safety]`` adds entries (``ban_general``,
``ban_teen``, ``ban_mature``, with the same reach as the files), takes shipped ones out
(``allow``) or replaces the folder (``lists_dir``). A channel's moderators add their own
(``Standard.banned``, refused whatever the rating) and take teen and general entries out for
their channel (``Standard.allowed``). They cannot take out what is refused in every story
(``mature.txt`` and ``ban_mature``): that is the operator's floor, which only ``[safety]`` moves.

Texts and entries both go through ``bot.safety.normalise``, so an entry catches its disguised
spellings; a match is reported as the original text wrote it. Entries are compiled once per
standard (a small LRU cache): checking a passage is one pass of one regular expression over the
folded text, plus one per ``re:`` entry, which is fast enough for the event loop.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bot.config import ConfigError, SafetyConfig
from bot.safety.checker import Standard, Verdict
from bot.safety.normalise import normalise
from storage.models import ContentRating

__all__ = ["Entry", "WordListChecker", "entry_key", "parse_entry", "parse_list"]

log = logging.getLogger(__name__)

REGEX_PREFIX = "re:"

# The lists a story of each rating is checked against: its own and every stricter one's reach.
_REACH: Mapping[ContentRating, tuple[ContentRating, ...]] = {
    ContentRating.GENERAL: (ContentRating.GENERAL, ContentRating.TEEN, ContentRating.MATURE),
    ContentRating.TEEN: (ContentRating.TEEN, ContentRating.MATURE),
    ContentRating.MATURE: (ContentRating.MATURE,),
}

# Word characters are letters and digits: an underscore separates words, as punctuation does.
_WORD = re.compile(r"[^\W_]+")
_BETWEEN_WORDS = r"[\W_]+"
# Scripts written without spaces between words: Thai, Lao, Myanmar, Khmer, Japanese kana (and
# its iteration marks), Han. A word of theirs has no boundary to look for, and ends a word of a
# spaced script that it touches (a Latin word in a Chinese sentence).
_SPACELESS = (
    "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u19e0-\u19ff\u3005-\u3007\u3040-\u30ff\u31f0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\ua9e0-\ua9ff\uaa60-\uaa7f\uf900-\ufaff\U00020000-\U000323af"
)
_IN_SPACELESS = re.compile(f"[{_SPACELESS}]")
_SPACED_WORD = rf"[^\W_{_SPACELESS}]"  # a letter or digit of a script that spaces its words
_NOT_AFTER_WORD = f"(?<!{_SPACED_WORD})"
_NOT_BEFORE_WORD = f"(?!{_SPACED_WORD})"
_CONTINUATION = f"{_SPACED_WORD}*"


@dataclass(frozen=True, slots=True)
class Entry:
    """One list entry. ``key`` is its canonical form, which ``allow`` is compared by (so ``Fuck*``
    allows ``fuck*``, but ``fuck`` does not allow ``fuck*``; a channel's ``Standard.allowed`` also
    lifts an entry by a word it refuses);
    ``words`` are its folded words (empty for a ``re:`` entry, whose ``pattern`` is set)."""

    text: str
    key: str
    words: tuple[str, ...] = ()
    star: bool = False
    pattern: re.Pattern[str] | None = None

    def regex(self) -> str:
        """A plain entry as a piece of the combined pattern: its words apart by any run of spaces
        and punctuation, and with ``*`` any continuation of the last word."""
        return _BETWEEN_WORDS.join(re.escape(word) for word in self.words) + (_CONTINUATION if self.star else "")

    def bounded(self) -> str:
        """``regex`` with a word boundary at each end written in a spaced script, so ``ass`` does
        not match in "Scunthorpe"; an end in a spaceless script has none, so 傻逼 matches in
        你是傻逼吗, where no space ever sets it apart."""
        before = "" if _IN_SPACELESS.match(self.words[0][0]) else _NOT_AFTER_WORD
        after = "" if _IN_SPACELESS.match(self.words[-1][-1]) else _NOT_BEFORE_WORD
        return before + self.regex() + after

    def decode_words(self) -> tuple[str, ...]:
        """What the model must not write for a plain entry: the entry as written and as folded
        (they differ for ``pédé`` or ``a$$``), without its star, each also Capitalised."""
        plain = (self.text.removesuffix("*").strip(), " ".join(self.words))
        return tuple(dict.fromkeys(v for word in plain for v in (word, word[:1].upper() + word[1:])))


def entry_key(line: str) -> str:
    """The canonical form of an entry: ``re:`` and its pattern, or its folded words and star."""
    line = line.strip()
    if line.startswith(REGEX_PREFIX):
        return REGEX_PREFIX + line.removeprefix(REGEX_PREFIX).strip()
    star = line.endswith("*")
    return " ".join(_WORD.findall(normalise(line.removesuffix("*")).text)) + ("*" if star else "")


def parse_entry(line: str, where: str) -> Entry | None:
    """One line of a list or one configured entry: ``None`` for a blank line or a ``#`` comment;
    ``ConfigError`` naming ``where`` for an invalid pattern or an entry with no letter or digit.
    The commands that let moderators add entries can call it to refuse a bad one at once."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    key = entry_key(text)
    if text.startswith(REGEX_PREFIX):
        source = key.removeprefix(REGEX_PREFIX)
        try:
            pattern = re.compile(source)
        except re.error as error:
            raise ConfigError(f"{where}: {text!r} is not a valid regular expression ({error}).") from None
        if pattern.search(""):
            raise ConfigError(f"{where}: {text!r} matches an empty text, so it would refuse everything.")
        return Entry(text, key, pattern=pattern)
    words = tuple(key.removesuffix("*").split())
    if not words:
        raise ConfigError(f"{where}: {text!r} has no letter or digit to match.")
    return Entry(text, key, words, star=key.endswith("*"))


def parse_list(lines: Iterable[str], where: str) -> tuple[Entry, ...]:
    """Every entry of a list file's lines (``where`` names the file; errors add the line)."""
    parsed = (parse_entry(line, f"{where} line {number}") for number, line in enumerate(lines, 1))
    return tuple(entry for entry in parsed if entry is not None)


class _Matcher:
    """A set of entries compiled for scanning: the plain ones as one alternation (longest first,
    so a phrase wins over a word it starts with), each bounded as its script needs
    (``Entry.bounded``), each ``re:`` entry on its own (its groups and inline flags would not
    survive being joined)."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        entries = tuple(entries)
        plain = {entry.regex(): entry.bounded() for entry in entries if entry.pattern is None}
        pieces = [plain[body] for body in sorted(plain, key=lambda body: (-len(body), body))]
        self.patterns = ((re.compile("|".join(pieces)),) if pieces else ()) + tuple(
            entry.pattern for entry in entries if entry.pattern is not None
        )

    def spans(self, text: str) -> list[tuple[int, int]]:
        """The non-empty folded spans that some entry matches."""
        return [m.span() for pattern in self.patterns for m in pattern.finditer(text) if m.end() > m.start()]


@dataclass(frozen=True, slots=True)
class _Compiled:
    """One standard's entries, ready: the rating's lists (less what the channel may allow), the
    channel's own bans, and the words the decoder must not write."""

    rating: _Matcher
    channel: _Matcher
    decode_words: tuple[str, ...]


class WordListChecker:
    """The ``words`` checker (see the module docstring). Pure CPU and fast: ``check`` runs on the
    event loop."""

    name = "words"

    def __init__(self, lists: Mapping[ContentRating, tuple[Entry, ...]]) -> None:
        """``lists``: each rating's own entries (file and config), without the stricter lists'."""
        self._lists = {rating: tuple(lists.get(rating, ())) for rating in ContentRating}
        self._compiled = functools.lru_cache(maxsize=64)(self._compile)

    @classmethod
    def from_config(cls, safety: SafetyConfig) -> WordListChecker:
        """The shipped lists (or ``lists_dir``'s), less ``allow``, plus ``ban_*``; a list or
        setting that cannot be read or has a bad entry raises ``ConfigError``."""
        allowed = {entry_key(line) for line in safety.allow}
        used: set[str] = set()
        lists: dict[ContentRating, tuple[Entry, ...]] = {}
        for rating in ContentRating:
            filed = _read_list(safety.lists_dir, rating)
            used.update(entry.key for entry in filed if entry.key in allowed)
            setting = f"safety.ban_{rating.value}"
            extra = (parse_entry(line, setting) for line in getattr(safety, f"ban_{rating.value}"))
            lists[rating] = tuple(e for e in filed if e.key not in allowed) + tuple(e for e in extra if e)
        for line in safety.allow:
            if entry_key(line) not in used:
                log.warning("safety.allow: %r is not an entry of the word lists, so it changes nothing", line)
        return cls(lists)

    async def check(self, text: str, standard: Standard) -> Verdict:
        """Refuse ``text`` when it uses an entry of its rating's lists or a channel ban; the
        reason says which, ``found`` holds the offending words as ``text`` wrote them."""
        compiled = self._compiled(standard)
        folded = normalise(text)
        by_rating = compiled.rating.spans(folded.text)
        by_channel = compiled.channel.spans(folded.text)
        if not by_rating and not by_channel:
            return Verdict.PASS
        found = tuple(dict.fromkeys(text[slice(*folded.original(*span))] for span in sorted(by_rating + by_channel)))
        if by_rating:
            reason = f"it uses words not allowed in a story rated {standard.rating.value}"
        else:
            reason = "it uses words this channel's moderators banned"
        return Verdict(False, self.name, reason, found)

    def decode_bans(self, standard: Standard) -> tuple[str, ...]:
        """The plain entries of ``standard`` (its rating's and its channel's) as words the model
        must not write: ``*`` entries by their stem; ``re:`` entries cannot be, and are left out."""
        return self._compiled(standard).decode_words

    def _compile(self, standard: Standard) -> _Compiled:
        rating = [
            entry
            for reach in _REACH[standard.rating]
            for entry in self._lists[reach]
            if reach is ContentRating.MATURE or not _lifted(entry, standard.allowed)
        ]
        channel = list(_channel_bans(standard.banned))
        words = (word for entry in rating + channel if entry.pattern is None for word in entry.decode_words())
        return _Compiled(_Matcher(rating), _Matcher(channel), tuple(dict.fromkeys(words)))


def _lifted(entry: Entry, allowed: Iterable[str]) -> bool:
    """Whether a channel's moderators allowed ``entry``: by its own text, or by a word it refuses
    (moderators allow "shit"; they need not know the list writes ``shit*``)."""
    for line in allowed:
        if entry_key(line) == entry.key:
            return True
        if entry.pattern is None and re.fullmatch(entry.regex(), " ".join(_WORD.findall(normalise(line).text))):
            return True
    return False


def _channel_bans(lines: Iterable[str]) -> Iterable[Entry]:
    """A channel's ``banned`` entries; a bad one (saved before it was checked) is logged and
    skipped rather than breaking every check in that channel."""
    for line in lines:
        try:
            entry = parse_entry(line, "a channel's banned words")
        except ConfigError as error:
            log.warning("%s", error)
            continue
        if entry is not None:
            yield entry


def _read_list(lists_dir: str, rating: ContentRating) -> tuple[Entry, ...]:
    """One rating's list file: ``lists_dir``'s when set, else the shipped one."""
    name = f"{rating.value}.txt"
    if not lists_dir:
        shipped = resources.files("bot.safety") / "lists" / name
        return parse_list(shipped.read_text(encoding="utf-8").splitlines(), f"bot/safety/lists/{name}")
    path = Path(lists_dir).expanduser() / name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"safety.lists_dir: {path} is missing (the folder needs general.txt, teen.txt and mature.txt)."
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"safety.lists_dir: cannot read {path}: {error}") from None
    return parse_list(text.splitlines(), str(path))
