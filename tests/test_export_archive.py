"""The archive on a real database (SQLite and PostgreSQL): `/story export`, `/story show`,
`/story list`, and `storybot export | list | import` with the JSON round trip."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from adapters.cli import main
from adapters.console import ConsoleChannel
from bot import commands as c
from bot.app import open_app
from bot.config import Config
from bot.export.json_format import dumps
from bot.identity import Actor, ChannelRef
from bot.sessions import SessionManager
from storage.models import Story
from tests.conftest import make_config
from tests.export_fixtures import ARABIC, tricky_story

CHANNEL = ChannelRef("test", "guild", "general")
OTHER = ChannelRef("test", "guild", "random")
ALICE = Actor("u-alice", "Alice")
BOB = Actor("u-bob", "Bob")


async def run(rules: SessionManager, actor: Actor, text: str, channel: ChannelRef = CHANNEL):
    return await rules.handle(channel, actor, c.parse(text))


async def bot_writes(rules: SessionManager, text: str) -> None:
    """The queue's side of a bot turn, without a model: claim the pending job, store its text."""
    [job] = await rules.claim_jobs(1)
    assert await rules.finish_job(job.job_id, text, {"model": "tiny", "temperature": 0.8}) is not None


async def written_story(rules: SessionManager) -> int:
    """A finished story with a retried bot passage and an undone one; returns its id."""
    start = await run(rules, ALICE, '/story start "Harbour <Lights>" genre:sea The keeper climbed the stairs.')
    await bot_writes(rules, "The lamp was cold.")
    assert (await run(rules, ALICE, "/story retry")).ok
    await bot_writes(rules, "The lamp was warm.")
    added = await run(rules, BOB, f"/story add {ARABIC} <script>alert(1)</script>")
    assert added.ok, added.text
    await bot_writes(rules, "A gull cried.")
    assert (await run(rules, BOB, "/story undo")).ok  # Bob asked for the bot's passage: he may withdraw it
    assert (await run(rules, ALICE, "/story end")).ok
    assert start.story_id is not None
    return start.story_id


# ------------------------------------------------------------------------- chat commands


async def test_export_every_format_of_a_finished_story(rules: SessionManager) -> None:
    story_id = await written_story(rules)
    for fmt in c.EXPORT_FORMATS:
        result = await run(rules, BOB, f"/story export {fmt} {story_id}")
        assert result.ok and result.attachment is not None, result.text
        assert result.attachment.filename == f"harbour-lights.{fmt}"
        assert f"“Harbour <Lights>” as {fmt}" in result.text
    md = (await run(rules, BOB, "/story export md")).attachment  # no id: the latest finished story
    assert md is not None
    text = md.data.decode()
    assert "The lamp was warm." in text and "The lamp was cold." not in text and "A gull cried." not in text
    assert ARABIC in text and "\\<script\\>alert(1)\\</script\\>" in text
    assert "**Alice:**" in text
    anonymous = (await run(rules, BOB, "/story export authors:off")).attachment
    assert anonymous is not None and "**Alice:**" not in anonymous.data.decode()
    ao3 = (await run(rules, BOB, "/story export body:on")).attachment
    assert ao3 is not None and ao3.filename == "harbour-lights.ao3.html"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in ao3.data.decode()


async def test_json_export_keeps_the_alternatives_and_the_withdrawn(rules: SessionManager) -> None:
    story_id = await written_story(rules)
    result = await run(rules, ALICE, f"/story export json {story_id}")
    assert result.attachment is not None
    document = json.loads(result.attachment.data)
    passages = [(p["author"]["name"], p["status"], p["replaces"], p["text"]) for p in document["passages"]]
    assert passages == [
        ("Alice", "canonical", None, "The keeper climbed the stairs."),
        ("storybot", "superseded", None, "The lamp was cold."),
        ("storybot", "canonical", 2, "The lamp was warm."),
        ("Bob", "canonical", None, f"{ARABIC} <script>alert(1)</script>"),
        ("storybot", "undone", None, "A gull cried."),
    ]
    assert document["passages"][2]["generation"] == {"model": "tiny", "temperature": 0.8}
    assert document["passages"][4]["changed_by_id"] == "u-bob"
    assert document["status"] == "finished" and document["language"] == "en"


