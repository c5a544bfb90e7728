"""What the chat adapters share (``adapters/common``): where long text is cut, the stock lines,
the live showing of a turn, and a story started in a thread. No platform and no network: the
platform halves are fakes that record what they were asked to show."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

import pytest

from adapters.common.ratings import CountEdits
from adapters.common.split import split_text
from adapters.common.streaming import TurnStreamer
from adapters.common.threads import StoryThread
from adapters.common.wording import WITHDRAWN, WRITING, WRITING_PLACEHOLDER, bot_footer, problem
from adapters.discord_bot.render import WRITING as DISCORD_WRITING
from adapters.discord_bot.render import bot_footer as discord_footer
from adapters.discord_bot.render import split_message
from adapters.slack_app.render import escape
from adapters.slack_app.render import split_text as slack_split
from bot import commands as c
from bot.context import StorySnapshot
from bot.identity import Actor, ChannelRef
from bot.jobs import JobSpec
from bot.results import PassageView, Result, Votes
from tests.waiting import until

# ------------------------------------------------------------------ where long text is cut

CHINESE = "守塔人爬上了楼梯。灯是冷的！海浪很大吗？"  # three sentences, 20 characters, no spaces
JAPANESE = "「走吧。」彼女は言った。灯台は暗かった！"


def test_chinese_sentence_ends_are_cut_points() -> None:
    pieces = split_text(CHINESE * 3, 25)
    assert pieces == [CHINESE, CHINESE, CHINESE]
    # The cut falls after the last full stop or mark that fits, not at the hard limit.
    assert split_text("守塔人爬上了楼梯。灯是冷的！海浪很大很大很大", 16) == [
        "守塔人爬上了楼梯。灯是冷的！",
        "海浪很大很大很大",
    ]
    assert split_text("海浪很大吗？灯是冷的吧", 8) == ["海浪很大吗？", "灯是冷的吧"]


def test_japanese_closing_brackets_stay_with_their_sentence() -> None:
    assert split_text(JAPANESE, 12) == ["「走吧。」彼女は言った。", "灯台は暗かった！"]
    assert split_text(JAPANESE, 8) == ["「走吧。」", "彼女は言った。", "灯台は暗かった！"]


def test_cjk_without_any_sentence_end_is_cut_at_the_limit() -> None:
    assert split_text("灯" * 25, 10) == ["灯" * 10, "灯" * 10, "灯" * 5]


def test_a_sentence_end_is_preferred_to_a_later_space() -> None:
    text = "The lamp was cold. The sea was loud and the rocks black"
    assert split_text(text, 40) == ["The lamp was cold.", "The sea was loud and the rocks black"]


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ('He said, "Run." And she ran down the long wall', 'He said, "Run."'),
        ("She whispered, “Stay.” Then the lamp went out", "She whispered, “Stay.”"),
        ("*He left.* The door stayed open all the night", "*He left.*"),
        ("_So it was._ The door stayed open all the night", "_So it was._"),
        ("The first line\nThe second line goes on and on and on", "The first line"),
    ],
)
def test_closing_marks_markup_and_line_breaks_end_a_piece(text: str, first: str) -> None:
    assert split_text(text, 30)[0] == first


def test_without_a_sentence_end_a_space_then_the_limit_decides() -> None:
    assert split_text("aaa bbb ccc ddd eee", 10) == ["aaa bbb", "ccc ddd", "eee"]
    assert split_text("a" * 25, 10) == ["a" * 10, "a" * 10, "a" * 5]


def test_no_piece_is_a_stub_before_a_quarter_of_the_limit() -> None:
    text = "Go. " + "word " * 20
    assert split_text(text, 40)[0] != "Go."


@pytest.mark.parametrize("text", ["", "A short passage.", "海浪很大。"])
def test_text_that_fits_is_one_piece_as_it_is(text: str) -> None:
    assert split_text(text, 40) == [text]


def test_a_full_piece_never_moves_while_the_text_streams_in() -> None:
    text = (CHINESE + "The keeper climbed. ") * 10
    final = split_text(text, 50)
    for end in range(51, len(text) + 1):
        pieces = split_text(text[:end], 50)
        assert pieces[:-1] == final[: len(pieces) - 1], end


def test_every_piece_fits_and_nothing_but_white_space_is_lost() -> None:
    text = " ".join([CHINESE, JAPANESE, "The lamp was cold.", "Wave after wave broke!"] * 30)
    pieces = split_text(text, 70)
    assert all(len(piece) <= 70 for piece in pieces)
    assert "".join("".join(pieces).split()) == "".join(text.split())


def test_both_platforms_cut_at_cjk_sentence_ends() -> None:
    passage = CHINESE * 120  # 2400 characters: more than one Discord message
    messages = split_message(passage)
    assert len(messages) == 2 and all(message.endswith("？") for message in messages)
    sections = slack_split("<灯>" + CHINESE * 200, 3000)  # Slack counts the escaped length
    assert len(sections) == 2 and all(len(escape(s)) <= 3000 for s in sections)
    assert sections[0][-1] in "。！？"


# ------------------------------------------------------------------ the stock lines


def job(kind: str = "continue", *, platform: str = "test", job_id: int = 1, ref: str | None = None) -> JobSpec:
    return JobSpec(
        job_id=job_id,
        story_id=7,
        channel=ChannelRef(platform, "W1", "C1"),
        kind=kind,
        requested_by="*Ann*",
        story=StorySnapshot(title="Tides", genre=None, memory="", note="", passages=()),
        settings={},
        speaker_names=(),
        message_ref=ref,
    )


def test_the_credit_line_names_who_asked_and_how_and_the_counts_once_rated() -> None:
    passage = PassageView(
        id=9, story_id=7, seq=4, number=4, author_kind="bot", author_name="storybot", text="…", asked_by="*Ann*"
    )
    assert bot_footer(passage) == "passage 4 · asked by *Ann*"
    assert bot_footer(replace(passage, rewrite=True)) == "passage 4 · rewritten at *Ann*'s request"
    assert bot_footer(passage, "Bob") == "passage 4 · asked by Bob"
    assert bot_footer(replace(passage, votes=Votes(2, 1))) == "passage 4 · asked by *Ann* · 👍 2 · 👎 1"
    assert bot_footer(replace(passage, asked_by=None, votes=Votes(0, 1))) == "passage 4 · 👍 0 · 👎 1"
    assert discord_footer(passage) == "passage 4 · asked by \\*Ann\\*"  # safe from markdown


def test_the_stock_lines_read_the_same_everywhere() -> None:
    assert WRITING == "storybot is writing…" and WRITING_PLACEHOLDER == "✍️ storybot is writing…"
    assert WITHDRAWN == "storybot's turn was withdrawn."
    assert DISCORD_WRITING == "-# ✍️ storybot is writing…"
    assert problem("No story is running.") == "⚠️ No story is running."


# ------------------------------------------------------------------ a turn, live


class RecordingTurn:
    """A platform's messages for one turn: what it was asked to show, in order."""

    def __init__(self, log: list[tuple[int, str]], job: JobSpec, begin_s: float) -> None:
        self.log, self.job, self.begin_s = log, job, begin_s

    async def begin(self) -> str | None:
        self.log.append((self.job.job_id, "begin"))
        await asyncio.sleep(self.begin_s)
        self.log.append((self.job.job_id, "begun"))
        return f"m{self.job.job_id}"

    async def progress(self, text: str) -> str | None:
        self.log.append((self.job.job_id, f"text {text}"))
        return f"m{self.job.job_id}"

    async def end(self, result: Result | None) -> None:
        self.log.append((self.job.job_id, "end" if result is not None else "withdrawn"))


