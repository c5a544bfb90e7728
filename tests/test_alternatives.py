"""Choosing among the bot's alternatives (``/story pick``, the ◀ ▶ buttons), on SQLite and
PostgreSQL: a retry keeps the old passage as an alternative, numbered oldest first; picking one
makes it the story's passage and keeps the other; only the bot's latest passage, while it is the
last and no bot turn is being written, can be changed; a stale button changes nothing; what
people picked is what the feedback data and the JSON export say they chose."""

from __future__ import annotations

import json

from adapters.common.ratings import CountEdits
from bot import commands as c
from bot.export import json_format
from bot.feedback.dataset import turns
from bot.feedback.judged import judged_passages
from bot.feedback.signals import Fate
from bot.identity import Actor, ChannelRef
from bot.results import Alternatives, PassageView, Result
from bot.sessions import SessionManager
from storage.models import PassageStatus
from tests.conftest import Clock
from tests.test_ratings import bot_writes
from tests.test_sessions import ALICE, BOB, CAROL, CHANNEL, passages, run, texts

FIRST, SECOND, THIRD = "The door was locked.", "The door stood open.", "There was no door at all."
WRITTEN_SINCE = "Someone has written since; only the bot's latest passage, while it is the last, can be changed."


async def retried(rules: SessionManager, *tries: str) -> list[int]:
    """Alice starts a story; the bot writes ``tries[0]``, then each retry the next: their ids."""
    await run(rules, ALICE, '/story start "Doors" She reached the end of the hall.')
    ids = [await bot_writes(rules, tries[0])]
    for text in tries[1:]:
        assert (await run(rules, BOB, "/story retry")).ok
        ids.append(await bot_writes(rules, text))
    return ids


async def pick(rules: SessionManager, number: int, *, who: Actor = CAROL, passage_id: int | None = None) -> Result:
    story_id = await rules.running_story_id(CHANNEL) if passage_id is not None else None
    return await rules.handle(CHANNEL, who, c.Pick(number, passage_id=passage_id), story_id=story_id)


async def statuses(rules: SessionManager) -> list[tuple[str, str]]:
    return [(p.text, p.status) for p in await passages(rules) if p.author_kind == "bot"]


async def test_a_retried_passage_shows_where_it_stands_and_picking_an_older_one_puts_it_back(
    rules: SessionManager,
) -> None:
    first_id, second_id = await retried(rules, FIRST, SECOND)
    latest = await rules.passage_view(second_id)
    assert latest is not None and latest.alternatives == Alternatives(2, 2, browsable=True)
    assert latest.number == 2

    picked = await run(rules, CAROL, "/story pick 1")
    assert picked.ok and picked.private and picked.picked
    assert picked.text == "You picked alternative 1 of 2: it is passage 2 now."
    assert picked.passage is not None and picked.passage.id == first_id and picked.passage.text == FIRST
    assert picked.passage.alternatives == Alternatives(1, 2, browsable=True) and picked.passage.number == 2
    # The message that carries ◀ ▶ is the rewrite's: it now shows the one picked.
    [rewrite] = [p for p in await passages(rules) if p.id == second_id]
    assert picked.message_ref == f"msg-{rewrite.job_id}"
    assert await texts(rules) == ["She reached the end of the hall.", FIRST]
    assert await statuses(rules) == [(FIRST, PassageStatus.CANONICAL), (SECOND, PassageStatus.SUPERSEDED)]
    changed = {p.text: (p.changed_by_id, p.changed_at) for p in await passages(rules)}
    assert changed[FIRST][0] == changed[SECOND][0] == CAROL.user_id and changed[FIRST][1] is not None
    assert FIRST in (await run(rules, ALICE, "/story status")).text

    same = await run(rules, ALICE, "/story pick 1")
    assert same.ok and same.text == "Alternative 1 of 2 is already passage 2." and same.passage is None
    back = await run(rules, ALICE, "/story pick 2")
    assert back.ok and back.passage is not None and back.passage.text == SECOND
    assert back.passage.alternatives == Alternatives(2, 2, browsable=True)
    assert await texts(rules) == ["She reached the end of the hall.", SECOND]