async def test_export_of_the_running_story_and_its_limits(rules: SessionManager) -> None:
    nothing = await run(rules, ALICE, "/story export")
    assert not nothing.ok and "no story here to export" in nothing.text
    await run(rules, ALICE, '/story start "Draft" mode:free')
    await run(rules, ALICE, "/story add Still going.")
    draft = await run(rules, ALICE, "/story export txt")
    assert draft.attachment is not None and "Still going." in draft.attachment.data.decode()
    assert "still being written" in draft.attachment.data.decode()
    draft_id = draft.story_id
    elsewhere = await run(rules, ALICE, f"/story export {draft_id}", OTHER)
    assert not elsewhere.ok and elsewhere.attachment is None
    assert elsewhere.text == f"Story #{draft_id} is not in this channel's archive. See /story list."
    missing = await run(rules, ALICE, "/story export 999")
    assert not missing.ok and "#999 is not in this channel's archive" in missing.text


async def test_show_and_list_the_channel_archive(rules: SessionManager) -> None:
    story_id = await written_story(rules)
    listing = await run(rules, BOB, "/story list")
    assert f"#{story_id} “Harbour <Lights>” — rated general, finished" in listing.text
    assert "/story show <id>" in listing.text and "/story export <format> <id>" in listing.text
    shown = await run(rules, BOB, f"/story show {story_id}")
    assert shown.ok and shown.private
    assert f"#{story_id} “Harbour <Lights>” — sea · started" in shown.text and " · rated general · " in shown.text
    assert "3 passages" in shown.text and "Contributors: Alice (5 words), storybot (4 words), Bob" in shown.text
    assert "Alice: The keeper climbed the stairs." in shown.text
    assert f"/story export <md|txt|html|epub|json> {story_id}" in shown.text
    assert not (await run(rules, BOB, f"/story show {story_id}", OTHER)).ok
    await run(rules, ALICE, '/story start "Running" mode:free')
    running = await rules.running_story_id(CHANNEL)
    refused = await run(rules, BOB, f"/story show {running}")
    assert not refused.ok and "still being written" in refused.text


async def test_a_rated_story_keeps_its_rating_in_the_archive(rules: SessionManager) -> None:
    started = await run(rules, ALICE, '/story start "Night Shift" rating:teen mode:free The lights went out.')
    assert (await run(rules, ALICE, "/story end")).ok
    listing = await run(rules, BOB, "/story list")
    assert f"#{started.story_id} “Night Shift” — rated teen, finished" in listing.text
    assert " · rated teen · " in (await run(rules, BOB, f"/story show {started.story_id}")).text
    exported = (await run(rules, BOB, f"/story export json {started.story_id}")).attachment
    assert exported is not None and json.loads(exported.data)["rating"] == "teen"
    md = (await run(rules, BOB, f"/story export md {started.story_id}")).attachment
    assert md is not None and "*Rating: Teen*" in md.data.decode()


# ------------------------------------------------------------------------- command line


