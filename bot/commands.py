"""Parse ``/story ...`` text into typed commands.

Every adapter (console, Discord, Slack) sends what people type through :func:`parse`, so the
words, the error messages and the help text are the same on every platform. The parser knows
nothing about stories, turns or permissions (that is ``bot.sessions``): it only checks that the
words make sense and converts values to their types. Bad input raises :class:`ParseError`
whose message is one line that says what was wrong and what to type instead.

Free text (passages, directions, memory, notes, lore, openings) is cut from the original string,
never re-joined from tokens, so whitespace, newlines, quotes and markdown survive exactly.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import itertools
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

from bot.printable import printable
from bot.story_settings import STORY_SETTINGS, StorySetting
from storage.models import ContentRating, WordRule

__all__ = [
    "EXPORT_FORMATS",
    "HELP_TEXT",
    "MAX_GENRE_LENGTH",
    "MAX_TITLE_WORDS",
    "SETTING_KEYS",
    "Add",
    "Branch",
    "Command",
    "ContentRating",
    "Context",
    "Continue",
    "End",
    "Export",
    "Help",
    "Hide",
    "Join",
    "Leave",
    "ListStories",
    "LoreAdd",
    "LoreList",
    "LoreRemove",
    "Memory",
    "Mode",
    "Note",
    "ParseError",
    "Pick",
    "Publish",
    "Rate",
    "Recap",
    "Report",
    "Retry",
    "SettingSpec",
    "Settings",
    "Share",
    "Show",
    "Start",
    "Status",
    "Turn",
    "Undo",
    "Unhide",
    "Unpublish",
    "Vote",
    "WordRule",
    "Words",
    "parse",
    "parse_rating",
    "usage",
]

EXPORT_FORMATS = ("md", "txt", "html", "epub", "json")
MAX_GENRE_LENGTH = 50
# An unquoted `/story start` remainder this short (and not a finished sentence) is a title.
MAX_TITLE_WORDS = 8


class ParseError(ValueError):
    """Bad ``/story`` input; the message is one line that says what to type instead."""

    def __init__(self, message: str) -> None:
        # Messages quote user input, which may hold line breaks; a reply must stay one line.
        super().__init__(" ".join(message.split()))


def _show(text: str, limit: int = 40) -> str:
    """Quote user input inside an error message: one line, printable, short."""
    text = "".join(ch for ch in " ".join(text.split()) if ch.isprintable())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"'{text}'"


def _suggest(word: str, choices: Collection[str]) -> str | None:
    """The choice the user probably meant: a unique prefix match, else the closest spelling."""
    if not word or len(word) > 50:  # nothing sensible to suggest; keeps difflib cheap
        return None
    prefixed = [choice for choice in choices if choice.startswith(word)]
    if len(prefixed) == 1:
        return prefixed[0]
    close = difflib.get_close_matches(word, choices, n=1)
    return close[0] if close else None


class Mode(enum.StrEnum):
    """Turn order of a story; the rules behind each mode live in ``bot.sessions``.

    A StrEnum, so that replies built with f-strings say "round-robin", not "Mode.ROUND_ROBIN".
    """

    ALTERNATE = "alternate"
    ROUND_ROBIN = "round-robin"
    FREE = "free"

    @classmethod
    def parse(cls, text: str) -> Mode:
        """Read a mode as typed: any case, ``-``, ``_`` or a space, or short (``rr``, ``alt``)."""
        mode = _MODE_ALIASES.get(re.sub(r"[\s_-]+", "", text.lower()))
        if mode is None:
            raise ParseError(f"mode must be one of {_MODE_CHOICES} (got {_show(text)}).")
        return mode


_MODE_ALIASES = {
    "alternate": Mode.ALTERNATE,
    "alt": Mode.ALTERNATE,
    "roundrobin": Mode.ROUND_ROBIN,
    "rr": Mode.ROUND_ROBIN,
    "free": Mode.FREE,
}
_MODE_CHOICES = ", ".join(mode.value for mode in Mode)

_RATING_ALIASES = {
    **dict.fromkeys(("general", "g", "all", "everyone"), ContentRating.GENERAL),
    **dict.fromkeys(("teen", "t", "teens"), ContentRating.TEEN),
    **dict.fromkeys(("mature", "m", "adult", "adults", "18+"), ContentRating.MATURE),
}
RATING_CHOICES = ", ".join(rating.value for rating in ContentRating)


def parse_rating(text: str) -> ContentRating:
    """A content rating as typed: general, teen or mature (any case; g, t, m, adult too)."""
    rating = _RATING_ALIASES.get(text.strip().lower())
    if rating is None:
        raise ParseError(f"rating must be one of {RATING_CHOICES} (got {_show(text)}).")
    return rating


# --- commands -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command:
    """Base of every parsed command; ``name`` is its subcommand word (see :func:`usage`).

    ``read_only``: the command changes nothing, so the core answers it from a read transaction
    (no lock, no delivery id recorded). ``private``: its answer is for the asker alone, which
    an adapter must know before the answer exists (Discord's deferred "thinking…" reply).
    """

    name: ClassVar[str]
    read_only: ClassVar[bool] = False
    private: ClassVar[bool] = False

    def __post_init__(self) -> None:
        """However a command was built (the parser, a button, a thread message), its text is printable."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            cleaned = _printable_value(value)
            if cleaned != value:
                object.__setattr__(self, field.name, cleaned)

    @property
    def shows_privately(self) -> bool:
        """Whether only the asker sees the answer; commands that show or set override it."""
        return self.private

    @property
    def written(self) -> tuple[str, ...]:
        """What people wrote in it that the story keeps or the model reads (passages, directions,
        titles, memory, notes, lore): the texts the content checks judge before anything is stored."""
        return ()


def _printable_value(value: object) -> object:
    if isinstance(value, str) and not isinstance(value, enum.Enum):
        return printable(value)
    if isinstance(value, tuple):
        return tuple(_printable_value(item) for item in value)
    return value


@dataclass(frozen=True, slots=True)
class Start(Command):
    """Start a story; ``opening`` is the first passage, written by the person who starts it."""

    name: ClassVar[str] = "start"
    title: str | None = None
    genre: str | None = None
    mode: Mode | None = None
    opening: str | None = None
    thread: bool = False
    rating: ContentRating | None = None

    @property
    def written(self) -> tuple[str, ...]:
        return tuple(text for text in (self.title, self.genre, self.opening) if text)


@dataclass(frozen=True, slots=True)
class Add(Command):
    """Add a passage written by a person."""

    name: ClassVar[str] = "add"
    text: str

    @property
    def written(self) -> tuple[str, ...]:
        return (self.text,)


@dataclass(frozen=True, slots=True)
class Continue(Command):
    """Ask the bot to write next, optionally steered by ``direction``."""

    name: ClassVar[str] = "continue"
    direction: str | None = None

    @property
    def written(self) -> tuple[str, ...]:
        return (self.direction,) if self.direction else ()


@dataclass(frozen=True, slots=True)
class Retry(Command):
    name: ClassVar[str] = "retry"


@dataclass(frozen=True, slots=True)
class Undo(Command):
    name: ClassVar[str] = "undo"


@dataclass(frozen=True, slots=True)
class Pick(Command):
    """Make alternative ``number`` of the bot's latest passage (itself and the passages its
    retries replaced, oldest first) the story's passage. The ◀ ▶ buttons under it name the passage
    their message shows (``passage_id``): once that is no longer the story's, they change nothing.
    The answer is the picker's; everyone sees the passage's message show the one picked."""

    name: ClassVar[str] = "pick"
    private: ClassVar[bool] = True
    number: int
    passage_id: int | None = None


@dataclass(frozen=True, slots=True)
class VoteFor(Command):
    """A vote for candidate ``number`` of the bot's turn (``/story settings candidates``); voting
    again changes the vote. The buttons under the candidates name their turn (``job_id``): once
    that vote has closed, they change nothing. The answer is the voter's alone."""

    name: ClassVar[str] = "vote"
    private: ClassVar[bool] = True
    number: int
    job_id: int | None = None


class Vote(enum.StrEnum):
    """A rating of a bot passage; ``points`` is what the database stores (+1 or -1)."""

    UP = "up"
    DOWN = "down"

    @property
    def points(self) -> int:
        return 1 if self is Vote.UP else -1

    @property
    def emoji(self) -> str:
        return "👍" if self is Vote.UP else "👎"

    @classmethod
    def parse(cls, text: str) -> Vote:
        """Read a vote as typed: up/down, +/-, +1/-1, good/bad, the thumbs (any skin tone)."""
        vote = _VOTE_ALIASES.get(re.sub(r"[\U0001F3FB-\U0001F3FF\uFE0F]", "", text.strip().lower()))
        if vote is None:
            raise _usage_error("rate", f"Rate a passage up or down (got {_show(text)}).")
        return vote


_VOTE_ALIASES = {
    **dict.fromkeys(("up", "+", "+1", "good", "yes", "👍"), Vote.UP),
    **dict.fromkeys(("down", "-", "-1", "bad", "no", "👎"), Vote.DOWN),
}


@dataclass(frozen=True, slots=True)
class Rate(Command):
    """👍 or 👎 on a bot passage: the bot's last one, or passage ``number`` as the story numbers
    them (``/story status``). The buttons under a passage name it exactly, by ``passage_id``."""

    name: ClassVar[str] = "rate"
    private: ClassVar[bool] = True
    vote: Vote
    number: int | None = None
    passage_id: int | None = None


@dataclass(frozen=True, slots=True)
class Report(Command):
    """Flag passage ``number`` to the story's moderators, with an optional ``reason`` (anyone may)."""

    name: ClassVar[str] = "report"
    private: ClassVar[bool] = True
    number: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Branch(Command):
    """Start a new story that shares the running one up to passage ``number`` (None: the latest).
    The platform opens a place for it (a thread, a console channel) and fills ``from_story_id``
    with the story running where the command was typed; the rule creates the branch there."""

    name: ClassVar[str] = "branch"
    number: int | None = None
    from_story_id: int | None = None


@dataclass(frozen=True, slots=True)
class Hide(Command):
    """Take passage ``number`` out of the story shown, exported and sent to the model (moderators)."""

    name: ClassVar[str] = "hide"
    number: int


@dataclass(frozen=True, slots=True)
class Unhide(Command):
    """Put a hidden passage back (moderators)."""

    name: ClassVar[str] = "unhide"
    number: int


@dataclass(frozen=True, slots=True)
class Words(Command):
    """The channel's own word list: ``rule`` ban or allow ``entry``; ``clear`` takes an entry's rule
    back; with neither, show the list (moderators change it; anyone may look)."""

    name: ClassVar[str] = "words"
    rule: WordRule | None = None
    entry: str = ""
    clear: bool = False

    @property
    def shows_privately(self) -> bool:
        return self.rule is None and not self.clear  # it shows the list


@dataclass(frozen=True, slots=True)
class Join(Command):
    name: ClassVar[str] = "join"


@dataclass(frozen=True, slots=True)
class Leave(Command):
    name: ClassVar[str] = "leave"


@dataclass(frozen=True, slots=True)
class Status(Command):
    name: ClassVar[str] = "status"
    read_only: ClassVar[bool] = True
    private: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Turn(Command):
    """Whose turn it is (round-robin), and how long they have."""

    name: ClassVar[str] = "turn"
    read_only: ClassVar[bool] = True
    private: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Context(Command):
    """The prompt the bot would use next, part by part, with token counts and the budget."""

    name: ClassVar[str] = "context"
    read_only: ClassVar[bool] = True
    private: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class End(Command):
    name: ClassVar[str] = "end"


@dataclass(frozen=True, slots=True)
class ListStories(Command):
    name: ClassVar[str] = "list"
    read_only: ClassVar[bool] = True
    private: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Memory(Command):
    """Always-in-context facts: ``None`` shows the current memory, ``""`` clears it."""

    name: ClassVar[str] = "memory"
    text: str | None = None

    @property
    def shows_privately(self) -> bool:
        return self.text is None  # it shows the current text

    @property
    def written(self) -> tuple[str, ...]:
        return (self.text,) if self.text else ()


@dataclass(frozen=True, slots=True)
class Note(Command):
    """The author's note (style, tone): ``None`` shows it, ``""`` clears it."""

    name: ClassVar[str] = "note"
    text: str | None = None

    @property
    def shows_privately(self) -> bool:
        return self.text is None  # it shows the current text

    @property
    def written(self) -> tuple[str, ...]:
        return (self.text,) if self.text else ()


@dataclass(frozen=True, slots=True)
class Recap(Command):
    """The story so far (a summary of what no longer fits the bot's context): ``None`` shows it
    with a catch-up of where the story stands, ``""`` clears it, a text replaces it."""

    name: ClassVar[str] = "recap"
    text: str | None = None

    @property
    def shows_privately(self) -> bool:
        return self.text is None  # the catch-up is for the one who asked

    @property
    def written(self) -> tuple[str, ...]:
        return (self.text,) if self.text else ()


@dataclass(frozen=True, slots=True)
class LoreAdd(Command):
    """A lore entry, put in the prompt when one of its ``keys`` appears in the recent story."""

    name: ClassVar[str] = "lore"
    keys: tuple[str, ...]
    text: str

    @property
    def written(self) -> tuple[str, ...]:
        return (*self.keys, self.text)


@dataclass(frozen=True, slots=True)
class LoreList(Command):
    name: ClassVar[str] = "lore"
    read_only: ClassVar[bool] = True
    private: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class LoreRemove(Command):
    name: ClassVar[str] = "lore"
    entry_id: int


@dataclass(frozen=True, slots=True)
class Settings(Command):
    """Setting changes in the order typed, values already converted; empty shows the settings."""

    name: ClassVar[str] = "settings"
    changes: tuple[tuple[str, object], ...] = ()

    @property
    def shows_privately(self) -> bool:
        return not self.changes  # it shows the current settings

    @property
    def as_dict(self) -> dict[str, object]:
        return dict(self.changes)


@dataclass(frozen=True, slots=True)
class Export(Command):
    """Export the current story, or the finished story ``story_id``.

    ``authors`` names each passage's author; ``body`` asks for HTML to paste into AO3.
    """

    name: ClassVar[str] = "export"
    read_only: ClassVar[bool] = True
    format: str = "md"
    story_id: int | None = None
    authors: bool = True
    body: bool = False


@dataclass(frozen=True, slots=True)
class Show(Command):
    """A finished story's summary and opening."""

    name: ClassVar[str] = "show"
    read_only: ClassVar[bool] = True
    private: ClassVar[bool] = True
    story_id: int


@dataclass(frozen=True, slots=True)
class Publish(Command):
    """List a story in the web archive, where anyone can read it: story ``story_id`` of this
    channel, else the running one, else the latest finished. ``authors`` False shows its passages
    without their authors (the starter or a moderator)."""

    name: ClassVar[str] = "publish"
    story_id: int | None = None
    authors: bool = True


@dataclass(frozen=True, slots=True)
class Unpublish(Command):
    """Take a story (picked as ``Publish`` picks it) out of the web archive (the starter or a moderator)."""

    name: ClassVar[str] = "unpublish"
    story_id: int | None = None


@dataclass(frozen=True, slots=True)
class Share(Command):
    """A signed link that opens one story (picked as ``Publish`` picks it) to whoever has it,
    published or not (anyone may ask); ``revoke`` stops every link made so far (the starter or a
    moderator)."""

    name: ClassVar[str] = "share"
    private: ClassVar[bool] = True
    story_id: int | None = None
    revoke: bool = False


@dataclass(frozen=True, slots=True)
class Help(Command):
    """The full help, or the usage of one subcommand (``topic``)."""

    name: ClassVar[str] = "help"
    read_only: ClassVar[bool] = True
    private: ClassVar[bool] = True
    topic: str | None = None


# --- settings -------------------------------------------------------------------------------

_INT = re.compile(r"[+-]?[0-9]{1,9}")
# Plain decimals only: no nan, inf, underscores or non-ASCII digits.
_FLOAT = re.compile(r"[+-]?(?:[0-9]{1,9}(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """What one ``/story settings`` key accepts; drives conversion, usage and error messages.

    ``type`` is ``float``, ``int``, ``str``, or one of the word choices ``Mode`` and ``ContentRating``. For numbers ``minimum``/``maximum`` bound
    the value; for ``str`` they bound its length. Every key but ``mode`` (the story's turn order,
    not a writing setting) is built from its declaration in ``bot.story_settings``.
    """

    key: str
    type: type
    description: str
    minimum: float = 0
    maximum: float = 0

    @classmethod
    def declared(cls, setting: StorySetting) -> SettingSpec:
        """The key as declared once for the config, the grammar and Discord alike."""
        return cls(setting.key, setting.type, setting.help, setting.minimum, setting.maximum)

    @property
    def allowed(self) -> str:
        """The allowed values in words, e.g. ``a number from 0 to 2``."""
        if self.type in _CHOICES:
            return "one of " + ", ".join(choice.value for choice in self.type)  # type: ignore[attr-defined]
        if self.type is str:
            return f"a name of {self.minimum:g} to {self.maximum:g} characters"
        kind = "a whole number" if self.type is int else "a number"
        return f"{kind} from {self.minimum:g} to {self.maximum:g}"

    @property
    def placeholder(self) -> str:
        """The value as shown in the usage line, e.g. ``<0-2>``."""
        if self.type in _CHOICES:
            return "<" + "|".join(choice.value for choice in self.type) + ">"  # type: ignore[attr-defined]
        if self.type is str:
            return "<name>"
        return f"<{self.minimum:g}-{self.maximum:g}>"

    def convert(self, raw: str) -> object:
        """The typed value converted to ``type``; ParseError names the key and the range."""
        if self.type in _CHOICES:
            return _CHOICES[self.type](raw)
        if self.type is str:
            name = raw.strip()
            if self.minimum <= len(name) <= self.maximum:
                return name
        elif (_INT if self.type is int else _FLOAT).fullmatch(raw):
            number = self.type(raw)
            if self.minimum <= number <= self.maximum:
                return number
        raise ParseError(f"{self.key} must be {self.allowed} (got {_show(raw)}).")


# The word-choice setting types, each with its reader.
_CHOICES: dict[type, Callable[[str], object]] = {Mode: Mode.parse, ContentRating: parse_rating}


def _setting_keys() -> dict[str, SettingSpec]:
    """The declared settings in their order, then ``mode`` and ``rating`` (the story's own, not
    writing settings) just before ``model`` (as people know them)."""
    specs = {key: SettingSpec.declared(setting) for key, setting in STORY_SETTINGS.items()}
    model = specs.pop("model")
    return {
        **specs,
        "mode": SettingSpec("mode", Mode, "turn order of the story"),
        "rating": SettingSpec("rating", ContentRating, "who the story is for (mature: adults' channels only)"),
        "model": model,
    }


SETTING_KEYS: Mapping[str, SettingSpec] = MappingProxyType(_setting_keys())


# --- help -----------------------------------------------------------------------------------

_SETTINGS_USAGE = "/story settings " + " ".join(f"[{spec.key}:{spec.placeholder}]" for spec in SETTING_KEYS.values())

# Subcommand -> (usage line, what it does); the order is the order of the help text.
_HELP: dict[str, tuple[str, str]] = {
    "start": (
        '/story start ["title"] [genre:<genre>] [mode:alternate|round-robin|free] [rating:general|teen|mature] '
        "[thread:yes|no] [opening text]",
        "start a new story in this channel",
    ),
    "add": ("/story add <text>", "write the next passage yourself"),
    "continue": (
        "/story continue [direction]",
        "ask the bot to write next, optionally steering it",
    ),
    "retry": (
        "/story retry",
        "replace the bot's last passage with a new one (the old one is kept)",
    ),
    "pick": (
        "/story pick <alternative number>",
        "make one of the bot's alternatives for its latest passage the story's (◀ ▶ under it do the same)",
    ),
    "vote": (
        "/story vote <candidate number>",
        "choose among the bot's candidates for its next passage (with /story settings candidates:2 or more)",
    ),
    "branch": (
        "/story branch [passage number]",
        "a new story (in a new thread) sharing this one up to that passage (default: the latest)",
    ),
    "undo": ("/story undo", "withdraw the last passage (its author or a moderator)"),
    "rate": (
        "/story rate up|down [passage number]",
        "👍 or 👎 on the bot's last passage, or on the one with that number",
    ),
    "report": ("/story report <passage number> [reason]", "flag a passage to the story's moderators"),
    "hide": (
        "/story hide <passage number>",
        "take a passage out of the story, its exports and what the bot reads (moderators)",
    ),
    "unhide": ("/story unhide <passage number>", "put a hidden passage back (moderators)"),
    "words": (
        "/story words [ban|allow|clear <word or phrase>]",
        "this channel's own banned words, or words of the built-in lists allowed here (moderators change it)",
    ),
    "join": ("/story join", "take part in round-robin turns"),
    "leave": ("/story leave", "stop taking round-robin turns"),
    "turn": ("/story turn", "whose turn it is, and how long they have"),
    "memory": (
        "/story memory [text|clear]",
        "show, set or clear the facts the bot always keeps in mind",
    ),
    "note": ("/story note [text|clear]", "show, set or clear the author's note (style, tone)"),
    "recap": (
        "/story recap [text|clear]",
        "the story so far (what the bot no longer reads word for word) and where it stands; replace or clear it",
    ),
    "lore": (
        "/story lore add <key,key> <text> | /story lore list | /story lore remove <id>",
        "world facts the bot recalls when a key comes up",
    ),
    "settings": (_SETTINGS_USAGE, "show or change how the bot writes"),
    "status": ("/story status", "recent passages, whose turn it is, word count, contributors"),
    "context": (
        "/story context",
        "what the bot would read next: each part of its prompt, with token counts and the budget",
    ),
    "end": ("/story end", "finish the story"),
    "export": (
        "/story export [md|txt|html|epub|json] [story id] [authors:on|off] [body:on]",
        "download this story, or a finished one by its id (body:on = HTML to paste into AO3)",
    ),
    "list": ("/story list", "finished stories of this channel"),
    "show": ("/story show <story id>", "a finished story's summary and opening"),
    "publish": (
        "/story publish [story id] [without-authors]",
        "list this story, or a finished one by its id, in the web archive for anyone to read; without-authors: "
        "no name over each passage, as an export with authors:off (starter or moderators)",
    ),
    "unpublish": ("/story unpublish [story id]", "take a story out of the web archive (starter or moderators)"),
    "share": (
        "/story share [story id] [revoke]",
        "a link that opens one story, published or not, to whoever has it; revoke ends every link made "
        "so far (starter or moderators)",
    ),
    "help": ("/story help [command]", "this list, or how to use one command"),
}

HELP_TEXT = "\n".join(f"{line} — {what}" for line, what in _HELP.values())


def _help_topic(topic: str) -> str:
    """A subcommand name as typed (any case), or ParseError with a suggestion."""
    name = topic.strip().lower()
    if name not in _HELP:
        guess = _suggest(name, _HELP)
        hint = f" Did you mean {guess}?" if guess else ""
        raise ParseError(f"No help for {_show(topic)}.{hint} Type /story help for the list of commands.")
    return name


def usage(name: str) -> str:
    """The usage line of one subcommand (``Command.name``), for help and error messages."""
    return _HELP[_help_topic(name)][0]


def _usage_error(name: str, problem: str) -> ParseError:
    return ParseError(f"{problem} Usage: {usage(name)}")


# --- tokens of the option area --------------------------------------------------------------

# Opening quote -> closing quote: straight quotes and the curly pairs phones type.
_QUOTES = {'"': '"', "“": "”", "„": "“", "«": "»"}
_PLAIN = re.compile(r'[^\s"“„«]+')
_SPACE = re.compile(r"\s*")
# What str.splitlines() splits on: titles and quoted values must stay on one line.
_LINE_BREAK = re.compile(r"[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
_OPTION = re.compile(r"([A-Za-z][A-Za-z0-9_-]*)[:=](.*)", re.DOTALL)
_ID = re.compile(r"#?([0-9]{1,18})")
_SIGNED_ID = re.compile(r"#?[+-]?[0-9]+")  # what people type when they mean an id, valid or not


@dataclass(frozen=True, slots=True)
class _Token:
    """One word of the option area, quotes removed, with its place in the source string."""

    value: str
    start: int
    end: int
    quoted: bool  # begins with a quote, like "The Long Night"
    closed: bool  # False: a quote opened and not closed on the same line


def _match(pattern: re.Pattern[str], text: str, pos: int) -> re.Match[str]:
    """``pattern.match`` where the caller knows it matches; a miss is a bug in this module."""
    match = pattern.match(text, pos)
    if match is None:
        raise AssertionError(f"{pattern.pattern!r} does not match {text!r} at {pos}")
    return match


def _next_token(text: str, pos: int) -> _Token | None:
    """The word at or after ``pos``; quoted parts may hold spaces but not line breaks.

    Read one word at a time so that the free text after the options is never tokenized (an
    apostrophe or a stray quote in a story is not a syntax error).
    """
    start = index = _match(_SPACE, text, pos).end()
    if start == len(text):
        return None
    quoted = text[start] in _QUOTES
    parts: list[str] = []
    while index < len(text) and not text[index].isspace():
        closer = _QUOTES.get(text[index])
        if closer is None:
            plain = _match(_PLAIN, text, index)  # text[index] is neither a space nor a quote
            parts.append(plain.group())
            index = plain.end()
            continue
        close = text.find(closer, index + 1)
        line_break = _LINE_BREAK.search(text, index + 1, len(text) if close == -1 else close)
        if close == -1 or line_break:
            stop = line_break.start() if line_break else len(text)
            parts.append(text[index + 1 : stop])
            return _Token("".join(parts), start, stop, quoted, closed=False)
        parts.append(text[index + 1 : close])
        index = close + 1
    return _Token("".join(parts), start, index, quoted, closed=True)


def _tokens(text: str) -> Iterator[_Token]:
    """The words of ``text``, lazily so callers stop at the first bad one.

    A token with an unclosed quote, if any, is the last one.
    """
    pos = 0
    while (token := _next_token(text, pos)) is not None:
        yield token
        pos = token.end


def _positive_int(text: str) -> int | None:
    """``12`` or ``#12`` as an int above zero, else None."""
    match = _ID.fullmatch(text.strip())
    return int(match[1]) if match and int(match[1]) > 0 else None


# --- subcommands ----------------------------------------------------------------------------

_START_OPTIONS = ("title", "genre", "mode", "rating", "thread")
_FLAGS = {
    **dict.fromkeys(("true", "yes", "on", "1"), True),
    **dict.fromkeys(("false", "no", "off", "0"), False),
}
# A finished sentence (maybe inside quotes) is an opening, not a title.
_SENTENCE_END = re.compile(r"[.!?…][\"'”’»]*\Z")


def _start_option(token: _Token) -> tuple[str, str] | None:
    """``key:value`` with a start option key, or None when the token is story text.

    A key one typo away from an option (``gnre:``) is an error rather than text: silently
    starting a story whose first word is "gnre:fantasy" would be worse.
    """
    match = None if token.quoted else _OPTION.fullmatch(token.value)
    if match is None:
        return None
    key = match[1].lower()
    if key not in _START_OPTIONS:
        guess = difflib.get_close_matches(key, _START_OPTIONS, n=1, cutoff=0.75)
        if guess:
            typed = token.value[: match.end(1) + 1]
            raise _usage_error("start", f"Unknown option {_show(typed)}. Did you mean {guess[0]}:?")
        return None
    if not token.closed:
        raise _usage_error("start", f"Unclosed quote in {key}.")
    if not match[2].strip():
        raise _usage_error("start", f"{key}: needs a value right after the colon.")
    return key, match[2].strip()


def _set_once(options: dict[str, str], key: str, value: str) -> None:
    if key in options:
        raise _usage_error("start", f"{key} is given twice.")
    options[key] = value


def _split_title(remainder: str) -> tuple[str, list[tuple[str, str]]] | None:
    """Read a short one-line remainder as a title plus trailing options, or None.

    This makes ``/story start Dragons of Autumn genre:fantasy`` a title and a genre, while
    several lines, more words or a finished sentence stay the opening text.
    """
    if not remainder or _LINE_BREAK.search(remainder):
        return None
    # A title has at most MAX_TITLE_WORDS words, then at most one of each option: a longer
    # line is opening text, and need not be read word by word.
    most = MAX_TITLE_WORDS + len(_START_OPTIONS)
    tokens = list(itertools.islice(_tokens(remainder), most + 1))
    if len(tokens) > most:
        return None
    trailing: list[tuple[str, str]] = []
    while tokens and (option := _start_option(tokens[-1])) is not None:
        trailing.append(option)
        tokens.pop()
    trailing.reverse()
    head = remainder[: tokens[-1].end].strip() if tokens else ""
    if not head or len(head.split()) > MAX_TITLE_WORDS or _SENTENCE_END.search(head):
        return None
    return head, trailing


def _parse_start(rest: str) -> Start:
    options: dict[str, str] = {}
    pos = 0
    while (token := _next_token(rest, pos)) is not None:
        option = _start_option(token)
        if option is None and token.quoted and "title" not in options:
            if not token.closed:
                raise _usage_error("start", "Unclosed quote in title.")
            option = ("title", token.value)
        if option is None:
            break
        _set_once(options, *option)
        pos = token.end
    opening = rest[pos:].strip()
    if "title" not in options and (split := _split_title(opening)) is not None:
        title, trailing = split
        _set_once(options, "title", title)
        for option in trailing:
            _set_once(options, *option)
        opening = ""
    return Start(
        title=_title(options["title"]) if "title" in options else None,
        genre=_genre(options["genre"]) if "genre" in options else None,
        mode=Mode.parse(options["mode"]) if "mode" in options else None,
        opening=opening or None,
        thread=_flag("thread", options["thread"]) if "thread" in options else False,
        rating=parse_rating(options["rating"]) if "rating" in options else None,
    )


def _title(value: str) -> str:
    title = value.strip()
    if not title:
        raise _usage_error("start", "The title is empty.")
    return title


def _genre(value: str) -> str:
    genre = value.strip()
    if len(genre) > MAX_GENRE_LENGTH:
        raise _usage_error("start", f"genre can be at most {MAX_GENRE_LENGTH} characters (got {len(genre)}).")
    return genre


def _flag(key: str, value: str) -> bool:
    flag = _FLAGS.get(value.strip().lower())
    if flag is None:
        raise ParseError(f"{key} must be yes or no (got {_show(value)}), e.g. {key}:yes.")
    return flag


def _parse_add(rest: str) -> Add:
    text = rest.strip()
    if not text:
        raise _usage_error("add", "Write your passage after /story add.")
    return Add(text)


def _parse_continue(rest: str) -> Continue:
    return Continue(rest.strip() or None)


def _parse_memo(kind: type[Memory] | type[Note] | type[Recap], rest: str) -> Memory | Note | Recap:
    """Memory, note and recap share one form: nothing shows, ``clear`` clears, anything else sets."""
    text = rest.strip()
    if not text:
        return kind(None)
    return kind("" if text.lower() == "clear" else text)


def _parse_lore(rest: str) -> LoreAdd | LoreList | LoreRemove:
    action = _next_token(rest, 0)
    if action is None:  # bare /story lore lists
        return LoreList()
    word = action.value.lower()
    after = rest[action.end :]
    if word == "list":
        if after.strip():
            raise _usage_error("lore", "/story lore list takes no text.")
        return LoreList()
    if word == "add":
        return _parse_lore_add(after)
    if word in ("remove", "rm", "delete"):
        entry_id = _positive_int(after)
        if entry_id is None:
            raise _usage_error("lore", f"Give the number of the lore entry to remove (got {_show(after.strip())}).")
        return LoreRemove(entry_id)
    guess = _suggest(word, ("add", "list", "remove"))
    hint = f" Did you mean lore {guess}?" if guess else ""
    raise _usage_error("lore", f"Unknown lore action {_show(action.value)}.{hint}")


def _parse_lore_add(rest: str) -> LoreAdd:
    """Keys are the first word, comma-separated; a trailing comma continues into the next word.

    So ``dragon,wyrm``, ``"dark forest",woods`` and ``dragon, wyrm`` all work.
    """
    words: list[str] = []
    pos = 0
    for token in _tokens(rest):
        if not token.closed:
            raise _usage_error("lore", "Unclosed quote in the lore keys.")
        words.append(token.value)
        pos = token.end
        if not token.value.endswith(","):
            break
    keys = tuple(dict.fromkeys(key.strip() for key in "".join(words).split(",") if key.strip()))
    text = rest[pos:].strip()
    if not keys:
        raise _usage_error("lore", "Give the lore entry's keys, then its text.")
    if not text:
        raise _usage_error("lore", "Write the lore text after the keys.")
    return LoreAdd(keys, text)


def _parse_settings(rest: str) -> Settings:
    changes: dict[str, object] = {}
    for token in _tokens(rest):
        match = None if token.quoted else _OPTION.fullmatch(token.value)
        if match is None or not token.closed:
            problem = "Unclosed quote." if not token.closed else f"Got {_show(token.value)}."
            raise _usage_error("settings", f"{problem} Settings are written key:value, like temperature:0.8.")
        key = match[1].lower().replace("-", "_")
        spec = SETTING_KEYS.get(key)
        if spec is None:
            guess = _suggest(key, SETTING_KEYS)
            hint = f" Did you mean {guess}?" if guess else ""
            raise ParseError(f"Unknown setting {_show(match[1])}.{hint} Settings: {', '.join(SETTING_KEYS)}.")
        if key in changes:
            raise ParseError(f"{key} is given twice; type it once.")
        changes[key] = spec.convert(match[2])
    return Settings(tuple(changes.items()))


_FORMAT_ALIASES = {"markdown": "md", "text": "txt"}


_EXPORT_SWITCHES = ("authors", "body")


def _parse_export(rest: str) -> Export:
    export_format: str | None = None
    story_id: int | None = None
    switches: dict[str, bool] = {}
    for token in _tokens(rest):
        if not token.closed:
            raise _usage_error("export", "Unclosed quote.")
        key, colon, value = token.value.lower().partition(":")
        if colon and key in _EXPORT_SWITCHES:
            if value not in _FLAGS:
                raise _usage_error("export", f"{key}: is on or off (got {_show(token.value)}).")
            if key in switches:
                raise _usage_error("export", f"{key} is given twice.")
            switches[key] = _FLAGS[value]
            continue
        item = _export_item(token.value)
        if isinstance(item, int):
            if story_id is not None:
                raise _usage_error("export", "Give at most one story id.")
            story_id = item
        else:
            if export_format is not None:
                raise _usage_error("export", "Give at most one format.")
            export_format = item
    if switches.get("body"):
        if export_format not in (None, "html"):
            raise _usage_error("export", "body:on is HTML to paste into AO3; use it with html.")
        export_format = "html"
    return Export(export_format or "md", story_id, **switches)


def _parse_show(rest: str) -> Show:
    words = rest.split()
    story_id = _positive_int(words[0]) if len(words) == 1 else None
    if story_id is None:
        raise _usage_error("show", "Give one story id, a number like 12 (see /story list).")
    return Show(story_id)


def _story_and_switch(name: str, switch: str, rest: str) -> tuple[int | None, bool]:
    """An optional story id and an optional ``switch`` word, in either order (``publish 12
    without-authors``, ``share revoke #12``): the id, and whether the switch was given."""
    story_id: int | None = None
    switched = False
    for word in rest.split():
        if word.lower() == switch:
            if switched:
                raise _usage_error(name, f"{switch} is given twice.")
            switched = True
        elif _SIGNED_ID.fullmatch(word):
            if story_id is not None:
                raise _usage_error(name, "Give at most one story id.")
            story_id = _positive_int(word)
            if story_id is None:
                raise _usage_error(name, f"A story id is a whole number from 1 up, like 12 (got {_show(word)}).")
        else:
            hint = f" Did you mean {switch}?" if _suggest(word.lower(), (switch,)) else ""
            raise _usage_error(name, f"Unexpected {_show(word)}.{hint}")
    return story_id, switched


def _parse_publish(rest: str) -> Publish:
    story_id, without = _story_and_switch("publish", "without-authors", rest)
    return Publish(story_id, authors=not without)


def _parse_unpublish(rest: str) -> Unpublish:
    words = rest.split()
    story_id = _positive_int(words[0]) if len(words) == 1 else None
    if words and story_id is None:
        raise _usage_error("unpublish", "Give one story id, a number like 12 (see /story list), or none.")
    return Unpublish(story_id)


def _parse_share(rest: str) -> Share:
    story_id, revoke = _story_and_switch("share", "revoke", rest)
    return Share(story_id, revoke=revoke)


def _export_item(word: str) -> str | int:
    """One export word: a format (`epub`, `format:epub`) or an id (`12`, `#12`, `id:12`)."""
    key, colon, value = word.strip().lower().partition(":")
    if not colon:  # a bare word: an id if it looks like one (signed too: "-1"), else a format
        key, value = ("id" if _SIGNED_ID.fullmatch(key) else "format"), key
    if key == "id":
        story_id = _positive_int(value)
        if story_id is None:
            raise _usage_error(
                "export", f"A story id is a whole number from 1 up, like 12 (got {_show(word)}); see /story list."
            )
        return story_id
    fmt = _FORMAT_ALIASES.get(value, value)
    if key == "format" and fmt in EXPORT_FORMATS:
        return fmt
    guess = _suggest(fmt, EXPORT_FORMATS)
    hint = f" Did you mean {guess}?" if guess else ""
    raise _usage_error(
        "export",
        f"Unknown export format {_show(word)}.{hint} Formats: {', '.join(EXPORT_FORMATS)}.",
    )


def _parse_rate(rest: str) -> Rate:
    words = rest.split()
    if not words or len(words) > 2:
        raise _usage_error("rate", "Say up or down, then optionally the passage's number.")
    number = None
    if len(words) == 2:
        number = _positive_int(words[1])
        if number is None:
            raise _usage_error("rate", f"A passage number is a whole number from 1 up (got {_show(words[1])}).")
    return Rate(Vote.parse(words[0]), number)


def _passage_number(name: str, word: str) -> int:
    number = _positive_int(word)
    if number is None:
        raise _usage_error(
            name, f"A passage number is a whole number from 1 up (got {_show(word)}); see /story status."
        )
    return number


def _parse_report(rest: str) -> Report:
    number, _, reason = rest.strip().partition(" ")
    if not number:
        raise _usage_error("report", "Give the passage's number (see /story status).")
    return Report(_passage_number("report", number), reason.strip())


def _parse_number(kind: type[Hide] | type[Unhide], rest: str) -> Hide | Unhide:
    words = rest.split()
    if len(words) != 1:
        raise _usage_error(kind.name, "Give one passage number (see /story status).")
    return kind(_passage_number(kind.name, words[0]))


MAX_WORD_ENTRY = 100


def _parse_words(rest: str) -> Words:
    verb, _, entry = rest.strip().partition(" ")
    if not verb:
        return Words()
    entry = " ".join(entry.split())
    if verb.lower() not in ("ban", "allow", "clear"):
        raise _usage_error("words", f"Say ban, allow or clear (got {_show(verb)}).")
    if not entry:
        raise _usage_error("words", f"Give the word or phrase to {verb.lower()}.")
    if entry.lower().startswith("re:"):
        raise ParseError("Patterns (re:…) are set in the config's [safety] lists; here, give a word or phrase.")
    if len(entry) > MAX_WORD_ENTRY:
        raise ParseError(f"A word list entry is at most {MAX_WORD_ENTRY} characters.")
    if verb.lower() == "clear":
        return Words(entry=entry, clear=True)
    return Words(WordRule(verb.lower()), entry)


def _parse_pick(rest: str) -> Pick:
    words = rest.split()
    number = _positive_int(words[0]) if len(words) == 1 else None
    if number is None:
        raise _usage_error("pick", "Give one alternative's number, like 2 (the passage's message shows them).")
    return Pick(number)


def _parse_vote(rest: str) -> VoteFor:
    words = rest.split()
    number = _positive_int(words[0]) if len(words) == 1 else None
    if number is None:
        raise _usage_error("vote", "Give one candidate's number, like 2 (the bot numbers its candidates).")
    return VoteFor(number)


def _parse_branch(rest: str) -> Branch:
    words = rest.split()
    if not words:
        return Branch()
    number = _positive_int(words[0]) if len(words) == 1 else None
    if number is None:
        raise _usage_error("branch", "Give one passage number, like 12 (/story status numbers them), or none.")
    return Branch(number)


def _parse_help(rest: str) -> Help:
    words = rest.split()
    if len(words) > 1:
        raise _usage_error("help", "Ask about one command at a time.")
    return Help(_help_topic(words[0]) if words else None)


def _no_text(kind: type[Command]) -> Callable[[str], Command]:
    """A parser for a subcommand that takes no text: extra words are an error, not ignored."""

    def parse_no_text(rest: str) -> Command:
        if rest.strip():
            raise ParseError(f"/story {kind.name} takes no text. Type just /story {kind.name}.")
        return kind()

    return parse_no_text


_PARSERS: dict[str, Callable[[str], Command]] = {
    "start": _parse_start,
    "add": _parse_add,
    "continue": _parse_continue,
    "memory": lambda rest: _parse_memo(Memory, rest),
    "note": lambda rest: _parse_memo(Note, rest),
    "recap": lambda rest: _parse_memo(Recap, rest),
    "lore": _parse_lore,
    "settings": _parse_settings,
    "export": _parse_export,
    "show": _parse_show,
    "publish": _parse_publish,
    "unpublish": _parse_unpublish,
    "share": _parse_share,
    "rate": _parse_rate,
    "report": _parse_report,
    "hide": lambda rest: _parse_number(Hide, rest),
    "unhide": lambda rest: _parse_number(Unhide, rest),
    "words": _parse_words,
    "pick": _parse_pick,
    "vote": _parse_vote,
    "branch": _parse_branch,
    "help": _parse_help,
    **{kind.name: _no_text(kind) for kind in (Retry, Undo, Join, Leave, Turn, Status, Context, End, ListStories)},
}

_PREFIX = re.compile(r"/?story(?=\s|\Z)", re.IGNORECASE)
_WORD = re.compile(r"\S+")


def parse(text: str) -> Command:
    """Parse one ``/story`` command line; with or without the ``/story`` word itself.

    Slack hands over the text after ``/story``, the console the whole line; both work. Empty
    input is a request for help. Raises only :class:`ParseError`.
    """
    text = printable(text).strip()
    if prefix := _PREFIX.match(text):
        text = text[prefix.end() :].lstrip()
    word = _WORD.match(text)
    if word is None:
        return Help()
    name = word.group().lower()
    parser = _PARSERS.get(name)
    if parser is None:
        guess = _suggest(name, _PARSERS)
        hint = f" Did you mean /story {guess}?" if guess else ""
        raise ParseError(f"Unknown command {_show(word.group())}.{hint} Type /story help for the list.")
    return parser(text[word.end() :])