async def test_a_retry_after_a_pick_adds_an_alternative_and_the_numbers_stay_oldest_first(
    rules: SessionManager,
) -> None:
    await retried(rules, FIRST, SECOND)
    await run(rules, CAROL, "/story pick 1")
    assert (await run(rules, BOB, "/story retry")).ok  # rewrites the one picked
    third_id = await bot_writes(rules, THIRD)
    view = await rules.passage_view(third_id)
    assert view is not None and view.alternatives == Alternatives(3, 3, browsable=True)
    for number, text in ((2, SECOND), (1, FIRST), (3, THIRD)):
        result = await run(rules, ALICE, f"/story pick {number}")
        assert result.passage is not None and result.passage.text == text
        assert await texts(rules) == ["She reached the end of the hall.", text]


async def test_only_the_bots_latest_passage_while_it_is_the_last_can_be_changed(rules: SessionManager) -> None:
    assert "No story is running" in (await run(rules, CAROL, "/story pick 1")).text
    await run(rules, ALICE, '/story start "Doors" mode:free')
    nothing = await run(rules, CAROL, "/story pick 1")
    assert not nothing.ok and "has not written a passage" in nothing.text
    await run(rules, ALICE, "/story continue")
    first_id = await bot_writes(rules, FIRST)
    alone = await run(rules, CAROL, "/story pick 1")
    assert not alone.ok and "no alternatives" in alone.text and "/story retry" in alone.text
    assert (await rules.passage_view(first_id)).alternatives is None  # type: ignore[union-attr]

    await run(rules, BOB, "/story retry")
    writing = await run(rules, CAROL, "/story pick 1")
    assert not writing.ok and "wait for it" in writing.text
    await bot_writes(rules, SECOND)
    beyond = await run(rules, CAROL, "/story pick 3")
    assert not beyond.ok and beyond.text == "The bot's latest passage has 2 alternatives; pick one from 1 to 2."
    assert not (await pick(rules, 0)).ok

    await run(rules, ALICE, "/story add She stepped through.")
    since = await run(rules, CAROL, "/story pick 1")
    assert not since.ok and since.text == WRITTEN_SINCE
    assert await texts(rules) == [SECOND, "She stepped through."]
    assert await statuses(rules) == [(FIRST, PassageStatus.SUPERSEDED), (SECOND, PassageStatus.CANONICAL)]
    # Older alternatives still say where they stand, but no longer offer ◀ ▶.
    views = [await rules.passage_view(p.id) for p in await passages(rules) if p.text == SECOND]
    assert views[0] is not None and views[0].alternatives == Alternatives(2, 2, browsable=False)
    # Once what was written after it is undone, it is the last again.
    await run(rules, ALICE, "/story undo")
    assert (await run(rules, CAROL, "/story pick 1")).ok


async def test_a_button_whose_message_no_longer_shows_the_storys_passage_changes_nothing(
    rules: SessionManager,
) -> None:
    first_id, second_id = await retried(rules, FIRST, SECOND)
    assert (await pick(rules, 1, passage_id=second_id)).ok  # ◀ under the rewrite
    stale = await pick(rules, 1, passage_id=second_id)  # the same ◀, clicked again before the redraw
    assert not stale.ok and "no longer shows the story's passage" in stale.text
    assert (await pick(rules, 2, passage_id=first_id)).ok  # ▶ under the message as redrawn
    await run(rules, ALICE, "/story add She stepped through.")
    after = await pick(rules, 1, passage_id=second_id)
    assert not after.ok and after.text == WRITTEN_SINCE
    assert await statuses(rules) == [(FIRST, PassageStatus.SUPERSEDED), (SECOND, PassageStatus.CANONICAL)]
    story_id = await rules.running_story_id(CHANNEL)
    await run(rules, ALICE, "/story end")
    await run(rules, ALICE, '/story start "Next" mode:free')
    ended = await rules.handle(CHANNEL, CAROL, c.Pick(1, passage_id=second_id), story_id=story_id)
    assert not ended.ok and "ended" in ended.text