def cli(
    config: Config, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, str]:
    """Run `storybot ...` in this process against the test database; (exit code, stdout, stderr)."""
    monkeypatch.setenv("STORYBOT_DATABASE_URL", config.database.url)
    monkeypatch.setenv("STORYBOT_LOGGING_LEVEL", "WARNING")
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cli_env(config_on_each_database: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    """The archive commands store and read stories in the database: on each of them."""
    monkeypatch.chdir(tmp_path)
    return config_on_each_database


def test_json_round_trip_through_storybot_import(
    cli_env: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = dumps(tricky_story()).encode()
    (tmp_path / "in.json").write_bytes(original)
    code, out, err = cli(cli_env, capsys, monkeypatch, "import", "in.json")
    assert code == 0, err
    assert out.startswith("Imported “Lanterns & <Ghosts>: *A* Tale 🌙” as story #") and "console:local:harbour" in out
    story_id = out.split("#", 1)[1].split()[0]
    code, out, err = cli(
        cli_env, capsys, monkeypatch, "export", "--story", story_id, "--format", "json", "-o", "out.json"
    )
    assert code == 0, err
    assert (tmp_path / "out.json").read_bytes() == original  # export, import, export: the same document
    code, out, err = cli(cli_env, capsys, monkeypatch, "import", "in.json", "--channel", "discord:g1:c2")
    assert code == 0, err
    second = out.split("#", 1)[1].split()[0]
    code, _, _ = cli(cli_env, capsys, monkeypatch, "export", "--story", second, "--format", "json", "-o", "moved.json")
    moved = json.loads((tmp_path / "moved.json").read_text())
    assert moved["channel"] == {"platform": "discord", "workspace": "g1", "channel": "c2", "thread": ""}
    assert {**moved, "channel": None} == {**json.loads(original), "channel": None}


async def test_a_chat_story_survives_export_and_import(
    rules: SessionManager, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    story_id = await written_story(rules)
    exported = (await run(rules, ALICE, f"/story export json {story_id}")).attachment
    assert exported is not None
    (tmp_path / "story.json").write_bytes(exported.data)
    monkeypatch.chdir(tmp_path)
    # The CLI runs its own event loop: give it a thread of its own, as a shell would.
    code, out, err = await asyncio.to_thread(cli, rules.config, capsys, monkeypatch, "import", "story.json")
    assert code == 0, err
    new_id = int(out.split("#", 1)[1].split()[0])
    assert new_id != story_id
    again = (await run(rules, ALICE, f"/story export json {new_id}")).attachment
    assert again is not None and again.data == exported.data
    shown = await run(rules, BOB, f"/story show {new_id}")  # the import is a finished story here
    assert shown.ok and "Harbour <Lights>" in shown.text


def test_cli_export_list_and_errors(
    cli_env: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "in.json").write_bytes(dumps(tricky_story()).encode())
    assert cli(cli_env, capsys, monkeypatch, "import", "in.json")[0] == 0
    code, out, err = cli(cli_env, capsys, monkeypatch, "list")
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split() == ["id", "channel", "title", "status", "rating", "passages", "words"]
    assert (
        "console:local:harbour" in row
        and "Lanterns & <Ghosts>" in row
        and row.split()[-4:] == ["finished", "general", "4", "808"]
    )
    story_id = row.split()[0]
    code, out, err = cli(cli_env, capsys, monkeypatch, "export", "--story", story_id, "--format", "epub")
    assert code == 0, err
    assert out.startswith("Wrote lanterns-ghosts-a-tale.epub")
    with zipfile.ZipFile(tmp_path / "lanterns-ghosts-a-tale.epub") as book:
        assert book.namelist()[0] == "mimetype"
    code, out, err = cli(cli_env, capsys, monkeypatch, "export", "--story", story_id, "--format", "txt", "-o", "-")
    assert code == 0 and out.startswith("Lanterns & <Ghosts>: *A* Tale 🌙\n====")
    code, out, err = cli(cli_env, capsys, monkeypatch, "export", "--story", "999", "--format", "md")
    assert code == 1 and err == "storybot: there is no story #999; storybot list shows them.\n"
    code, out, err = cli(cli_env, capsys, monkeypatch, "export", "--story", story_id, "--format", "md", "--body")
    assert code == 1 and "--body goes with --format html" in err


def test_cli_import_refuses_a_bad_file_and_stores_nothing(
    cli_env: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    document = json.loads(dumps(tricky_story()))
    document["passages"][3]["status"] = "lost"
    (tmp_path / "bad.json").write_text(json.dumps(document))
    code, _out, err = cli(cli_env, capsys, monkeypatch, "import", "bad.json")
    assert code == 1
    assert err.startswith("storybot: bad.json: passages[3].status must be one of canonical") and err.count("\n") == 1
    code, _out, err = cli(cli_env, capsys, monkeypatch, "import", "missing.json")
    assert code == 1 and "cannot read missing.json" in err
    document = json.loads(dumps(tricky_story()))
    document["rating"] = "R"
    (tmp_path / "bad.json").write_text(json.dumps(document))
    code, _out, err = cli(cli_env, capsys, monkeypatch, "import", "bad.json")
    assert code == 1
    assert err == "storybot: bad.json: rating must be one of general, teen, mature (got 'R').\n"
    (tmp_path / "in.json").write_bytes(dumps(tricky_story()).encode())
    code, _out, err = cli(cli_env, capsys, monkeypatch, "import", "in.json", "--channel", "a:b")
    assert code == 1 and "--channel must be NAME" in err
    assert cli(cli_env, capsys, monkeypatch, "list")[1] == "No stories yet.\n"


SLUG = "lanterns-ghosts-a-tale"  # the file name tricky_story's title gives


def test_cli_import_keeps_the_rating_and_reads_old_files_as_general(
    cli_env: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    teen = json.loads(dumps(replace(tricky_story(), rating="teen")))
    old = json.loads(dumps(tricky_story()))
    del old["rating"]  # written before stories had ratings
    ids = [imported(cli_env, capsys, monkeypatch, document) for document in (teen, old)]
    code, out, err = cli(cli_env, capsys, monkeypatch, "list")
    assert code == 0, err
    assert [line.split()[-3] for line in out.splitlines()[1:]] == ["teen", "general"]
    for story_id, rating in zip(ids, ("teen", "general"), strict=True):
        code, out, err = cli(cli_env, capsys, monkeypatch, "export", "--story", story_id, "--format", "json", "-o", "-")
        assert code == 0 and json.loads(out)["rating"] == rating, err
    assert json.loads(out) == {**old, "rating": "general"}  # nothing else changed on the way


def imported(
    config: Config, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, document: dict[str, Any]
) -> str:
    """`storybot import` of ``document`` (as in.json in the current folder); the new story's id."""
    Path("in.json").write_text(json.dumps(document))
    code, out, err = cli(config, capsys, monkeypatch, "import", "in.json")
    assert code == 0, err
    return out.split("#", 1)[1].split()[0]


def test_cli_export_gives_stories_of_the_same_title_a_file_each(
    cli_env: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    other = json.loads(dumps(tricky_story()))
    other["passages"][0]["text"] = "The other story starts elsewhere."
    ids = [
        imported(cli_env, capsys, monkeypatch, json.loads(dumps(tricky_story()))),
        imported(cli_env, capsys, monkeypatch, other),
    ]
    texts = [cli(cli_env, capsys, monkeypatch, "export", "--story", story_id, "-o", "-")[1] for story_id in ids]
    assert texts[0] != texts[1]
    for story_id, name in zip(ids, (f"{SLUG}.md", f"{SLUG}-2.md"), strict=True):
        code, out, err = cli(cli_env, capsys, monkeypatch, "export", "--story", story_id)
        assert code == 0, err
        assert out.startswith(f"Wrote {name} (")
    assert [(tmp_path / f"{SLUG}.md").read_text(), (tmp_path / f"{SLUG}-2.md").read_text()] == texts


def test_cli_export_does_not_write_through_a_symlink(
    cli_env: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    story_id = imported(cli_env, capsys, monkeypatch, json.loads(dumps(tricky_story())))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.md").write_text("precious")
    (tmp_path / f"{SLUG}.md").symlink_to(elsewhere / "precious.md")
    (tmp_path / f"{SLUG}.txt").symlink_to(elsewhere / "missing.txt")  # dangling: a write through it creates one
    for fmt in ("md", "txt"):
        code, out, err = cli(cli_env, capsys, monkeypatch, "export", "--story", story_id, "--format", fmt)
        assert code == 0, err
        assert out.startswith(f"Wrote {SLUG}-2.{fmt} (")
    assert (elsewhere / "precious.md").read_text() == "precious"
    assert sorted(path.name for path in elsewhere.iterdir()) == ["precious.md"]
    assert (tmp_path / f"{SLUG}.md").readlink() == elsewhere / "precious.md"


def test_cli_export_replaces_an_existing_file_only_with_force(
    cli_env: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    assert "--force" in capsys.readouterr().out
    story_id = imported(cli_env, capsys, monkeypatch, json.loads(dumps(tricky_story())))
    text = cli(cli_env, capsys, monkeypatch, "export", "--story", story_id, "-o", "-")[1]
    (tmp_path / "mine.md").write_text("my notes")
    code, out, err = cli(cli_env, capsys, monkeypatch, "export", "--story", story_id, "-o", "mine.md")
    assert (code, out, err) == (1, "", "storybot: mine.md exists; use --force to replace it.\n")
    assert (tmp_path / "mine.md").read_text() == "my notes"
    code, out, err = cli(cli_env, capsys, monkeypatch, "export", "--story", story_id, "-o", "mine.md", "--force")
    assert code == 0 and out.startswith("Wrote mine.md ("), err
    assert (tmp_path / "mine.md").read_text() == text
    # Without -o, --force replaces the title's file instead of picking the next free name.
    (tmp_path / f"{SLUG}.md").write_text("an old export")
    code, out, err = cli(cli_env, capsys, monkeypatch, "export", "--story", story_id, "--force")
    assert code == 0 and out.startswith(f"Wrote {SLUG}.md ("), err
    assert (tmp_path / f"{SLUG}.md").read_text() == text
    assert not (tmp_path / f"{SLUG}-2.md").exists() and not list(tmp_path.glob(".*.tmp"))


def test_cli_export_force_replaces_a_symlink_not_its_target(
    cli_env: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    story_id = imported(cli_env, capsys, monkeypatch, json.loads(dumps(tricky_story())))
    text = cli(cli_env, capsys, monkeypatch, "export", "--story", story_id, "-o", "-")[1]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.md").write_text("precious")
    link = tmp_path / "out.md"
    link.symlink_to(elsewhere / "precious.md")
    (tmp_path / "gone.md").symlink_to(elsewhere / "gone.md")
    for name in ("out.md", "gone.md"):  # a link is there even when its target is not
        code, _out, err = cli(cli_env, capsys, monkeypatch, "export", "--story", story_id, "-o", name)
        assert (code, err) == (1, f"storybot: {name} exists; use --force to replace it.\n")
    code, _out, err = cli(cli_env, capsys, monkeypatch, "export", "--story", story_id, "-o", "out.md", "--force")
    assert code == 0, err
    assert not link.is_symlink() and link.read_text() == text
    assert (elsewhere / "precious.md").read_text() == "precious"
    assert sorted(path.name for path in elsewhere.iterdir()) == ["precious.md"]


# ------------------------------------------------------------------------- console


async def test_the_console_saves_an_export_in_the_current_folder(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(
        tmp_path,
        {
            "STORYBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'console.db'}",
            "STORYBOT_MODEL_NAME": str(tiny_model_dir),
            "STORYBOT_MODEL_LOCAL_FILES_ONLY": "true",
            "STORYBOT_CONSOLE_USER": "Alice",
        },
    )
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    async with open_app(config) as app:
        console = ConsoleChannel(app, out=out, interactive=False)
        for line in (
            '/story start "Harbour" mode:free',
            "The keeper climbed the stairs.",
            "/story end",
            "/story export epub",
            "/story export epub",
        ):
            assert await console.handle_line(line)
        async with app.db.read() as tx:
            assert (await tx.execute(select(func.count()).select_from(Story))).scalar_one() == 1
    lines = out.getvalue().splitlines()
    assert lines[-4:] == [
        "📎 “Harbour” as epub (3 KB).",
        f"Saved {tmp_path / 'harbour.epub'}",
        "📎 “Harbour” as epub (3 KB).",
        f"Saved {tmp_path / 'harbour-2.epub'}",  # never over a file
    ]
    assert (tmp_path / "harbour.epub").read_bytes() == (tmp_path / "harbour-2.epub").read_bytes()
