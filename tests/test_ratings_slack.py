"""Rating the bot's passages on Slack, end to end: the real Bolt app in HTTP mode receives signed
clicks and slash commands, and talks to the mock Web API on loopback (``tests/fake_slack.py``).

One vote per person per passage, changed by voting again; each voter hears privately; the
passage's message shows the counts (``chat.update``, at the streaming pace); a withdrawn
passage's buttons refuse and edit nothing; a button value the bot never wrote is not ours; the
buttons still work for a new app on the same database.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

from adapters.slack_app import slack_http_server
from adapters.slack_app.render import ACTIONS_PER_BLOCK
from tests import test_slack
from tests.fake_openai import FakeOpenAI
from tests.fake_slack import FakeSlack, SignedSender, start_fake_slack
from tests.test_slack import (
    ALICE,
    BOB,
    CHANNEL,
    MOD,
    NOT_OUR_BUTTON,
    PIECES,
    Slack,
    blocks_of,
    bot_passage,
    buttons,
    ephemerals,
    shown,
    slack_config,
)

slack = test_slack.slack  # the fixtures: the running app and Slack's sides of it, and the scripted model
fake = test_slack.fake
INTERVAL_S = 0.05  # generation.stream_interval_s in the ``slack`` fixture
WITHDRAWN = "⚠️ That passage was withdrawn (undone or retried away), so it can no longer be rated."


async def answer(slack: Slack, user: str, after: int) -> str:
    """What ``user`` alone is shown next, after the ``after`` things shown so far."""
    shown_to: list[str] = await slack.api.wait_for(lambda: ephemerals(slack, user)[after:])
    return shown_to[0]


def rating_value(args: dict[str, object]) -> str:
    """The value of a passage's 👍 / 👎: ``<story id>:<passage id>``."""
    [value] = {button["value"] for button in buttons(args) if button["action_id"] in ("story_up", "story_down")}
    return str(value)


async def test_anyone_rates_with_the_buttons_once_and_the_passage_shows_the_counts(slack: Slack) -> None:
    api, send = slack.api, slack.sender
    await send.command('start "Tides" The keeper climbed the stairs.', user=ALICE)
    ts, passage = await bot_passage(api, 1)
    [actions] = [block for block in blocks_of(passage) if block["type"] == "actions"]
    action_ids = [element["action_id"] for element in actions["elements"]]
    assert action_ids[-2:] == ["story_up", "story_down"] and len(set(action_ids)) == len(action_ids)
    assert len(action_ids) <= ACTIONS_PER_BLOCK
    assert shown(passage).endswith("passage 2 · asked by Alice")
    value = rating_value(passage)
    updates_before = len(api.of("chat.update"))

    clicks = [(ALICE, "up"), (BOB, "up"), (BOB, "down"), (BOB, "down")]
    answers = []
    for user, vote in clicks:
        seen = len(ephemerals(slack, user))
        sent = await send.click(vote, value, user=user, channel=CHANNEL, message_ts=ts)
        assert sent.status == 200 and sent.body == ""  # acknowledged at once; the answer follows
        answers.append(await answer(slack, user, seen))
    assert answers == [
        "You rated passage 2 👍 (👍 1 · 👎 0).",
        "You rated passage 2 👍 (👍 2 · 👎 0).",
        "You changed your rating of passage 2 👎 (👍 1 · 👎 1).",
        "You already rated passage 2 👎 (👍 1 · 👎 1).",
    ]
    await api.wait_for(lambda: shown(api.messages[(CHANNEL, ts)]).endswith("passage 2 · asked by Alice · 👍 1 · 👎 1"))
    assert rating_value(api.messages[(CHANNEL, ts)]) == value, "the buttons stay"
    await asyncio.sleep(INTERVAL_S * 4)
    edits = [call for call in api.of("chat.update")[updates_before:] if call.args["ts"] == ts]
    assert 1 <= len(edits) <= 3, "one edit per burst of clicks, not one per click"
    assert all(b.at - a.at >= INTERVAL_S * 0.9 for a, b in itertools.pairwise(edits))

    # /story rate as slash text: answered in the acknowledgement itself; a person's passage is refused.
    rated = await send.command("rate up", user=MOD)
    assert shown(json.loads(rated.body)) == "You rated passage 2 👍 (👍 2 · 👎 1)."
    refused = await send.command("rate down 1", user=MOD)
    assert shown(json.loads(refused.body)) == "⚠️ That passage is Alice's; only the bot's passages are rated."
    await api.wait_for(lambda: shown(api.messages[(CHANNEL, ts)]).endswith("· 👍 2 · 👎 1"))
    status = await send.command("status", user=BOB)
    assert "(👍 2 · 👎 1)" in shown(json.loads(status.body))


