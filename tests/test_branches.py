"""``/story branch`` in the rule book, on SQLite and PostgreSQL: a branch shares its parent's story
up to one passage (canonical passages with their authors and generation records, memory, note,
lore, settings, mode, rating, participants) and then goes its own way: nothing written in one
reaches the other. Status, show, the JSON export and the archive name the parent."""

from __future__ import annotations

import json
from dataclasses import replace

from bot import commands as c
from bot.export import json_format
from bot.export.archive import list_stories
from bot.export.model import ExportParent
from bot.identity import ChannelRef
from bot.results import Result
from bot.sessions import SessionManager
from storage.models import AuthorKind, Passage, PassageStatus
from tests.test_ratings import bot_writes
from tests.test_sessions import ALICE, BOB, CAROL, CHANNEL, MOD, passages, run

BRANCH = replace(CHANNEL, thread="branch-1")
OTHER_BRANCH = replace(CHANNEL, thread="branch-2")


async def branch(rules: SessionManager, text: str = "/story branch", where: ChannelRef = BRANCH) -> Result:
    """What a platform does: the story running in CHANNEL, branched into ``where``."""
    command = c.parse(text)
    assert isinstance(command, c.Branch)
    parent = await rules.branch_source(CHANNEL)
    assert parent is not None
    return await rules.handle(where, BOB, replace(command, from_story_id=parent.story_id))


async def story_texts(rules: SessionManager, story_id: int | None) -> list[str]:
    return [p.text for p in await passages(rules, PassageStatus.CANONICAL) if p.story_id == story_id]


async def grown_story(rules: SessionManager) -> None:
    """Alice's story: five numbered passages (the third hidden, a bot one retried), lore, memory."""
    await run(rules, ALICE, '/story start "Harbour" genre:mystery mode:alternate The fog came in.')
    await bot_writes(rules, "A bell rang twice.")
    await run(rules, CAROL, "/story add Someone rowed out.")  # 3 (hidden below)
    await bot_writes(rules, "The boat was empty.")  # 4, retried
    assert (await run(rules, ALICE, "/story retry")).ok
    await bot_writes(rules, "The boat drifted back.")  # 4 again
    await run(rules, ALICE, "/story add Alice lit a lamp.")  # 5
    await bot_writes(rules, "The lamp showed a face.")  # 6
    for command in (
        "/story hide 3",
        "/story memory The harbour is in Cornwall.",
        "/story note Slow and quiet.",
        "/story lore add bell The bell rings for the drowned.",
        "/story lore add lamp An oil lamp.",
        "/story lore remove 2",
        "/story settings temperature:0.5",
    ):
        assert (await run(rules, MOD if "hide" in command else ALICE, command)).ok, command


async def test_a_branch_shares_the_story_up_to_its_passage_and_the_parent_goes_on_untouched(
    rules: SessionManager,
) -> None:
    await grown_story(rules)
    before = [(p.id, p.text, p.status) for p in await passages(rules)]
    made = await branch(rules, "/story branch 4")
    assert made.ok and not made.private, made.text
    assert "branched “Harbour” (story #1) at passage 4" in made.text
    branched = await rules.running_story_id(BRANCH)
    assert branched == made.story_id != await rules.running_story_id(CHANNEL)
    # Up to passage 4: not the hidden one, nor the superseded alternative; authors and kinds kept.
    copied = [p for p in await passages(rules) if p.story_id == branched]
    assert [(p.seq, p.author_name, p.author_kind, p.status, p.text) for p in copied] == [
        (1, "Alice", AuthorKind.HUMAN, PassageStatus.CANONICAL, "The fog came in."),
        (2, "storybot", AuthorKind.BOT, PassageStatus.CANONICAL, "A bell rang twice."),
        (3, "storybot", AuthorKind.BOT, PassageStatus.CANONICAL, "The boat drifted back."),
    ]
    assert all(p.generation == {"model": "tiny"} for p in copied if p.author_kind == AuthorKind.BOT)
    assert (await run(rules, BOB, "/story memory", BRANCH)).text.endswith("The harbour is in Cornwall.")
    assert "Slow and quiet." in (await run(rules, BOB, "/story note", BRANCH)).text
    lore = (await run(rules, BOB, "/story lore list", BRANCH)).text
    assert "The bell rings for the drowned." in lore and "oil lamp" not in lore
    assert "temperature:0.5" in (await run(rules, BOB, "/story settings", BRANCH)).text
    status = (await run(rules, BOB, "/story status", BRANCH)).text
    assert "alternate mode, rated general" in status
    assert "Branched from “Harbour” (story #1) at passage 4." in status
    assert "Branched" not in (await run(rules, BOB, "/story status")).text
    # Each goes its own way: nothing written in one reaches the other.
    assert (await run(rules, CAROL, "/story add Only in the branch.", BRANCH)).ok
    assert (await run(rules, CAROL, "/story add Only in the parent.")).ok
    assert (await run(rules, ALICE, "/story memory Changed in the parent.")).ok
    assert await story_texts(rules, branched) == [
        "The fog came in.",
        "A bell rang twice.",
        "The boat drifted back.",
        "Only in the branch.",
    ]
    assert (await story_texts(rules, await rules.running_story_id(CHANNEL)))[-1] == "Only in the parent."
    assert (await run(rules, BOB, "/story memory", BRANCH)).text.endswith("The harbour is in Cornwall.")
    assert [(p.id, p.text, p.status) for p in await passages(rules) if p.id in {i for i, _, _ in before}] == before
    # Ending the branch leaves the parent running.
    assert (await run(rules, BOB, "/story end", BRANCH)).ok  # Bob branched it: he started it
    assert (await run(rules, ALICE, "/story add The parent goes on.")).ok


