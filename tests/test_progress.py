"""Progress bars (bot/progress.py) on the commands that can take long: on stderr, and only when
stderr is a terminal, so logs, pipes and these tests stay clean. ``storybot import`` and ``export``
run in this process, once with stderr a plain file and once with stderr a (pretend) terminal."""

from __future__ import annotations

import io
from contextlib import redirect_stderr
from pathlib import Path

import pytest

from adapters.cli import main
from bot.export.json_format import dumps
from tests.conftest import sqlite_url
from tests.export_fixtures import tricky_story


class Terminal(io.StringIO):
    """What tqdm takes for a terminal: a stream whose ``isatty()`` says so."""

    def isatty(self) -> bool:
        return True


def storybot(stderr: io.StringIO, *args: str) -> tuple[int, str]:
    """``storybot ARGS`` in this process with ``stderr`` as its stderr; (exit code, what it wrote there)."""
    with redirect_stderr(stderr):
        code = main(list(args))
    return code, stderr.getvalue()


@pytest.fixture
def archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder to run the archive commands in, a JSON export to import, and the database to use."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STORYBOT_DATABASE_URL", sqlite_url(tmp_path))
    monkeypatch.setenv("STORYBOT_LOGGING_LEVEL", "WARNING")
    (tmp_path / "in.json").write_bytes(dumps(tricky_story()).encode())
    return tmp_path


def test_no_bar_when_stderr_is_not_a_terminal(archive: Path) -> None:
    assert storybot(io.StringIO(), "import", "in.json") == (0, "")
    assert storybot(io.StringIO(), "export", "--story", "1", "--format", "epub", "-o", "out.epub") == (
        0,
        "",
    )
    assert (archive / "out.epub").stat().st_size > 0


def test_a_terminal_sees_each_step(archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, bar = storybot(Terminal(), "import", "in.json")
    assert code == 0 and "importing in.json" in bar and "storing" in bar
    capsys.readouterr()
    code, bar = storybot(Terminal(), "export", "--story", "1", "--format", "html", "-o", "-")
    assert code == 0
    assert "exporting story #1" in bar and all(step in bar for step in ("reading", "rendering", "writing"))
    assert capsys.readouterr().out.startswith("<!DOCTYPE html>")  # stdout holds the file alone
