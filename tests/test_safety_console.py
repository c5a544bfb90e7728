"""Content checks and the moderators' tools at the console: the real ``storybot console`` with a
script on stdin.

A line the checks refuse prints the one-line refusal and the story goes on; ``/story report``
prints the message for the moderators, marked as such; a console for adults (``console.mature``)
lets a mature story use a word of the teen list that a general story refuses. The console's person
started the story, so they hide and unhide its passages and change its rating; they are no
platform moderator, so the channel's word list stays as it is. A checker that does not answer
refuses what the person writes (``safety.human_when_down`` is ``refuse`` by default) and holds
the bot's passage back.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bot.generation.queue import CHECKS_DOWN_NOTICE
from tests.loopback import free_port
from tests.test_console import run_console

TEEN_WORD_LINE = "The fireworks ended in an orgasm of colour."  # "orgasm*": bot/safety/lists/teen.txt
GENERAL_WORD_LINE = "The shit hit the fan."  # "shit*": bot/safety/lists/general.txt only
DRAGON_LINE = "The dragon slept on the pier."
SCRIPT = f"""\
/story start "Night Shift" rating:mature mode:free
{TEEN_WORD_LINE}
/story end
/story start "Day Shift" mode:free
{TEEN_WORD_LINE}
{GENERAL_WORD_LINE}
The lamp was lit.
/story report 1 too dull
/story status
/story hide 1
/story status
/story unhide 1
/story settings rating:teen
{TEEN_WORD_LINE}
{GENERAL_WORD_LINE}
/story words ban dragon
{DRAGON_LINE}
"""
OUTAGE_SCRIPT = """\
/story start mode:free
The lamp was lit.
/story continue
"""


def test_refusals_reports_and_the_starters_tools_at_a_console_for_adults(tmp_path: Path, tiny_model_dir: Path) -> None:
    done = run_console(tmp_path, tiny_model_dir, SCRIPT, STORYBOT_CONSOLE_MATURE="true")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    refusals = [line for line in lines if line.startswith("! ")]
    assert len(refusals) == 4, refusals
    # The general story refuses both lines, the teen story the teen list's: never naming the word.
    content = refusals[:3]
    assert all(
        line.startswith("! That can't go in this story: ") and line.endswith(" Nothing was changed.")
        for line in content
    ), refusals
    assert not any("orgasm" in line or "shit" in line for line in content)
    assert refusals[3] == "! Only the channel's moderators can change its word list."
    assert lines.count("Passage 1 added.") == 2  # the mature story's line, then the general story's clean one
    assert "Thank you: passage 1 was reported to the story's moderators." in lines
    [alert] = [line for line in lines if line.startswith("[to the moderators] ")]
    assert alert.startswith("[to the moderators] ⚑ Someone reported passage 1 of “Day Shift”")
    assert "“The lamp was lit.”" in alert and "Reason: too dull" in alert
    assert "“Day Shift” — free mode, rated general, 1 passage," in done.stdout

    # Hidden between the two statuses, then back; then rated teen, which takes the teen list's
    # word no more than general did but lets the general list's through.
    [shown, hidden_status] = [i for i, line in enumerate(lines) if line.startswith("“Day Shift” — ")]
    hid = next(i for i, line in enumerate(lines) if line.startswith("Alice hid passage 1 (by Alice)"))
    back = lines.index("Alice put passage 1 back in the story.")
    assert lines[shown:hid].count("1. Alice: The lamp was lit.") == 1
    assert hid < hidden_status < back and "1. (hidden by a moderator)" in lines[hidden_status:back]
    assert "The lamp was lit." not in "\n".join(lines[hidden_status:back])
    assert any(line.startswith("Settings updated. mode:free, rating:teen,") for line in lines[back:])
    assert [line for line in lines[back:] if line.startswith("Passage ")] == ["Passage 2 added.", "Passage 3 added."]
    assert "Traceback" not in done.stderr

    with sqlite3.connect(tmp_path / "console.db") as db:
        passages = db.execute(
            "SELECT s.title, p.status, p.text FROM passages p JOIN stories s ON s.id = p.story_id ORDER BY p.id"
        ).fetchall()
        stories = db.execute("SELECT title, rating FROM stories ORDER BY id").fetchall()
        log = db.execute("SELECT action, actor_name, detail FROM moderation_log ORDER BY id").fetchall()
        words = db.execute("SELECT COUNT(*) FROM channel_words").fetchone()
    assert passages == [
        ("Night Shift", "canonical", TEEN_WORD_LINE),
        ("Day Shift", "canonical", "The lamp was lit."),
        ("Day Shift", "canonical", GENERAL_WORD_LINE),
        ("Day Shift", "canonical", DRAGON_LINE),
    ]
    assert stories == [("Night Shift", "mature"), ("Day Shift", "teen")]
    assert [(action, actor) for action, actor, _ in log] == [
        ("end", "Alice"),
        ("report", "Alice"),
        ("hide", "Alice"),
        ("unhide", "Alice"),
        ("rating", "Alice"),
    ]
    assert log[1][2] == "too dull" and words == (0,)


def test_a_checker_that_does_not_answer_refuses_the_persons_line_and_holds_the_bots_back(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    done = run_console(
        tmp_path,
        tiny_model_dir,
        OUTAGE_SCRIPT,
        STORYBOT_SAFETY_GENERAL="words,moderation",
        STORYBOT_SAFETY_MODERATION_URL=f"http://127.0.0.1:{free_port()}/v1",  # nothing listens there
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line for line in lines if line.startswith("! ")] == [
        "! The content checks are not answering right now, so nothing was changed; try again in a moment.",
        f"! {CHECKS_DOWN_NOTICE}",
    ]
    assert "storybot ▸ " not in done.stdout and "Traceback" not in done.stderr

    with sqlite3.connect(tmp_path / "console.db") as db:
        passages = db.execute("SELECT author_kind, status FROM passages").fetchall()
        withheld = db.execute("SELECT actor_name FROM moderation_log WHERE action = 'withheld'").fetchall()
    assert passages == [("bot", "withheld")] and withheld == [("storybot",)]
