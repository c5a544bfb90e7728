"""The content checks on people's text and the moderators' tools, in the rule book, on SQLite and
PostgreSQL: refusals change nothing; reports reach the moderators; hidden passages leave the story,
its exports and the model's prompt; the channel's word list; the audit log and `storybot audit`."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest

from bot import commands as c
from bot.generation.queue import CHECKED_OUT_NOTICE
from bot.identity import ChannelRef
from bot.safety.checker import Verdict
from bot.sessions import SessionManager
from storage.models import PassageStatus
from tests.test_export_archive import cli
from tests.test_sessions import ALICE, BOB, CHANNEL, MOD, passages, run, texts

THREAD = replace(CHANNEL, thread="t1")
OTHER = ChannelRef("test", "guild", "elsewhere")
ZERO_WIDTH = "\u200b"


# ------------------------------------------------------------------------- people's text


@pytest.mark.parametrize(
    "command",
    [
        "/story add Well, shit happens.",
        f"/story add Well, sh{ZERO_WIDTH}it happens.",
        "/story add Well, ѕhit happens.",  # a Cyrillic "ѕ"
        "/story continue make it a shitstorm",
        "/story memory The captain says fuck a lot.",
        "/story note Crude: fucking everything.",
        "/story lore add shit The word of the day.",
    ],
)
async def test_a_refused_text_changes_nothing(rules: SessionManager, command: str) -> None:
    await run(rules, ALICE, '/story start "Clean" mode:free The harbour was quiet.')
    refused = await run(rules, ALICE, command)
    assert not refused.ok and refused.private
    assert refused.text.startswith("That can't go in this story: it uses words not allowed in a story rated general")
    assert "\n" not in refused.text and "shit" not in refused.text.lower() and "fuck" not in refused.text.lower()
    assert await texts(rules) == ["The harbour was quiet."]
    status = (await run(rules, BOB, "/story status")).text
    assert "The bot is writing" not in status
    assert "fuck" not in (await run(rules, ALICE, "/story memory")).text


async def test_the_rating_decides_and_word_boundaries_hold(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "Rough" rating:teen mode:free')
    assert (await run(rules, ALICE, "/story add Well, shit happens.")).ok  # general-only words: fine in teen
    assert (await run(rules, ALICE, "/story add She drove through Scunthorpe to Sussex.")).ok
    title = await run(rules, BOB, '/story start "Shit Happens"', OTHER)  # a title is checked too
    assert not title.ok and "rated general" in title.text


# ------------------------------------------------------------------------- reports


async def test_a_report_reaches_the_moderators_and_the_log(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "Night" mode:free The lamp was lit.')
    await run(rules, BOB, "/story add A passage someone dislikes.")
    reported = await run(rules, MOD, "/story report 2 off topic")
    assert reported.ok and reported.private and "reported to the story's moderators" in reported.text
    assert reported.alert is not None and reported.alert.starter_id == ALICE.user_id
    alert = reported.alert.text
    assert (
        "Someone reported passage 2" in alert
        and "Mo" not in alert
        and "A passage someone dislikes." in alert
        and "off topic" in alert
    )
    assert "/story hide 2" in alert
    missing = await run(rules, MOD, "/story report 9")
    assert not missing.ok and "no passage 9" in missing.text and missing.alert is None
    with pytest.raises(c.ParseError, match="A passage number is a whole number"):
        c.parse("/story report two")


# ------------------------------------------------------------------------- hide and unhide


async def test_a_hidden_passage_leaves_the_story_and_keeps_its_number(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "Night" mode:free The lamp was lit.')
    await run(rules, BOB, "/story add Something nobody should read.")
    await run(rules, ALICE, "/story add The ship came in.")
    refused = await run(rules, BOB, "/story hide 2")  # neither the starter nor a moderator
    assert not refused.ok and "or a moderator can hide" in refused.text
    hidden = await run(rules, MOD, "/story hide 2")
    assert hidden.ok and "Mo hid passage 2" in hidden.text
    assert "already hidden" in (await run(rules, MOD, "/story hide 2")).text
    assert await texts(rules) == ["The lamp was lit.", "The ship came in."]
    status = (await run(rules, BOB, "/story status")).text
    assert "2. (hidden by a moderator)" in status and "3. Alice: The ship came in." in status
    assert "nobody should read" not in status
    exported = (await run(rules, BOB, "/story export json")).attachment
    assert exported is not None
    document = json.loads(exported.data)
    assert [p["text"] for p in document["passages"]] == ["The lamp was lit.", "The ship came in."]
    assert [(e["action"], e["actor"]["name"]) for e in document["audit"]] == [("hide", "Mo")]
    markdown = (await run(rules, BOB, "/story export md")).attachment
    assert markdown is not None and b"nobody should read" not in markdown.data
    # What the bot reads next leaves it out too.
    await run(rules, ALICE, "/story continue")
    [job] = await rules.claim_jobs(1)
    assert job.story.passages == ("The lamp was lit.", "The ship came in.")
    [row] = await passages(rules, PassageStatus.HIDDEN)
    assert row.changed_by_id == MOD.user_id and row.changed_at is not None
    unhidden = await run(rules, ALICE, "/story unhide 2")  # the starter may
    assert unhidden.ok and "put passage 2 back" in unhidden.text
    assert "is not hidden" in (await run(rules, ALICE, "/story unhide 2")).text
    assert len(await texts(rules)) == 3


async def test_a_hidden_passage_cannot_be_rated(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "Night" mode:free The lamp was lit.')
    await run(rules, MOD, "/story hide 1")
    assert "hid that passage" in (await run(rules, BOB, "/story rate up 1")).text


# ------------------------------------------------------------------------- the channel's words


async def test_the_channel_word_list(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "Dragons" mode:free')
    assert (await run(rules, ALICE, "/story add The dragon slept.")).ok
    refused = await run(rules, ALICE, "/story words ban dragon")  # the starter is no channel moderator
    assert not refused.ok and "channel's moderators" in refused.text
    banned = await run(rules, MOD, "/story words ban dragon")
    assert banned.ok and banned.private and "dragon" not in banned.text
    assert "already banned" in (await run(rules, MOD, "/story words ban Dragon")).text
    again = await run(rules, BOB, "/story add The dragon woke.")
    assert not again.ok and "this channel's moderators banned" in again.text
    assert (await run(rules, BOB, '/story start "In a thread" mode:free The dragon woke.', THREAD)).ok is False
    assert (await run(rules, BOB, '/story start "Elsewhere" mode:free The dragon woke.', OTHER)).ok
    assert (await run(rules, MOD, "/story words allow shit")).ok  # a shipped word, allowed in this channel
    assert (await run(rules, BOB, "/story add Oh shit, said the knight.")).ok
    listed = await run(rules, BOB, "/story words")
    assert listed.private and "Banned here: dragon." in listed.text and "Allowed here: shit." in listed.text
    assert (await run(rules, MOD, "/story words clear dragon")).ok
    assert (await run(rules, BOB, "/story add The dragon woke.")).ok
    assert "not on this channel's list" in (await run(rules, MOD, "/story words clear dragon")).text
    with pytest.raises(c.ParseError, match="Patterns"):
        c.parse("/story words ban re:drag.*")
    assert "no letter or digit" in (await run(rules, MOD, "/story words ban ***")).text


# ------------------------------------------------------------------------- ratings, ends, the log


async def test_rating_changes_and_ends_are_logged(
    rules: SessionManager, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    await run(rules, ALICE, '/story start "Night" mode:free The lamp was lit.')
    assert "or a moderator can change" in (await run(rules, BOB, "/story settings rating:teen")).text
    changed = await run(rules, ALICE, "/story settings rating:teen")
    assert changed.ok and "rating:teen" in changed.text
    assert "rated teen" in (await run(rules, BOB, "/story status")).text
    assert "needs a channel for adults" in (await run(rules, ALICE, "/story settings rating:mature")).text
    await run(rules, BOB, "/story add Shit, the lamp went out.")  # teen now: allowed
    await run(rules, BOB, "/story report 2 too rude")
    await run(rules, MOD, "/story hide 2")
    await run(rules, MOD, "/story end")
    monkeypatch.chdir(tmp_path)
    code, out, err = await asyncio.to_thread(cli, rules.config, capsys, monkeypatch, "audit")
    assert code == 0, err
    lines = [line for line in out.splitlines() if not line.startswith("    ")]
    assert [line.split("  ")[2] for line in lines] == [
        "rating by Alice: general → teen",
        "report by Bob: too rude",
        "hide by Mo",
        "end by Mo",
    ]
    assert "Shit, the lamp went out." in out  # the shell shows the passage a line names
    code, out, _ = await asyncio.to_thread(
        cli, rules.config, capsys, monkeypatch, "audit", "--json", "--channel", OTHER.key
    )
    assert code == 0 and json.loads(out) == []


# ------------------------------------------------------------------------- withheld bot passages


async def test_a_withheld_bot_passage_is_kept_only_for_the_moderators(
    rules: SessionManager, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    await run(rules, ALICE, '/story start "Night" The lamp was lit.')
    [job] = await rules.claim_jobs(1)
    verdict = Verdict(False, "words", "it uses words not allowed in a story rated general", ("shit",))
    notice = CHECKED_OUT_NOTICE.format(rating="general")
    result = await rules.withhold_job(job.job_id, "The lamp went out. Oh shit.", {"seconds": 1.0}, verdict, notice)
    assert result is not None and not result.ok and result.text == notice
    assert await texts(rules) == ["The lamp was lit."]
    [row] = await passages(rules, PassageStatus.WITHHELD)
    assert row.text == "The lamp went out. Oh shit." and row.generation is not None
    assert row.generation["check"] == {"checker": "words", "reason": verdict.reason, "found": ["shit"]}
    exported = (await run(rules, BOB, "/story export json")).attachment
    assert exported is not None
    document = json.loads(exported.data)
    assert "Oh shit" not in exported.data.decode()
    assert [e["action"] for e in document["audit"]] == ["withheld"]
    assert "(hidden" not in (await run(rules, BOB, "/story status")).text
    assert "there is no passage 2" in (await run(rules, BOB, "/story rate up 2")).text  # not numbered
    # The feedback commands count it as turned down (and never train on it).
    code, out, err = await asyncio.to_thread(cli, rules.config, capsys, monkeypatch, "stats", "--json")
    assert code == 0, err
    assert [p["fate"] for p in json.loads(out)["passages"]] == ["withheld"]


async def test_a_stricter_rating_or_a_new_ban_withdraws_the_turn_in_progress(rules: SessionManager) -> None:
    started = await run(rules, ALICE, '/story start "Night" rating:teen The lamp was lit.')
    assert started.job_id is not None
    stricter = await run(rules, ALICE, "/story settings rating:general")
    assert stricter.cancelled_job_ids == (started.job_id,)  # it was to be checked as teen
    again = await run(rules, ALICE, "/story continue")
    assert (await run(rules, ALICE, "/story settings rating:teen")).cancelled_job_ids == ()  # looser: it stands
    banned = await run(rules, MOD, "/story words ban lantern")
    assert banned.cancelled_job_ids == (again.job_id,)


async def test_the_export_keeps_the_word_list_but_not_who_reported(
    rules: SessionManager, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    await run(rules, ALICE, '/story start "Night" mode:free The lamp was lit.')
    await run(rules, MOD, "/story words ban lantern")
    await run(rules, BOB, "/story report 1 boring")
    await run(rules, MOD, "/story words ban torch", OTHER)  # another channel's list
    exported = (await run(rules, BOB, "/story export json")).attachment
    assert exported is not None
    audit = json.loads(exported.data)["audit"]
    assert [(e["action"], e["detail"]) for e in audit] == [("ban-word", "lantern")]
    (tmp_path / "story.json").write_bytes(exported.data)  # storybot import keeps it
    monkeypatch.chdir(tmp_path)
    code, out, err = await asyncio.to_thread(cli, rules.config, capsys, monkeypatch, "import", "story.json")
    assert code == 0, err
    imported = (await run(rules, BOB, f"/story export json {out.split('#', 1)[1].split()[0]}")).attachment
    assert imported is not None and json.loads(imported.data)["audit"] == audit


async def test_reports_are_limited_per_person(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "Night" mode:free The lamp was lit.')
    for _ in range(3):
        assert (await run(rules, BOB, "/story report 1")).ok
    refused = await run(rules, BOB, "/story report 1")
    assert not refused.ok and "At most 3 reports a minute" in refused.text and refused.alert is None
    assert (await run(rules, MOD, "/story report 1")).ok  # someone else still may


async def test_an_alternative_must_pass_the_checks_of_the_story_as_it_is_now(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "Night" rating:teen The lamp was lit.')
    [first] = await rules.claim_jobs(1)
    await rules.finish_job(first.job_id, "Shit, the lamp went out.", {})
    await run(rules, ALICE, "/story retry")
    [second] = await rules.claim_jobs(1)
    await rules.finish_job(second.job_id, "The lamp burned on.", {})
    await run(rules, ALICE, "/story settings rating:general")
    refused = await run(rules, BOB, "/story pick 1")
    assert not refused.ok and "does not pass this story's content checks now (rated general)" in refused.text
    assert await texts(rules) == ["The lamp was lit.", "The lamp burned on."]
