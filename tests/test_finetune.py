"""``storybot finetune``: what is learned from (and what is not), the split by story, a real run
on the tiny Llama that lowers its held-out loss, and Ctrl-C leaving nothing behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from adapters.cli import main
from bot.config import Config, load_config
from bot.context import COMPLETION, PromptLimits
from bot.export.archive import import_story
from bot.export.model import ExportPassage, ExportStory
from bot.identity import ChannelRef
from bot.results import UserError
from bot.tuning.examples import (
    Selection,
    SourceStory,
    StoryPassage,
    read_stories,
    read_text_stories,
    split_by_story,
    story_examples,
)
from storage.database import Database
from storage.models import PassageVote, Story, StoryStatus
from tests.conftest import make_config, sqlite_url, tiny_model_env
from tests.test_named_models import greedy, local_backend

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
HARBOUR = ChannelRef("discord", "g1", "harbour")

# A small corpus in one distinctive, repeated voice (its words are the tiny tokenizer's own).
VOICE = (
    "The lighthouse keeper climbed the stairs at dusk. The lamp was cold, and the sea was loud.",
    "She lit the wick and watched the beam sweep across the rocks. A ship answered with a horn.",
    "When the storm came, the children ran to the harbour. The boats rocked against the ropes.",
    "He opened the letter slowly. Inside was a map, a key, and a single word: remember.",
)


def passage(number: int, kind: str, text: str, status: str = "canonical", **extra: object) -> ExportPassage:
    author = ("bot", "storybot") if kind == "bot" else ("u-alice", "Alice")
    return ExportPassage(number, kind, *author, text, status, START + timedelta(minutes=number), **extra)  # type: ignore[arg-type]


def export_story(title: str, passages: list[ExportPassage], channel: ChannelRef = HARBOUR) -> ExportStory:
    return ExportStory(
        title=title,
        genre="sea",
        language="en",
        mode="alternate",
        status="finished",
        starter_id="u-alice",
        starter_name="Alice",
        created_at=START,
        finished_at=START + timedelta(hours=1),
        channel=channel,
        passages=tuple(passages),
    )


def voice_story(title: str, shift: int, count: int = 8) -> ExportStory:
    """Passages in the corpus's voice, taking turns between Alice and the bot."""
    texts = [VOICE[(shift + i) % len(VOICE)] for i in range(count)]
    return export_story(title, [passage(i + 1, "bot" if i % 2 else "human", t) for i, t in enumerate(texts)])


async def store(config: Config, *stories: ExportStory) -> list[int]:
    db = Database(config.database.url)
    await db.migrate()
    try:
        return [await import_story(db, story, now=START) for story in stories]
    finally:
        await db.close()


@pytest.fixture
def llama_config(tmp_path: Path, tiny_llama_dir: Path) -> Config:
    return make_config(tmp_path, tiny_model_env(sqlite_url(tmp_path), tiny_llama_dir))


# ------------------------------------------------------------------------- what is learned from


