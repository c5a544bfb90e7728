"""`storybot stats` and `storybot export-dataset`: what people's votes, retries and undos say,
read back from the database the rule book wrote, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bot.identity import ChannelRef
from bot.sessions import SessionManager
from tests.test_export_archive import cli
from tests.test_ratings import DAVE
from tests.test_sessions import ALICE, BOB, CAROL, MOD, run

HARBOUR = ChannelRef("console", "local", "harbour")


async def bot_writes(rules: SessionManager, text: str, *, temperature: float = 0.8, seconds: float = 2.0) -> None:
    """The bot writes the pending turn, recording what the queue records with a passage."""
    [job] = await rules.claim_jobs(1)
    story = "\n\n".join(job.story.passages)
    record = {"model": "tiny", "temperature": temperature, "length": 120, "seconds": seconds, "story_prompt": story}
    assert await rules.finish_job(job.job_id, text, record) is not None


async def judged_story(rules: SessionManager) -> None:
    """Two settings: at 0.8 a passage kept with 👍👍👎 and one retried away; at 1.5 one undone."""
    await run(rules, ALICE, '/story start "Harbour" The tide went out.', HARBOUR)
    await bot_writes(rules, "Boats lay on their sides in the mud.", seconds=2.0)
    for person, vote in ((BOB, "up"), (CAROL, "up"), (DAVE, "down")):
        assert (await run(rules, person, f"/story rate {vote}", HARBOUR)).ok
    await run(rules, ALICE, "/story add A gull screamed.", HARBOUR)
    await bot_writes(rules, "The gull was a bad omen, everyone agreed at once.", seconds=4.0)
    await run(rules, BOB, "/story retry", HARBOUR)
    await bot_writes(rules, "Far out, a bell rang under the water.", seconds=3.0)
    await run(rules, MOD, "/story settings temperature:1.5", HARBOUR)
    await run(rules, ALICE, "/story add Nobody moved.", HARBOUR)
    await bot_writes(rules, "Purple purple purple.", temperature=1.5, seconds=1.0)
    await run(rules, ALICE, "/story undo", HARBOUR)


@pytest.fixture
def shell(rules: SessionManager, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """`storybot ...` in a thread of its own (it runs its own event loop), as a shell would."""
    monkeypatch.chdir(tmp_path)

    async def storybot(*args: str) -> tuple[int, str, str]:
        return await asyncio.to_thread(cli, rules.config, capsys, monkeypatch, *args)

    return storybot


async def test_stats_count_approval_retries_and_undos_per_setting(rules: SessionManager, shell) -> None:
    await judged_story(rules)
    code, out, err = await shell("stats", "--json")
    assert code == 0, err
    figures = json.loads(out)
    cool, hot = figures["groups"]
    assert cool["settings"] == "temperature:0.8 length:120" and cool["model"] == "tiny"
    assert (cool["passages"], cool["rated"], cool["up"], cool["down"]) == (3, 1, 2, 1)
    assert cool["approval"] == pytest.approx(2 / 3) and cool["retry_rate"] == pytest.approx(1 / 3)
    assert cool["undo_rate"] == 0 and cool["mean_seconds"] == pytest.approx(3.0)
    assert (hot["passages"], hot["approval"], hot["undo_rate"]) == (1, None, 1.0)
    fates = [(p["fate"], p["up"], p["down"]) for p in figures["passages"]]
    assert fates == [("kept", 2, 1), ("retried", 0, 0), ("kept", 0, 0), ("undone", 0, 0)]
    assert sorted(v["voter"] for v in figures["passages"][0]["votes"]) == ["Bob", "Carol", "Dave"]
    code, out, _ = await shell("stats")
    header, first, second = out.splitlines()
    assert header.split()[:4] == ["model", "adapter", "settings", "passages"]
    assert "67%" in first and "33%" in first and "100%" in second


async def test_stats_filter_by_channel_and_date(rules: SessionManager, shell) -> None:
    await judged_story(rules)
    code, out, _ = await shell("stats", "--channel", "elsewhere")
    assert code == 0 and out.strip() == "No bot passages yet."
    code, out, _ = await shell("stats", "--channel", "harbour", "--since", "2000-01-01", "--json")
    assert len(json.loads(out)["passages"]) == 4
    code, out, _ = await shell("stats", "--since", "2999-01-01")
    assert out.strip() == "No bot passages yet."
    code, _, err = await shell("stats", "--since", "last tuesday")
    assert code == 1 and err.strip() == "storybot: --since takes a date like 2026-12-01 (got 'last tuesday')."
    code, _, err = await shell("stats", "--channel", "a:b")
    assert code == 1 and err.startswith("storybot: --channel must be") and len(err.splitlines()) == 1


async def test_export_dataset_gives_each_turn_its_prompt_chosen_and_rejected(rules: SessionManager, shell) -> None:
    await judged_story(rules)
    code, out, err = await shell("export-dataset", "--format", "jsonl")
    assert code == 0, err
    assert err.strip() == "3 records from 3 bot turns."
    kept, retried, undone = (json.loads(line) for line in out.splitlines())
    assert kept["prompt"] == "The tide went out." and kept["chosen"].startswith("Boats") and kept["rejected"] == []
    assert retried["chosen"] == "Far out, a bell rang under the water."
    assert retried["rejected"] == ["The gull was a bad omen, everyone agreed at once."]
    assert retried["prompt"].endswith("A gull screamed.")
    assert undone["chosen"] is None and undone["rejected"] == ["Purple purple purple."]
    code, out, err = await shell("export-dataset", "--format", "pairs", "--chat", "-o", "pairs.jsonl")
    assert code == 0 and out == "" and err.strip() == "1 record from 3 bot turns."
    [pair] = [json.loads(line) for line in Path("pairs.jsonl").read_text().splitlines()]
    # With --chat the answers are the assistant's turns too, as trainers read a conversation.
    assert pair["chosen"] == [{"role": "assistant", "content": "Far out, a bell rang under the water."}]
    assert pair["rejected"][0]["content"].startswith("The gull")
    assert [m["role"] for m in pair["prompt"]] == ["system", "user"] and "A gull screamed." in pair["prompt"][1][
        "content"
    ]
    code, _, err = await shell("export-dataset", "-o", "pairs.jsonl")
    assert code == 1 and "pairs.jsonl exists" in err


async def test_a_passage_rated_down_is_rejected_and_turns_without_prompts_are_counted(
    rules: SessionManager, shell
) -> None:
    await run(rules, ALICE, '/story start "Old" Once.', HARBOUR)
    [job] = await rules.claim_jobs(1)
    await rules.finish_job(job.job_id, "Written by an older storybot.", {"model": "tiny"})
    await run(rules, ALICE, "/story add Twice.", HARBOUR)
    await bot_writes(rules, "Nobody liked this.")
    await run(rules, BOB, "/story rate down", HARBOUR)
    code, out, err = await shell("export-dataset")
    assert (
        code == 0 and err.strip() == "1 record from 2 bot turns; 1 turn written before prompts were recorded left out."
    )
    [record] = [json.loads(line) for line in out.splitlines()]
    assert record["chosen"] is None and record["rejected"] == ["Nobody liked this."]