async def test_the_default_is_the_latest_passage_and_the_rules_refuse_what_cannot_be(rules: SessionManager) -> None:
    nothing = await rules.handle(BRANCH, BOB, c.Branch())
    assert not nothing.ok and "No story is running" in nothing.text
    await grown_story(rules)
    latest = await branch(rules)
    assert latest.ok and "at passage 6" in latest.text and "with 5 passages" in latest.text
    too_far = await branch(rules, "/story branch 7", OTHER_BRANCH)
    assert not too_far.ok and "there is no passage 7" in too_far.text
    taken = await branch(rules, "/story branch 2")  # BRANCH already holds the first branch
    assert not taken.ok and "already running here" in taken.text
    assert (await branch(rules, "/story branch 1", OTHER_BRANCH)).ok  # many branches of one parent


async def test_a_mature_story_branches_only_where_adults_are(rules: SessionManager) -> None:
    adults = replace(CHANNEL, age_restricted=True)
    await rules.handle(adults, ALICE, c.parse('/story start "Night" rating:mature mode:free The door creaked.'))
    parent = await rules.branch_source(adults)
    assert parent is not None
    refused = await rules.handle(BRANCH, BOB, c.Branch(from_story_id=parent.story_id))
    assert not refused.ok and "rated mature" in refused.text
    made = await rules.handle(replace(BRANCH, age_restricted=True), BOB, c.Branch(from_story_id=parent.story_id))
    assert made.ok and "rated mature" in (await rules.handle(BRANCH, BOB, c.Status())).text


async def test_the_json_export_show_and_the_archive_name_the_parent(rules: SessionManager) -> None:
    await grown_story(rules)
    made = await branch(rules, "/story branch 2")
    document = json.loads((await rules.handle(BRANCH, BOB, c.Export("json"))).attachment.data)  # type: ignore[union-attr]
    assert document["parent"] == {"title": "Harbour", "passage": 2}
    assert json_format.loads(json.dumps(document)).parent == ExportParent("Harbour", 2)
    parent_document = json.loads((await rules.handle(CHANNEL, BOB, c.Export("json"))).attachment.data)  # type: ignore[union-attr]
    assert "parent" not in parent_document
    assert (await run(rules, BOB, "/story end", BRANCH)).ok
    assert (await run(rules, ALICE, "/story end")).ok
    shown = (await rules.handle(BRANCH, BOB, c.Show(made.story_id))).text
    assert shown.splitlines()[1] == "Branched from “Harbour” (story #1) at passage 2."
    listing = (await run(rules, ALICE, "/story list")).text.splitlines()
    assert listing[1].startswith("#1 “Harbour”")
    assert listing[2].startswith(f"  ↳ #{made.story_id} branched at passage 2 — finished")
    # storybot list: each branch right under its parent
    rows = await list_stories(rules.db)
    assert [(row.id, row.depth) for row in rows] == [(1, 0), (made.story_id, 1)]


async def test_a_passage_added_after_the_branch_point_stays_out(rules: SessionManager) -> None:
    await grown_story(rules)
    assert (await branch(rules, "/story branch 5")).ok
    branched: list[Passage] = [p for p in await passages(rules) if p.story_id == await rules.running_story_id(BRANCH)]
    assert [p.text for p in branched][-1] == "Alice lit a lamp."
