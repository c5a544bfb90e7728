"""`storybot console` as a user runs it: a whole session piped through stdin of the real program."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.cli import main

SCRIPT = """\
/story start "The Lighthouse" genre:mystery
The keeper climbed the stairs at dusk.
/as Bob
The lamp was cold, and the sea was loud.
/story frobnicate
/as Alice
She lit the wick and waited.
/story retry
/story undo
/story status
/story end
"""


def storybot_command() -> list[str]:
    """The installed console script, as `make run` starts it."""
    script = Path(sys.executable).with_name("storybot")
    return [str(script)] if script.exists() else [sys.executable, "-m", "adapters.cli"]


def console_env(tmp_path: Path, model_dir: Path, **extra_env: str) -> dict[str, str]:
    """The environment `storybot console` runs in: a SQLite file in ``tmp_path``, the tiny model, Alice."""
    return {
        **os.environ,
        "STORYBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'console.db'}",
        "STORYBOT_MODEL_NAME": str(model_dir),
        "STORYBOT_MODEL_LOCAL_FILES_ONLY": "true",
        "STORYBOT_MODEL_MAX_NEW_TOKENS": "16",
        "STORYBOT_CONSOLE_USER": "Alice",
        **extra_env,
    }


def run_console(tmp_path: Path, model_dir: Path, script: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*storybot_command(), "console"],
        input=script,
        capture_output=True,
        text=True,
        env=console_env(tmp_path, model_dir, **extra_env),
        cwd=tmp_path,
        timeout=240,
        check=False,  # the tests check the exit status themselves
    )


def test_a_whole_session_through_the_console(tmp_path: Path, tiny_model_dir: Path) -> None:
    done = run_console(tmp_path, tiny_model_dir, SCRIPT)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Alice started “The Lighthouse” (mystery), alternate mode, rated general." in out
    assert "(now writing as Bob)" in out
    assert "! Unknown command 'frobnicate'" in out
    # Three bot answers and one rewrite, each printed as it was stored.
    assert out.count("storybot ▸ ") == 4
    assert "The bot is rewriting its last passage" in out
    assert "Withdrew passage 6 by storybot" in out
    assert "“The Lighthouse” — alternate mode, rated general, 5 passages" in out
    assert "The End." in out
    assert "Traceback" not in done.stderr

    with sqlite3.connect(tmp_path / "console.db") as db:
        rows = db.execute("SELECT author_name, author_kind, status, text FROM passages ORDER BY seq").fetchall()
        story = db.execute("SELECT title, status FROM stories").fetchall()
    assert story == [("The Lighthouse", "finished")]
    canonical = [(name, kind) for name, kind, status, _ in rows if status == "canonical"]
    assert canonical == [
        ("Alice", "human"),
        ("storybot", "bot"),
        ("Bob", "human"),
        ("storybot", "bot"),
        ("Alice", "human"),
    ]
    assert [status for _, kind, status, _ in rows if kind == "bot"] == [
        "canonical",
        "canonical",
        "superseded",
        "undone",
    ]
    humans = [text for _, kind, _, text in rows if kind == "human"]
    assert humans == [
        "The keeper climbed the stairs at dusk.",
        "The lamp was cold, and the sea was loud.",
        "She lit the wick and waited.",
    ]
    # Every bot passage that was shown is the one stored.
    for _, kind, _, text in rows:
        if kind == "bot":
            assert f"storybot ▸ {text}" in out


def test_an_unloadable_model_is_one_line_and_the_story_goes_on(tmp_path: Path, tiny_model_dir: Path) -> None:
    script = '/story start "Offline"\nA human line.\n/story status\n'
    done = run_console(tmp_path, tiny_model_dir, script, STORYBOT_MODEL_NAME=str(tmp_path / "missing-model"))
    assert done.returncode == 0, done.stderr
    errors = [line for line in done.stdout.splitlines() if line.startswith("! ")]
    assert len(errors) == 1 and "STORYBOT_MODEL_NAME" in errors[0]
    assert "1 passage," in done.stdout
    assert "Traceback" not in done.stderr


def test_a_bad_setting_is_one_line_naming_the_key(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The settings are checked before anything starts, so this runs `storybot console` in this
    process (the real program's exit status is the whole session's test)."""
    for key, value in console_env(tmp_path, tiny_model_dir, STORYBOT_MODEL_TEMPERATURE="hot").items():
        if key.startswith("STORYBOT_"):
            monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # where run_console runs it: no storybot.toml
    assert main(["console"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip().count("\n") == 0
    assert "model.temperature" in err and "STORYBOT_MODEL_TEMPERATURE" in err


def test_ratings_through_the_console(tmp_path: Path, tiny_model_dir: Path) -> None:
    """``/story rate`` at the console: one vote per person, changed by voting again, the counts in
    each answer and in ``/story status``; a person's passage is not rated."""
    script = (
        '/story start "Rated" The lamp went out.\n'
        "/story rate up\n/as Bob\n/story rate up\n/story rate down\n/story rate down 1\n/story status\n"
    )
    done = run_console(tmp_path, tiny_model_dir, script, STORYBOT_MODEL_MIN_NEW_TOKENS="16")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    answers = [line for line in lines if line.startswith(("You ", "! "))]
    assert answers == [
        "You rated passage 2 👍 (👍 1 · 👎 0).",
        "You rated passage 2 👍 (👍 2 · 👎 0).",
        "You changed your rating of passage 2 👎 (👍 1 · 👎 1).",
        "! That passage is Alice's; only the bot's passages are rated.",
    ]
    # The status's entry for the bot's passage ends with its counts (the tiny model's passage may
    # span several lines).
    status_entry = done.stdout[done.stdout.rindex("\n2. storybot: ") :]
    assert " (👍 1 · 👎 1)" in status_entry
    with sqlite3.connect(tmp_path / "console.db") as db:
        votes = db.execute("SELECT voter_name, value FROM passage_votes ORDER BY voter_name").fetchall()
    assert votes == [("Alice", 1), ("Bob", -1)]
