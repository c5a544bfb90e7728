"""Content checks and reports at the console: the real ``storybot console`` with a script on stdin.

A line the checks refuse prints the one-line refusal and the story goes on; ``/story report``
prints the message for the moderators, marked as such; a console for adults (``console.mature``)
lets a mature story use a word of the teen list that a general story refuses.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.test_console import run_console

TEEN_WORD_LINE = "The fireworks ended in an orgasm of colour."  # "orgasm*": bot/safety/lists/teen.txt
SCRIPT = f"""\
/story start "Night Shift" rating:mature mode:free
{TEEN_WORD_LINE}
/story end
/story start "Day Shift" mode:free
{TEEN_WORD_LINE}
The shit hit the fan.
The lamp was lit.
/story report 1 too dull
/story status
"""


def test_refusals_and_a_report_at_a_console_for_adults(tmp_path: Path, tiny_model_dir: Path) -> None:
    done = run_console(tmp_path, tiny_model_dir, SCRIPT, STORYBOT_CONSOLE_MATURE="true")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    refusals = [line for line in lines if line.startswith("! ")]
    assert len(refusals) == 2 and all(
        line.startswith("! That can't go in this story: ") and line.endswith(" Nothing was changed.")
        for line in refusals
    ), refusals
    assert not any("orgasm" in line or "shit" in line for line in refusals)
    assert lines.count("Passage 1 added.") == 2  # the mature story's line, then the general story's clean one
    assert "Thank you: passage 1 was reported to the story's moderators." in lines
    [alert] = [line for line in lines if line.startswith("[to the moderators] ")]
    assert alert.startswith("[to the moderators] ⚑ Someone reported passage 1 of “Day Shift”")
    assert "“The lamp was lit.”" in alert and "Reason: too dull" in alert
    assert "“Day Shift” — free mode, rated general, 1 passage," in done.stdout
    assert "Traceback" not in done.stderr

    with sqlite3.connect(tmp_path / "console.db") as db:
        passages = db.execute(
            "SELECT s.title, p.text FROM passages p JOIN stories s ON s.id = p.story_id ORDER BY p.id"
        ).fetchall()
        reports = db.execute("SELECT action, actor_name, detail FROM moderation_log WHERE action = 'report'").fetchall()
    assert passages == [("Night Shift", TEEN_WORD_LINE), ("Day Shift", "The lamp was lit.")]
    assert reports == [("report", "Alice", "too dull")]