async def test_turned_down_bot_passages_are_not_targets_but_rated_down_ones_stay_in_context(
    llama_config: Config,
) -> None:
    judged = export_story(
        "Judged",
        [
            passage(1, "human", "Alice opens the story."),
            passage(2, "bot", "The bot's first passage, kept."),
            passage(3, "bot", "A passage retried away.", "superseded"),
            passage(4, "bot", "Its replacement, rated down.", replaces=3, direction="a storm"),
            passage(5, "human", "Chapter 2: The Storm"),
            passage(6, "bot", "A passage undone.", "undone"),
            passage(7, "human", "Alice writes on."),
            passage(8, "bot", "Rated up more than down, and written to a direction.", direction="the lamp"),
        ],
    )
    judged_id, _ = await store(llama_config, judged, voice_story("Other", 0))
    db = Database(llama_config.database.url)
    try:

        async def vote(tx):  # 👎👎👍 on the replacement, 👍👍👎 on the last one
            from storage import queries as q

            rows = {row.seq: row.id for row in await q.all_passages(tx, judged_id)}
            for seq, values in ((4, (-1, -1, 1)), (8, (1, 1, -1))):
                for n, value in enumerate(values):
                    tx.add(PassageVote(passage_id=rows[seq], voter_id=f"u{n}", voter_name=f"U{n}", value=value))

        await db.transaction(vote)
        [story] = await read_stories(db, Selection(story_ids=(judged_id,)))
    finally:
        await db.close()
    assert story.source == f"#{judged_id}" and story.channel == HARBOUR.key
    assert [(p.text, p.target) for p in story.passages] == [
        ("Alice opens the story.", True),
        ("The bot's first passage, kept.", True),
        ("Its replacement, rated down.", False),  # the story went on from it: context, not a target
        ("Chapter 2: The Storm", False),  # a heading: never learned
        ("Alice writes on.", True),
        ("Rated up more than down, and written to a direction.", True),
    ]
    assert story.turned_down == 3 and story.headings == 1

    examples = story_examples(story, COMPLETION, PromptLimits(budget_tokens=400), lambda text: len(text.split()))
    assert [e.target for e in examples] == [
        "Alice opens the story.",
        "The bot's first passage, kept.",
        "Alice writes on.",
        "Rated up more than down, and written to a direction.",
    ]
    later = examples[2].context
    assert later.startswith("Title: Judged\nGenre: sea\n\n")
    assert "Its replacement, rated down." in later and "Chapter 2: The Storm" in later
    assert "retried away" not in later and "undone" not in later and "Alice writes on." not in later
    assert examples[3].context.endswith("[Next: the lamp]\n\n")  # the bot's prompt had its direction
    assert "[Next:" not in examples[2].context


async def test_which_stories_are_read(llama_config: Config) -> None:
    elsewhere = ChannelRef("discord", "g1", "harbour", "thread-7")
    ids = await store(
        llama_config,
        voice_story("One", 0),
        export_story("In a thread", [passage(1, "human", VOICE[1])], channel=elsewhere),
        export_story("Console", [passage(1, "human", VOICE[2])], channel=ChannelRef("console", "local", "desk")),
        voice_story("Still running", 1),
    )
    db = Database(llama_config.database.url)
    try:
        await db.transaction(
            lambda tx: tx.execute(update(Story).where(Story.id == ids[3]).values(status=StoryStatus.ACTIVE))
        )
        everything = await read_stories(db, Selection())
        assert [s.title for s in everything] == ["One", "In a thread", "Console"]  # finished ones only
        harbour = await read_stories(db, Selection(channels=(HARBOUR,)))
        assert [s.title for s in harbour] == ["One", "In a thread"]  # the channel and its threads
        thread = await read_stories(db, Selection(channels=(elsewhere,)))
        assert [s.title for s in thread] == ["In a thread"]
        both = await read_stories(db, Selection(story_ids=(ids[2],), channels=(elsewhere,)))
        assert [s.title for s in both] == ["In a thread", "Console"]
        with pytest.raises(UserError, match=rf"^story #{ids[3]} is not finished"):
            await read_stories(db, Selection(story_ids=(ids[3],)))
        with pytest.raises(UserError, match=r"^there is no story #999;"):
            await read_stories(db, Selection(story_ids=(999,)))
        with pytest.raises(UserError, match=r"^there are no finished stories in discord:g1:quiet;"):
            await read_stories(db, Selection(channels=(ChannelRef("discord", "g1", "quiet"),)))
    finally:
        await db.close()