async def test_rating_the_passage_picked_redraws_the_message_that_shows_it(rules: SessionManager) -> None:
    first_id, second_id = await retried(rules, FIRST, SECOND)
    await run(rules, CAROL, "/story pick 1")
    rated = await run(rules, BOB, "/story rate up")
    assert rated.passage is not None and rated.passage.id == first_id
    [rewrite] = [p for p in await passages(rules) if p.id == second_id]
    assert rated.message_ref == f"msg-{rewrite.job_id}"
    assert rated.passage.alternatives == Alternatives(1, 2, browsable=True)


async def test_what_was_picked_is_what_the_feedback_data_and_the_export_say_was_chosen(
    rules: SessionManager,
) -> None:
    await retried(rules, FIRST, SECOND)
    await run(rules, CAROL, "/story pick 1")
    await run(rules, BOB, "/story retry")
    await bot_writes(rules, THIRD)
    await run(rules, CAROL, "/story pick 1")

    judged = await judged_passages(rules.db)
    assert {p.text: p.fate for p in judged} == {FIRST: Fate.KEPT, SECOND: Fate.RETRIED, THIRD: Fate.RETRIED}
    [turn] = turns(judged)  # one turn, though the retry after the pick branched from the first
    assert turn.chosen is not None and turn.chosen.text == FIRST
    assert sorted(p.text for p in turn.rejected) == sorted([SECOND, THIRD])

    exported = await run(rules, ALICE, "/story export json")
    assert exported.attachment is not None
    document = json.loads(exported.attachment.data)
    numbered = {p["text"]: p["number"] for p in document["passages"]}
    assert document["alternatives"] == [
        {"passages": [numbered[FIRST], numbered[SECOND], numbered[THIRD]], "chosen": numbered[FIRST]}
    ]
    statuses_shown = {p["text"]: p["status"] for p in document["passages"]}
    assert statuses_shown[FIRST] == "canonical" and statuses_shown[SECOND] == statuses_shown[THIRD] == "superseded"
    text = exported.attachment.data.decode()
    assert json_format.dumps(json_format.loads(text)) == text, "import reads it back to the same document"


async def test_a_late_showing_of_the_rewrite_shows_the_alternative_picked_since(
    rules: SessionManager, clock: Clock
) -> None:
    """The rewrite's message carries ◀ ▶: a process showing its turn late (its writer died before
    marking it shown) shows there whichever alternative is the story's now, not "withdrawn"."""
    first_id, second_id = await retried(rules, FIRST, SECOND)
    await run(rules, CAROL, "/story pick 1")
    clock.advance(rules.config.generation.job_lease_s + 1)
    owed = await rules.claim_owed_showings([CHANNEL.platform], 10)
    shown = {spec.message_ref: result.passage for spec, result in owed if result is not None}
    [first_job, rewrite_job] = [p.job_id for p in await passages(rules) if p.author_kind == "bot"]
    assert {ref: (view.id, view.alternatives) for ref, view in shown.items() if view is not None} == {
        f"msg-{first_job}": (first_id, Alternatives(1, 2, browsable=True)),
        f"msg-{rewrite_job}": (first_id, Alternatives(1, 2, browsable=True)),
    }
    assert second_id not in {view.id for view in shown.values() if view is not None}


async def test_a_count_edit_still_pending_when_another_alternative_is_picked_shows_the_one_picked(
    rules: SessionManager,
) -> None:
    """Bob rates the rewrite; before its count edit goes out, Carol picks the first try (in another
    process, say, whose redraw is already out): the late count edit draws the first try, not the rewrite."""
    first_id, _ = await retried(rules, FIRST, SECOND)
    drawn: list[tuple[str, PassageView]] = []

    async def redraw(channel: ChannelRef, message_ref: str, passage: PassageView) -> None:
        drawn.append((message_ref, passage))

    counts = CountEdits(redraw, rules.passage_view, 60)
    rated = await run(rules, BOB, "/story rate up")
    counts.show(CHANNEL, rated)
    assert (await run(rules, CAROL, "/story pick 1")).ok
    await counts.close()  # the pending edit goes out now
    [(message_ref, passage)] = drawn
    assert message_ref == rated.message_ref
    assert (passage.id, passage.text, passage.alternatives) == (first_id, FIRST, Alternatives(1, 2, browsable=True))