async def test_a_withdrawn_passages_buttons_refuse_and_edit_nothing(slack: Slack) -> None:
    api, send = slack.api, slack.sender
    await send.command('start "Tides" The keeper climbed the stairs.', user=ALICE)
    ts, passage = await bot_passage(api, 1)
    story_id = buttons(passage)[0]["value"]
    await send.click("retry", story_id, user=BOB, channel=CHANNEL, message_ts=ts)
    ts2, _ = await bot_passage(api, 2)
    await send.click("undo", story_id, user=ALICE, channel=CHANNEL, message_ts=ts2)
    await api.wait_for(lambda: any("Withdrew passage 2" in shown(args) for args in api.messages.values()))
    updates = len(api.of("chat.update"))

    for seen, (message_ts, args) in enumerate(((ts, passage), (ts2, api.messages[(CHANNEL, ts2)]))):
        await send.click("up", rating_value(args), user=MOD, channel=CHANNEL, message_ts=message_ts)
        assert await answer(slack, MOD, seen) == WITHDRAWN
    await asyncio.sleep(INTERVAL_S * 4)
    assert len(api.of("chat.update")) == updates


async def test_a_rating_button_value_the_bot_never_wrote_is_not_ours(slack: Slack) -> None:
    api, send = slack.api, slack.sender
    await send.command('start "Tides" The keeper climbed the stairs.', user=ALICE)
    ts, passage = await bot_passage(api, 1)
    story_id, passage_id = rating_value(passage).split(":")
    bad = [
        ("up", story_id),
        ("down", f"{story_id}:²"),
        ("up", f"{story_id}:{'1' * 5000}"),
        ("continue", f"1:{passage_id}"),
    ]
    for seen, (action, value) in enumerate(bad):
        assert (await send.click(action, value, user=BOB, channel=CHANNEL, message_ts=ts)).status == 200
        assert await answer(slack, BOB, seen) == NOT_OUR_BUTTON
    status = await send.command("status", user=BOB)
    assert "passage" in shown(json.loads(status.body)) and "👍" not in shown(json.loads(status.body))


async def test_the_buttons_work_for_a_new_app_on_the_same_database(tmp_path: Path, fake: FakeOpenAI) -> None:
    api = FakeSlack(users={ALICE: {"name": "alice", "profile": {"display_name": "Alice"}}})
    runner = await start_fake_slack(api)
    fake.pieces = lambda body: PIECES
    config = slack_config(tmp_path, api, fake)
    try:
        async with slack_http_server(config, host="127.0.0.1", port=0) as server:
            await SignedSender(server.url, api.url).command('start "Tides" The keeper waited.', user=ALICE)
            ts, passage = await bot_passage(api, 1)
        async with slack_http_server(config, host="127.0.0.1", port=0) as server:  # a restart
            send = SignedSender(server.url, api.url)
            await send.click("down", rating_value(passage), user=BOB, channel=CHANNEL, message_ts=ts)
            await api.wait_for(lambda: shown(api.messages[(CHANNEL, ts)]).endswith("asked by Alice · 👍 0 · 👎 1"))
            [told] = await api.wait_for(lambda: api.of("chat.postEphemeral"))
            assert shown(told.args) == "You rated passage 2 👎 (👍 0 · 👎 1)."
    finally:
        await runner.cleanup()