def test_text_files_are_stories_of_paragraphs(tmp_path: Path) -> None:
    (tmp_path / "night watch.txt").write_text(
        "First paragraph\nstill the first.\r\n\r\n  \n\nChapter 1\n\nThe second one.\n"
    )
    [story] = read_text_stories([tmp_path / "night watch.txt"])
    assert story.title == "night watch"
    assert [(p.text, p.target) for p in story.passages] == [
        ("First paragraph\nstill the first.", True),
        ("Chapter 1", False),
        ("The second one.", True),
    ]
    (tmp_path / "empty.txt").write_text("\n \n")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    for name, message in (
        ("empty.txt", "holds no text"),
        ("latin1.txt", "is not UTF-8 text"),
        ("missing.txt", "cannot read"),
    ):
        with pytest.raises(UserError, match=message):
            read_text_stories([tmp_path / name])


def test_the_split_is_by_story_seeded_and_holds_at_least_one_out() -> None:
    stories = [
        SourceStory(f"s{i}", f"S{i}", tuple(StoryPassage(f"p{i}.{n}", True) for n in range(5))) for i in range(10)
    ]
    untaught = SourceStory("none", "Only context", (StoryPassage("Chapter 1", False),))
    train, held = split_by_story([*stories, untaught], 0.2, seed=3)
    assert len(held) == 2 and len(train) == 8
    assert {s.source for s in train}.isdisjoint({s.source for s in held})
    assert {s.source for s in train} | {s.source for s in held} == {s.source for s in stories}  # no target: left out
    assert split_by_story(stories, 0.2, seed=3) == (train, held)
    assert split_by_story(stories, 0.2, seed=4) != (train, held)
    assert len(split_by_story(stories[:2], 0.01, seed=0)[1]) == 1  # at least one held out...
    assert len(split_by_story(stories[:2], 0.99, seed=0)[0]) == 1  # ...and at least one to train on
    with pytest.raises(UserError, match=r"at least two stories .* only one story was found"):
        split_by_story([stories[0], untaught], 0.2, seed=0)


# ------------------------------------------------------------------------- the command