class RecordingStreamer(TurnStreamer):
    def __init__(self, begin_s: float = 0.0) -> None:
        super().__init__("test")
        self.log: list[tuple[int, str]] = []
        self.begin_s = begin_s

    def live_turn(self, job: JobSpec) -> RecordingTurn:
        return RecordingTurn(self.log, job, self.begin_s)


async def test_writing_is_shown_once_and_before_the_first_text() -> None:
    streamer = RecordingStreamer(begin_s=0.05)
    refs = await asyncio.gather(streamer.turn_progress(job(), "The lamp"), streamer.turn_started(job()))
    assert list(refs) == ["m1", "m1"]
    await streamer.turn_progress(job(), "The lamp was cold.")
    await streamer.turn_finished(job(), Result("stored"))
    assert streamer.log == [
        (1, "begin"),
        (1, "begun"),
        (1, "text The lamp"),
        (1, "text The lamp was cold."),
        (1, "end"),
    ]


async def test_a_cancelled_start_still_shows_writing_for_the_text_that_follows() -> None:
    streamer = RecordingStreamer(begin_s=0.05)
    started = asyncio.ensure_future(streamer.turn_started(job()))
    await asyncio.sleep(0.01)
    started.cancel()
    assert await streamer.turn_progress(job(), "The lamp") == "m1"
    assert streamer.log == [(1, "begin"), (1, "begun"), (1, "text The lamp")]


