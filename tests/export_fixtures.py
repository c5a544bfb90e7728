"""A fixed story with everything that is hard to export: markup people typed, the model's
retries and withdrawn passages, Chinese without spaces, Arabic, emoji, a very long passage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.export.model import ExportLore, ExportParticipant, ExportPassage, ExportStory
from bot.identity import ChannelRef

START = datetime(2024, 5, 1, 18, 30, 0, 123456, tzinfo=UTC)

MARKUP = (
    "# Not a heading\n"
    "- not a list\n"
    "1. not numbered\n"
    "> not a quote, with **bold**, _under_, `code`, [a link](http://example.com) and <b>tags</b>\n"
    "<script>alert('boo')</script> & &amp; stay text\n"
    "---\n"
    "    indented | pipes | here"
)
CHINESE = "灯塔守护者在黄昏时爬上楼梯。灯是冷的，海很吵。" * 6
ARABIC = "كان يا ما كان، في قديم الزمان، منارة على الساحل."
EMOJI = "The sea glowed 🌊🕯️ and the astronaut 👩‍🚀 waved."
LONG_URL = "https://example.com/" + "a" * 120
LONG = (
    " ".join(
        f"Sentence {n} of a very long passage rolls on like the tide, one wave after another." for n in range(1, 41)
    )
    + f"\n\nThe map said: {LONG_URL}"
)

GENERATION = {"model": "tiny-gpt2", "temperature": 0.8, "top_p": 0.95, "top_k": 50, "length": 120}


def _at(minutes: int) -> datetime:
    return START + timedelta(minutes=minutes)


def tricky_story(language: str = "en") -> ExportStory:
    passages = [
        ExportPassage(1, "human", "u-alice", "Alice", MARKUP, "canonical", _at(1)),
        ExportPassage(
            2,
            "bot",
            "bot",
            "storybot",
            "A first try the table rejected.",
            "superseded",
            _at(2),
            requested_by_id="u-alice",
            generation=GENERATION,
            changed_by_id="u-alice",
            changed_at=_at(3),
        ),
        ExportPassage(
            3,
            "bot",
            "bot",
            "storybot",
            CHINESE,
            "canonical",
            _at(3),
            replaces=2,
            requested_by_id="u-alice",
            direction="write in Chinese",
            generation=GENERATION,
        ),
        ExportPassage(4, "human", "u-layla", "ليلى", "Chapter 2: The *Storm*", "canonical", _at(4)),
        ExportPassage(5, "human", "u-layla", "ليلى", f"{ARABIC}\n{EMOJI}", "canonical", _at(5)),
        ExportPassage(
            6,
            "human",
            "u-carol",
            "Carol",
            "Something Carol took back.",
            "undone",
            _at(6),
            changed_by_id="u-carol",
            changed_at=_at(7),
        ),
        ExportPassage(7, "human", "u-carol", "Carol", LONG, "canonical", _at(8)),
    ]
    return ExportStory(
        title="Lanterns & <Ghosts>: *A* Tale 🌙",
        genre="mystery_#1",
        language=language,
        mode="alternate",
        status="finished",
        starter_id="u-alice",
        starter_name="Alice",
        created_at=START,
        finished_at=_at(60),
        channel=ChannelRef("console", "local", "harbour"),
        memory="The lighthouse is haunted.",
        note="Keep it eerie.",
        settings={"temperature": 0.8},
        passages=tuple(passages),
        participants=(
            ExportParticipant("u-alice", "Alice", 0, True, START),
            ExportParticipant("u-layla", "ليلى", 1, True, _at(4)),
            ExportParticipant("u-carol", "Carol", 2, False, _at(6), left_at=_at(30)),
        ),
        lore=(
            ExportLore(1, ("lighthouse", "灯塔"), "It was built in 1820.", "u-alice", False, _at(1)),
            ExportLore(2, ("ghost",), "Removed later.", "u-layla", True, _at(2)),
        ),
    )