def cli(config: Config, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str):
    monkeypatch.setenv("STORYBOT_DATABASE_URL", config.database.url)
    monkeypatch.setenv("STORYBOT_MODEL_NAME", config.model.name)
    monkeypatch.setenv("STORYBOT_MODEL_LOCAL_FILES_ONLY", "true")
    monkeypatch.setenv("STORYBOT_LOGGING_LEVEL", "WARNING")
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # peft on transformers 5
async def test_finetune_lowers_the_held_out_loss_and_writes_a_card(
    llama_config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await store(llama_config, *(voice_story(f"Watch {n}", n, count=10) for n in range(6)))
    out = tmp_path / "adapters" / "keeper"
    out.mkdir(parents=True)  # an empty folder is as good as none
    code, stdout, err = await _in_thread(
        cli, llama_config, monkeypatch, capsys, "finetune", "--out", str(out), "--epochs", "3", "--lr", "5e-3"
    )
    assert code == 0, err
    before, after = (float(x) for x in re.findall(r"Held-out loss (?:before|after): ([\d.]+)", stdout))
    assert after < before - 0.5, stdout
    assert "Held out: 1 story, 10 passages" in stdout and "Training on 5 stories, 50 passages" in stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "storybot.json",
    ]
    assert [p.name for p in out.parent.iterdir()] == ["keeper"]  # no hidden folder left beside it
    card = (out / "README.md").read_text()
    assert f'base_model: "{llama_config.model.name}"' in card
    assert f"| before (base model) | {before:.4f} |" in card and f"| after (with this adapter) | {after:.4f} |" in card
    assert "| training | 5 | 50 |" in card and "| held out | 1 | 10 |" in card
    assert f"Channels: `{HARBOUR.key}` (6 stories)." in card
    assert "s per 1,000 training tokens" in card and f"{datetime.now(UTC):%Y-%m-%d}" in card
    assert '"base_model": ' in (out / "storybot.json").read_text()

    # The card's [models] snippet is the config that names it; by that name it changes the bot's text.
    snippet = card.split("```toml\n", 1)[1].split("```", 1)[0]
    assert snippet.startswith("[models.keeper]\n")
    (tmp_path / "storybot.toml").write_text(snippet, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    writer = load_config(env={"STORYBOT_MODEL_NAME": llama_config.model.name}).writer("keeper")
    assert writer.base == llama_config.model.name and writer.adapter is not None
    backend = local_backend(tmp_path, Path(llama_config.model.name))
    prompt = "Title: Watch 9\nGenre: sea\n\n"
    tuned, plain = backend.generate([greedy(prompt, writer.adapter), greedy(prompt)])
    assert tuned != plain

    # Never over an adapter that is there.
    code, _, err = await _in_thread(cli, llama_config, monkeypatch, capsys, "finetune", "--out", str(out))
    assert (
        code == 1
        and err == f"storybot: {out} is not empty; --out names a new (or empty) folder, nothing is written over.\n"
    )


async def _in_thread(function, *args):
    """The command runs its own event loop: give it a thread, as a shell would."""
    import asyncio

    return await asyncio.to_thread(function, *args)


def test_one_line_errors(
    llama_config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "one.txt").write_text(VOICE[0])
    (tmp_path / "two.txt").write_text(VOICE[1])
    out = str(tmp_path / "out")
    for args, message in (
        (["--holdout", "1"], "--holdout must be between 0 and 1"),
        (["--text", "nowhere.txt"], "cannot read nowhere.txt"),
        (["--story", "7"], "there is no story #7; storybot list shows them."),
        (["--channel", "a:b"], "--channel must be NAME"),
        (["--text", str(tmp_path / "one.txt")], "at least two stories"),
        ([], "at least two stories"),  # an empty database: no finished story
        (["--text", str(tmp_path / "one.txt"), str(tmp_path / "two.txt"), "--context", "8"], "--context 8 leaves"),
    ):
        code, _, err = cli(llama_config, monkeypatch, capsys, "finetune", "--out", out, *args)
        assert code == 1 and err.startswith("storybot: ") and message in err and err.count("\n") == 1, (args, err)
    assert not Path(out).exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_ctrl_c_leaves_nothing_behind(llama_config: Config, tmp_path: Path) -> None:
    files = []
    for n in range(3):
        files.append(tmp_path / f"story{n}.txt")
        files[-1].write_text("\n\n".join(VOICE[(n + i) % len(VOICE)] for i in range(8)))
    out = tmp_path / "work" / "adapter"
    env = {
        **os.environ,
        **tiny_model_env(llama_config.database.url, Path(llama_config.model.name)),
        "STORYBOT_LOGGING_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "adapters.cli", "finetune", "--out", str(out), "--epochs", "100000"]
    process = subprocess.Popen(
        [*command, "--text", *map(str, files)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:  # until training has begun
            if line.startswith("Training:"):
                break
        else:
            pytest.fail(f"finetune ended before training (exit {process.wait()})")
        hidden = [p for p in out.parent.iterdir() if p.name.startswith(".adapter.")]
        assert hidden and not out.exists()  # it writes beside DIR, not into it
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 130
    finally:
        if process.poll() is None:
            process.kill()
    assert not out.exists()
    assert list(out.parent.iterdir()) == []


def test_the_benchmark_runs(tiny_llama_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.finetune import main as bench_main

    bench_main(["--model", str(tiny_llama_dir), "--stories", "2", "--epochs", "1", "--context", "64", "--json"])
    out = capsys.readouterr().out
    assert out.startswith("CPU ") and "Corpus: bench.finetune_corpus, 2 finished stories, 28 passages" in out
    assert re.search(r"seconds per 1,000 training tokens: [\d.]+\n", out)
    report = json.loads(out.splitlines()[-1])
    assert report["train"]["stories"] == 1 and report["held_out"]["passages"] == 14
    assert report["loss_before"] > 0 and report["perplexity_after"] > 1