async def test_a_turn_shown_late_shows_only_its_end() -> None:
    streamer = RecordingStreamer()
    await streamer.turn_finished(job(job_id=2, ref="m-dead"), None)
    assert streamer.log == [(2, "withdrawn")]


async def test_other_platforms_turns_are_not_shown() -> None:
    streamer = RecordingStreamer()
    other = job(platform="elsewhere")
    assert await streamer.turn_started(other) is None
    assert await streamer.turn_progress(other, "text") is None
    await streamer.turn_finished(other, Result("stored"))
    assert streamer.log == []


async def test_a_finished_turn_is_forgotten() -> None:
    streamer = RecordingStreamer()
    await streamer.turn_started(job())
    await streamer.turn_finished(job(), Result("stored"))
    await streamer.turn_finished(replace(job(), message_ref="m1"), Result("stored"))  # shown again later
    assert streamer.log == [(1, "begin"), (1, "begun"), (1, "end"), (1, "end")]


# ------------------------------------------------------------------ a story in a thread


class Sessions:
    """Stands for ``SessionManager.handle``: answers what it is told to and records the call."""

    def __init__(self, result: Result) -> None:
        self.result = result
        self.calls: list[tuple[ChannelRef, c.Command, str]] = []

    async def handle(self, channel: ChannelRef, actor: Actor, command: c.Command, *, event_id: str) -> Result:
        self.calls.append((channel, command, event_id))
        return self.result


class RecordingThread(StoryThread):
    def __init__(self) -> None:
        super().__init__(ChannelRef("test", "W1", "C1", "T1"))
        self.did: list[str] = []

    async def show(self, result: Result) -> None:
        self.did.append(f"show {result.text}")

    async def take_back(self, result: Result) -> None:
        self.did.append(f"take back {result.text}")


@pytest.mark.parametrize(
    ("result", "kept", "did"),
    [
        (Result("📖 Ann started “Tides”."), True, ["show 📖 Ann started “Tides”."]),
        (Result.error("The title is too long."), False, ["take back The title is too long."]),
        (Result("Already done.", private=True, duplicate=True), False, ["take back Already done."]),
    ],
    ids=["started", "refused", "applied before"],
)
async def test_a_thread_shows_the_story_or_is_taken_back(result: Result, kept: bool, did: list[str]) -> None:
    thread, sessions = RecordingThread(), Sessions(result)
    command = c.Start(title="Tides", thread=True)
    answer = await thread.start(sessions, Actor("U1", "Ann"), command, "event-1")  # type: ignore[arg-type]  # a stand-in for SessionManager
    assert answer is result
    assert sessions.calls == [(thread.ref, command, "event-1")]
    assert await thread.finish(result) is kept
    assert thread.did == did


# ------------------------------------------------------------------ a rated passage's counts

INTERVAL_S = 0.2
RATED = PassageView(id=9, story_id=7, seq=2, number=2, author_kind="bot", author_name="storybot", text="…")
HERE = ChannelRef("test", "W1", "C1")


def rating(up: int, down: int = 0, ref: str | None = "m1", passage: PassageView = RATED) -> Result:
    """A rating's answer as the core gives it: private, with the passage's new counts and its message."""
    return Result("You rated it.", private=True, passage=replace(passage, votes=Votes(up, down)), message_ref=ref)


