"""The channel votes on the bot's candidates (``/story settings candidates``, ``/story vote``),
through the rule book on SQLite and PostgreSQL, and through the real queue with the tiny model:
the vote closes when every participant has voted or at its deadline; the most votes win, ties go
to the earliest; nobody votes twice; the others stay as alternatives; people's passages wait."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot import commands as c
from bot.app import App
from bot.feedback.judged import judged_passages
from bot.feedback.signals import Fate
from bot.results import Alternatives, Election, Result
from bot.safety.checker import Verdict
from bot.sessions import SessionManager
from storage.models import GenerationJob, JobStatus, ModerationEntry, PassageStatus
from tests.conftest import Clock, TurnRecorder
from tests.test_sessions import ALICE, BOB, CAROL, CHANNEL, MOD, passages, run, texts
from tests.waiting import until

OPENING = "The ferry left at dawn."
CANDIDATES = ("The fog closed in.", "A gull cried twice.", "Someone was missing.")


async def voting(rules: SessionManager, count: int = 3) -> Result:
    """Alice starts a story (free mode) with ``count`` candidates per turn and Bob writes a
    passage, so both take part; then Bob asks the bot, whose candidates go to the vote."""
    await run(rules, ALICE, f'/story start "Ferry" mode:free {OPENING}')
    assert (await run(rules, ALICE, f"/story settings candidates:{count}")).ok
    assert (await run(rules, BOB, "/story add The engine coughed.")).ok
    assert (await run(rules, BOB, "/story continue")).job_id is not None
    [job] = await rules.claim_jobs(1)
    assert job.candidates == count
    await rules.record_turn_message(job.job_id, f"msg-{job.job_id}")
    opened = await rules.open_vote(job.job_id, CANDIDATES[:count], {"model": "tiny"})
    assert opened is not None and opened.ballot is not None
    return opened


async def vote(rules: SessionManager, who, number: int, *, job_id: int | None = None) -> Result:
    story_id = await rules.running_story_id(CHANNEL) if job_id is not None else None
    return await rules.handle(CHANNEL, who, c.VoteFor(number, job_id=job_id), story_id=story_id)


async def candidate_statuses(rules: SessionManager) -> list[str]:
    return [p.status for p in await passages(rules) if p.text in CANDIDATES]


async def test_the_candidates_wait_for_the_vote_and_people_wait_with_them(rules: SessionManager) -> None:
    opened = await voting(rules)
    ballot = opened.ballot
    assert ballot is not None
    assert [(x.number, x.text) for x in ballot.candidates] == [
        (1, CANDIDATES[0]),
        (2, CANDIDATES[1]),
        (3, CANDIDATES[2]),
    ]
    assert ballot.electorate == 2 and ballot.closes_at > rules.clock()
    # None of them is the story's yet: not numbered, not in the status, not read by the model.
    assert await texts(rules) == [OPENING, "The engine coughed."]
    assert await candidate_statuses(rules) == [PassageStatus.CANDIDATE] * 3
    status = await run(rules, CAROL, "/story status")
    assert not any(text in status.text for text in CANDIDATES)
    assert "The channel is voting on the bot's 3 candidates: 0 voted so far; it closes in 3 min at the latest." in (
        status.text
    )
    for command in ("/story add Me too.", "/story continue", "/story retry"):
        refused = await run(rules, CAROL, command)
        assert not refused.ok and "voting on the bot's candidates" in refused.text, command
    assert await texts(rules) == [OPENING, "The engine coughed."]


async def test_the_vote_closes_once_everyone_voted_ties_go_to_the_earliest_and_nobody_votes_twice(
    rules: SessionManager,
) -> None:
    told: list[str] = []
    rules.on_showings_owed(lambda: told.append("owed"))
    opened = await voting(rules)
    assert opened.ballot is not None
    first = await vote(rules, ALICE, 3)
    assert first.ok and first.private and first.text.startswith("You voted for candidate 3.")
    assert "1 of 2 participants have not voted yet" in first.text
    again = await vote(rules, ALICE, 3)
    assert again.ok and "already voted for candidate 3" in again.text
    changed = await vote(rules, ALICE, 2)
    assert changed.ok and changed.text.startswith("You changed your vote from candidate 3 to 2.")
    assert await candidate_statuses(rules) == [PassageStatus.CANDIDATE] * 3 and not told
    # Carol takes no part: her vote counts, but the vote waits for Bob.
    assert (await vote(rules, CAROL, 3)).ok
    last = await vote(rules, BOB, 3)
    assert last.ok and last.turn_ended == opened.ballot.job_id
    assert "Everyone has voted: candidate 3 won, chosen by 2 of 3 votes." in last.text
    assert told == ["owed"]
    assert await candidate_statuses(rules) == [PassageStatus.SUPERSEDED, PassageStatus.SUPERSEDED, "canonical"]
    assert await texts(rules) == [OPENING, "The engine coughed.", CANDIDATES[2]]
    # The feedback data read the vote: the others were outvoted (turned down), not retried away.
    fates = {p.text: p.fate for p in await judged_passages(rules.db)}
    assert fates == {CANDIDATES[0]: Fate.OUTVOTED, CANDIDATES[1]: Fate.OUTVOTED, CANDIDATES[2]: Fate.KEPT}
    closed = await vote(rules, BOB, 1, job_id=opened.ballot.job_id)
    assert not closed.ok and "That vote has closed" in closed.text
    assert await texts(rules) == [OPENING, "The engine coughed.", CANDIDATES[2]]


async def test_a_tie_goes_to_the_earliest_candidate(rules: SessionManager) -> None:
    await voting(rules)
    await vote(rules, ALICE, 3)
    ended = await vote(rules, BOB, 2)
    assert "candidate 2 won, chosen by 1 of 2 votes" in ended.text
    assert await texts(rules) == [OPENING, "The engine coughed.", CANDIDATES[1]]


async def test_the_winner_is_shown_in_the_turns_messages_with_the_others_as_its_alternatives(
    rules: SessionManager,
) -> None:
    opened = await voting(rules)
    assert opened.ballot is not None
    await vote(rules, ALICE, 2)
    await vote(rules, BOB, 2)
    [(spec, shown)] = await rules.claim_owed_showings(["test"], 10)
    assert spec.job_id == opened.ballot.job_id and spec.message_ref == f"msg-{spec.job_id}"
    assert shown is not None and shown.passage is not None
    assert shown.passage.text == CANDIDATES[1] and shown.passage.number == 3
    assert shown.passage.elected == Election(2, 2)
    assert shown.passage.alternatives == Alternatives(2, 3, browsable=True)
    # The others are alternatives like a retry's: ◀ picks one, and then it is not "chosen by vote".
    picked = await run(rules, CAROL, "/story pick 1")
    assert picked.ok and picked.passage is not None and picked.passage.text == CANDIDATES[0]
    assert picked.passage.elected is None and picked.message_ref == f"msg-{spec.job_id}"


async def test_the_vote_closes_at_its_deadline_with_the_votes_cast(rules: SessionManager, clock: Clock) -> None:
    opened = await voting(rules)
    assert opened.ballot is not None
    await vote(rules, ALICE, 2)
    assert await rules.close_due_votes() == 0
    clock.advance(rules.config.story.vote_timeout_s)
    assert await rules.close_due_votes() == 1
    assert await rules.close_due_votes() == 0  # once
    assert await texts(rules) == [OPENING, "The engine coughed.", CANDIDATES[1]]
    # The story goes on: people write again, and the bot's next turn votes again.
    assert (await run(rules, BOB, "/story add The horn answered.")).ok
    assert (await run(rules, BOB, "/story continue")).job_id is not None


async def test_with_no_votes_at_the_deadline_the_first_candidate_stands(rules: SessionManager, clock: Clock) -> None:
    await voting(rules, 2)
    clock.advance(rules.config.story.vote_timeout_s + 1)
    assert await rules.close_due_votes() == 1
    [(_, shown)] = await rules.claim_owed_showings(["test"], 10)
    assert shown is not None and shown.passage is not None and shown.passage.text == CANDIDATES[0]
    assert shown.passage.elected == Election(0, 0)
    assert str(shown.passage.elected) == "no votes: the first candidate stands"


async def test_candidates_the_checks_stopped_are_kept_withheld_for_the_moderators(rules: SessionManager) -> None:
    await run(rules, ALICE, f'/story start "Ferry" mode:free {OPENING}')
    await run(rules, ALICE, "/story settings candidates:3")
    await run(rules, BOB, "/story continue")
    [job] = await rules.claim_jobs(1)
    stopped = Verdict(False, "words", "a word this story's rating does not allow", ("grim",))
    opened = await rules.open_vote(job.job_id, CANDIDATES[:2], {"model": "tiny"}, [("A grim line.", stopped)])
    assert opened is not None and opened.ballot is not None
    assert [x.text for x in opened.ballot.candidates] == list(CANDIDATES[:2])  # numbered without it
    [withheld] = await passages(rules, PassageStatus.WITHHELD)
    assert withheld.text == "A grim line." and withheld.generation["check"]["checker"] == "words"
    async with rules.db.read() as tx:
        [entry] = (await tx.execute(select(ModerationEntry))).scalars().all()
    assert (entry.action, entry.passage_id) == ("withheld", withheld.id)
    assert (await vote(rules, ALICE, 1)).turn_ended == job.job_id  # Alice alone takes part
    [(_, shown)] = await rules.claim_owed_showings(["test"], 10)
    assert shown is not None and shown.passage is not None and shown.passage.text == CANDIDATES[0]
    assert shown.passage.elected == Election(1, 1) and shown.passage.alternatives == Alternatives(1, 2, browsable=True)


async def test_a_vote_closes_when_the_last_one_who_had_not_voted_leaves(rules: SessionManager) -> None:
    await run(rules, ALICE, f'/story start "Ferry" mode:round-robin {OPENING}')
    await run(rules, ALICE, "/story settings candidates:2")
    assert (await run(rules, BOB, "/story join")).ok
    assert (await run(rules, ALICE, "/story add She waved.")).ok
    assert (await run(rules, BOB, "/story add The engine coughed.")).job_id is not None  # the round's end
    [job] = await rules.claim_jobs(1)
    await rules.open_vote(job.job_id, CANDIDATES[:2], {"model": "tiny"})
    assert "1 of 2 participants have not voted yet" in (await vote(rules, ALICE, 2)).text
    assert await rules.close_due_votes() == 0
    assert (await run(rules, BOB, "/story leave")).ok
    assert await rules.close_due_votes() == 1  # everyone still taking part has voted
    assert await texts(rules) == [OPENING, "She waved.", "The engine coughed.", CANDIDATES[1]]


async def test_undo_withdraws_the_candidates_and_the_vote(rules: SessionManager) -> None:
    opened = await voting(rules)
    assert opened.ballot is not None
    refused = await run(rules, CAROL, "/story undo")
    assert not refused.ok and "only they, the starter or a moderator" in refused.text
    withdrawn = await run(rules, BOB, "/story undo")
    assert withdrawn.ok and withdrawn.text == "Withdrew the bot's candidates; the vote is off."
    assert withdrawn.cancelled_job_ids == (opened.ballot.job_id,)
    assert await candidate_statuses(rules) == [PassageStatus.UNDONE] * 3
    assert await texts(rules) == [OPENING, "The engine coughed."]  # Bob's passage stays
    after = await vote(rules, ALICE, 1)
    assert not after.ok and after.text.startswith("No vote is open")
    [(_, shown)] = await rules.claim_owed_showings(["test"], 10)
    assert shown is None  # the ballot's messages say the turn was withdrawn
    assert (await run(rules, MOD, "/story continue")).ok


async def test_a_retry_votes_too_and_the_old_passage_stays_until_it_closes(rules: SessionManager) -> None:
    await run(rules, ALICE, f'/story start "Ferry" mode:free {OPENING}')
    await run(rules, BOB, "/story add The engine coughed.")
    await run(rules, BOB, "/story continue")
    [job] = await rules.claim_jobs(1)
    await rules.finish_job(job.job_id, "The old one.", {"model": "tiny"})
    await run(rules, ALICE, "/story settings candidates:2")
    assert (await run(rules, BOB, "/story retry")).ok
    [retry] = await rules.claim_jobs(1)
    assert await rules.open_vote(retry.job_id, CANDIDATES[:2], {"model": "tiny"}) is not None
    assert await texts(rules) == [OPENING, "The engine coughed.", "The old one."]
    await vote(rules, ALICE, 2)
    await vote(rules, BOB, 2)
    assert await texts(rules) == [OPENING, "The engine coughed.", CANDIDATES[1]]
    [(_, shown)] = await rules.claim_owed_showings(["test"], 10)
    assert shown is not None and shown.passage is not None and shown.passage.number == 3
    assert shown.passage.alternatives == Alternatives(3, 3, browsable=True)  # the old one, then both candidates


async def test_bad_votes_change_nothing(rules: SessionManager) -> None:
    nothing = await vote(rules, ALICE, 1)
    assert not nothing.ok and nothing.text.startswith("No story is running")
    await run(rules, ALICE, f'/story start "Ferry" mode:free {OPENING}')
    none_open = await vote(rules, ALICE, 1)
    assert not none_open.ok and none_open.text.startswith("No vote is open in this story.")
    with pytest.raises(c.ParseError, match="candidates must be a whole number from 1 to 4"):
        c.parse("/story settings candidates:5")
    not_starter = await run(rules, BOB, "/story settings candidates:2")
    assert not not_starter.ok and "Only Alice" in not_starter.text
    await run(rules, ALICE, "/story settings candidates:2")
    await run(rules, BOB, "/story add The engine coughed.")
    await run(rules, BOB, "/story continue")
    [job] = await rules.claim_jobs(1)
    await rules.open_vote(job.job_id, CANDIDATES[:2], {"model": "tiny"})
    out_of_range = await vote(rules, ALICE, 3)
    assert not out_of_range.ok and out_of_range.text == "There are 2 candidates; vote for one from 1 to 2."
    stale = await vote(rules, ALICE, 1, job_id=job.job_id + 100)
    assert not stale.ok and "That vote has closed" in stale.text
    assert await candidate_statuses(rules) == [PassageStatus.CANDIDATE] * 2


async def test_the_queue_writes_the_candidates_in_one_turn_and_shows_the_winner_when_the_vote_closes(
    app: tuple[App, TurnRecorder],
) -> None:
    core, _ = app
    recorder = TurnRecorder()
    core.queue.add_listener(recorder, shows=CHANNEL.platform)  # it shows the channel's turns: owed ones too
    rules = core.sessions
    await run(rules, ALICE, f'/story start "Ferry" mode:free {OPENING}')
    assert (await run(rules, ALICE, "/story settings candidates:3 temperature:1.5 length:24")).ok
    asked = await run(rules, ALICE, "/story continue")
    assert asked.job_id is not None
    ended = await recorder.wait(asked.job_id)
    assert ended is not None and ended.ok
    # (At temperature 1.5 the tiny model's rows differ; identical ones would count once.)
    assert ended.ballot is not None and 2 <= len(ended.ballot.candidates) <= 3
    async with rules.db.read() as tx:
        job = await tx.get(GenerationJob, asked.job_id)
        assert job is not None and job.status == JobStatus.VOTING
    closed = await vote(rules, ALICE, 2)  # Alice is the only participant
    assert closed.turn_ended == asked.job_id
    await until(
        lambda: any(r is not None and r.passage is not None for r in recorder.outcomes[asked.job_id]),
        "the winner to be shown",
    )
    winner = recorder.outcomes[asked.job_id][-1]
    assert winner is not None and winner.passage is not None
    assert winner.passage.text == ended.ballot.candidates[1].text and winner.passage.elected == Election(1, 1)