class Redraws:
    """A platform's redraw: records (when, message, counts) and fails when told to."""

    def __init__(self) -> None:
        self.done: list[tuple[float, str, str]] = []
        self.failing: list[Exception] = []

    async def __call__(self, channel: ChannelRef, message_ref: str, passage: PassageView) -> None:
        await asyncio.sleep(0.01)  # a platform call
        if self.failing:
            raise self.failing.pop(0)
        self.done.append((time.monotonic(), message_ref, str(passage.votes)))


async def unread(passage_id: int) -> PassageView | None:
    """A database read that finds nothing: the edit shows the counts the answer carried."""
    return None


async def test_the_edit_shows_the_counts_stored_when_it_goes_out_whatever_order_the_answers_came_in() -> None:
    redraws = Redraws()
    stored = replace(RATED, votes=Votes(2, 0))

    async def fresh(passage_id: int) -> PassageView | None:
        return stored if passage_id == RATED.id else None

    counts = CountEdits(redraws, fresh, 0.01)
    counts.show(HERE, rating(2))  # the second vote's answer came back first
    counts.show(HERE, rating(1))
    await until(lambda: len(redraws.done) == 1)
    assert redraws.done[0][1:] == ("m1", "👍 2 · 👎 0")


async def test_a_burst_of_ratings_is_one_edit_with_the_final_counts_an_interval_later() -> None:
    redraws = Redraws()
    counts = CountEdits(redraws, unread, INTERVAL_S)
    rated_at = time.monotonic()
    for up in (1, 2, 3):
        counts.show(HERE, rating(up))
    counts.show(HERE, rating(1, ref="m2"))  # another passage's message: its own pace
    await until(lambda: len(redraws.done) == 2)
    assert sorted(ref_counts for _, *ref_counts in redraws.done) == [["m1", "👍 3 · 👎 0"], ["m2", "👍 1 · 👎 0"]]
    assert min(at for at, _, _ in redraws.done) - rated_at >= INTERVAL_S * 0.9
    counts.show(HERE, rating(3, 1))  # right after the edit: the next one waits its interval
    counts.show(HERE, rating(2, 2))
    await until(lambda: len(redraws.done) == 3)
    assert redraws.done[-1][1:] == ("m1", "👍 2 · 👎 2")
    first_m1 = next(at for at, ref, _ in redraws.done if ref == "m1")
    assert redraws.done[-1][0] - first_m1 >= INTERVAL_S * 0.9


async def test_only_a_rating_that_changed_the_counts_is_shown() -> None:
    redraws = Redraws()
    counts = CountEdits(redraws, unread, 0)
    for result in (Result("You already rated it.", private=True), rating(1, ref=None), Result.error("withdrawn")):
        counts.show(HERE, result)
    await asyncio.sleep(0.1)
    assert redraws.done == []


async def test_a_failed_edit_is_logged_and_dropped_and_the_next_one_goes_out(caplog: pytest.LogCaptureFixture) -> None:
    redraws = Redraws()
    redraws.failing = [ConnectionError("message deleted"), KeyError("a bug")]
    counts = CountEdits(redraws, unread, 0.01, failures=(ConnectionError,))
    for up in (1, 2, 3):
        counts.show(HERE, rating(up))
        await asyncio.sleep(0.1)
    assert [counts for _, _, counts in redraws.done] == ["👍 3 · 👎 0"]
    problems = [(r.levelno, r.exc_info is not None) for r in caplog.records if r.name == "adapters.common.ratings"]
    assert problems == [(logging.WARNING, False), (logging.ERROR, True)]  # the bug with its traceback


async def test_closing_makes_the_pending_edits_at_once_and_takes_no_more() -> None:
    redraws = Redraws()
    counts = CountEdits(redraws, unread, 60)
    counts.show(HERE, rating(1))
    await asyncio.wait_for(counts.close(), 1)
    assert [counts for _, _, counts in redraws.done] == ["👍 1 · 👎 0"]
    counts.show(HERE, rating(2))
    await asyncio.sleep(0.05)
    assert len(redraws.done) == 1
