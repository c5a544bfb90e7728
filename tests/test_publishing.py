"""Publishing and sharing (``bot/publishing.py``, ``bot/share_links.py``): who may put a story in
the web archive, the signed links that open one story, and the archive's address in the answers
of ``/story end`` and ``export``. The rules on SQLite and PostgreSQL; then Discord (the real
discord.py client against the fake Discord), Slack (the real Bolt app against the mock Slack Web
API) and the real ``storybot console``."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from bot import commands as c
from bot.sessions import SessionManager
from bot.share_links import SECRET_NAME, link_secret, share_path, share_token, story_path, token_matches
from storage.database import Database
from storage.models import ModerationEntry, SiteSecret, Story
from tests import test_discord, test_slack
from tests.conftest import Clock, make_config, tiny_model_env
from tests.fake_discord import FakeDiscord
from tests.test_console import run_console
from tests.test_sessions import ALICE, BOB, CHANNEL, MOD, run
from tests.test_slack import Slack, ephemerals, posts

SITE = "https://stories.example.org"
OTHER = CHANNEL.__class__("test", "guild", "elsewhere")

discord_fake = test_discord.fake  # the fake Discord
slack = test_slack.slack  # the running Slack app and Slack's sides of it,
fake = test_slack.fake  # ... and its model


# ------------------------------------------------------------------------- the grammar


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("publish", c.Publish()),
        ("/story publish 12", c.Publish(12)),
        ("publish without-authors", c.Publish(authors=False)),
        ("publish WITHOUT-AUTHORS #3", c.Publish(3, authors=False)),
        ("unpublish", c.Unpublish()),
        ("unpublish #4", c.Unpublish(4)),
        ("share", c.Share()),
        ("share 5", c.Share(5)),
        ("share revoke", c.Share(revoke=True)),
        ("share revoke 5", c.Share(5, revoke=True)),
    ],
)
def test_the_grammar_reads_an_optional_story_id_and_its_word(text: str, command: c.Command) -> None:
    assert c.parse(text) == command


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("publish 0", "A story id is a whole number from 1 up, like 12 (got '0'). Usage: /story publish"),
        ("publish 1 2", "Give at most one story id. Usage: /story publish [story id] [without-authors]"),
        ("publish without-author", "Unexpected 'without-author'. Did you mean without-authors? Usage: /story publish"),
        ("publish without-authors without-authors", "without-authors is given twice."),
        ("unpublish later", "Give one story id, a number like 12 (see /story list), or none."),
        ("share revok", "Unexpected 'revok'. Did you mean revoke? Usage: /story share [story id] [revoke]"),
    ],
)
def test_the_grammar_refuses_anything_else_in_one_line(text: str, message: str) -> None:
    with pytest.raises(c.ParseError) as refused:
        c.parse(text)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


def test_only_share_is_answered_privately() -> None:
    assert [kind().shows_privately for kind in (c.Publish, c.Unpublish, c.Share)] == [False, False, True]


# ------------------------------------------------------------------------- the links


def test_a_share_token_is_signed_unpadded_and_checked_in_constant_time() -> None:
    secret = b"s3cret"
    token = share_token(secret, 7, "key")
    assert len(token) >= 22 and "=" not in token and token == share_token(secret, 7, "key")
    assert token_matches(secret, 7, "key", token)
    assert not token_matches(secret, 8, "key", token)  # another story
    assert not token_matches(secret, 7, "new-key", token)  # revoked, then shared again
    assert not token_matches(b"other", 7, "key", token)  # another site's secret
    assert not token_matches(secret, 7, None, token)  # revoked
    assert not token_matches(secret, 7, "key", token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert not token_matches(secret, 7, "key", token + "é")
    assert share_path(7, token) == f"/shared/7/{token}" and story_path(7) == "/stories/7"


# ------------------------------------------------------------------------- the rules


@pytest.fixture
async def site(tmp_path: Path, tiny_model_dir: Path, database_url: str, clock: Clock) -> AsyncIterator[SessionManager]:
    """The rules on each database, with the archive at ``SITE`` (set in the config file, with a slash)."""
    (tmp_path / "storybot.toml").write_text(f'[web]\npublic_url = "{SITE}/"\n')
    config = make_config(tmp_path, tiny_model_env(database_url, tiny_model_dir))
    db = Database(config.database.url)
    await db.migrate()
    try:
        yield SessionManager(db, config, clock=clock)
    finally:
        await db.close()


async def story_row(rules: SessionManager, story_id: int) -> Story:
    async with rules.db.read() as tx:
        story = await tx.get(Story, story_id)
    assert story is not None
    return story


async def audit(rules: SessionManager) -> list[tuple[str, int | None, str, str]]:
    async with rules.db.read() as tx:
        entries = (await tx.execute(select(ModerationEntry).order_by(ModerationEntry.id))).scalars()
        return [(e.action, e.story_id, e.actor_name, e.detail) for e in entries if e.action != "end"]


async def secret_of(rules: SessionManager) -> bytes:
    async with rules.db.write() as tx:
        return await link_secret(tx, rules.config.web.secret)


def shared_token(answer: str, story_id: int) -> str:
    """The token of the link a share answer gives for ``story_id``."""
    marker = f"/shared/{story_id}/"
    return answer.split(marker, 1)[1].split()[0]


async def test_the_starter_or_a_moderator_publishes_and_unpublishes_with_an_audit_line(
    site: SessionManager, clock: Clock
) -> None:
    await run(site, ALICE, '/story start "Harbour" mode:free The tide came in.')
    refused = await run(site, BOB, "/story publish")
    assert not refused.ok and refused.private
    assert refused.text == "Only Alice (who started the story) or a moderator can publish the story."
    assert (await story_row(site, 1)).published_at is None and await audit(site) == []

    published = await run(site, ALICE, "/story publish")
    assert published.ok and not published.private
    assert published.text == (
        f"📚 Alice published “Harbour” (story #1): once it is finished, anyone can read it in the archive. "
        f"{SITE}/stories/1"
    )
    story = await story_row(site, 1)
    assert story.published_at == clock.now and story.published_by_id == ALICE.user_id and story.publish_authors

    again = await run(site, MOD, "/story publish 1")
    assert not again.ok and again.text == "“Harbour” (story #1) is already published; /story unpublish 1 takes it out."
    assert not (await run(site, BOB, "/story unpublish")).ok
    unpublished = await run(site, MOD, "/story unpublish")
    assert unpublished.ok and not unpublished.private
    assert unpublished.text == "Mo took “Harbour” (story #1) out of the archive."
    assert (await story_row(site, 1)).published_at is None
    not_published = await run(site, MOD, "/story unpublish")
    assert not_published.text == "“Harbour” (story #1) is not published; /story publish 1 lists it in the archive."
    assert await audit(site) == [("published", 1, "Alice", ""), ("unpublished", 1, "Mo", "")]


async def test_a_finished_story_of_the_channel_is_published_by_its_id(site: SessionManager) -> None:
    await run(site, ALICE, '/story start "One" mode:free The first.')
    await run(site, ALICE, "/story end")
    await run(site, BOB, '/story start "Two" mode:free The second.')
    await run(site, BOB, '/story start "Elsewhere" mode:free Far off.', OTHER)
    assert not (await run(site, BOB, "/story publish 1")).ok  # Bob started story 2, not 1
    published = await run(site, MOD, "/story publish 1 without-authors")
    assert published.ok and published.story_id == 1
    assert "“One” (story #1) in the archive, without who wrote each passage" in published.text
    one, two = await story_row(site, 1), await story_row(site, 2)
    assert one.published_at is not None and not one.publish_authors and two.published_at is None

    changed = await run(site, ALICE, "/story publish 1")
    assert changed.text == (
        f"📚 Alice changed how the archive shows “One” (story #1): now with who wrote each passage. {SITE}/stories/1"
    )
    assert (await story_row(site, 1)).publish_authors
    listed = (await run(site, BOB, "/story list")).text
    assert "#1 “One” — rated general, finished " in listed and listed.split("\n")[1].endswith(", in the web archive")
    elsewhere = await run(site, MOD, "/story publish 3")
    assert not elsewhere.ok and elsewhere.text == "Story #3 is not in this channel's archive. See /story list."
    missing = await run(site, MOD, "/story unpublish 99")
    assert not missing.ok and "\n" not in missing.text
    assert (await story_row(site, 3)).published_at is None
    assert await audit(site) == [
        ("published", 1, "Mo", "without authors"),
        ("published", 1, "Alice", ""),
    ]


async def test_without_a_running_story_the_latest_finished_one_is_meant(site: SessionManager) -> None:
    nothing = await run(site, ALICE, "/story publish")
    assert nothing.text == 'There is no story here to publish yet. Start one with /story start "Title".'
    await run(site, ALICE, '/story start "One" mode:free The first.')
    await run(site, ALICE, "/story end")
    await run(site, ALICE, '/story start "Two" mode:free The second.')
    await run(site, ALICE, "/story end")
    assert "“Two” (story #2)" in (await run(site, ALICE, "/story publish")).text
    assert "“Two” (story #2)" in (await run(site, BOB, "/story share")).text


async def test_anyone_gets_a_signed_link_which_revoking_stops(site: SessionManager) -> None:
    await run(site, ALICE, '/story start "Harbour" mode:free The tide came in.')
    shared = await run(site, BOB, "/story share")
    assert shared.ok and shared.private
    token = shared_token(shared.text, 1)
    assert shared.text == (
        f"🔗 A link that opens “Harbour” (story #1) to whoever you give it, published or not: "
        f"{SITE}/shared/1/{token}\nIt works until Alice or a moderator types /story share 1 revoke."
    )
    secret = await secret_of(site)
    story = await story_row(site, 1)
    assert token_matches(secret, 1, story.share_key, token)
    assert shared_token((await run(site, MOD, "/story share 1")).text, 1) == token  # one link for everyone

    refused = await run(site, BOB, "/story share revoke")
    assert not refused.ok and refused.text == (
        "Only Alice (who started the story) or a moderator can revoke its share links."
    )
    revoked = await run(site, ALICE, "/story share revoke")
    assert revoked.ok and revoked.private
    assert revoked.text == "Every share link of “Harbour” (story #1) stopped working; /story share 1 makes a new one."
    assert (await story_row(site, 1)).share_key is None and not token_matches(secret, 1, None, token)
    assert (await run(site, ALICE, "/story share revoke")).text == "“Harbour” (story #1) has no share links to revoke."

    renewed = shared_token((await run(site, BOB, "/story share")).text, 1)
    key = (await story_row(site, 1)).share_key
    assert renewed != token and token_matches(secret, 1, key, renewed) and not token_matches(secret, 1, key, token)
    assert await audit(site) == [
        ("shared", 1, "Bob", ""),
        ("unshared", 1, "Alice", ""),
        ("shared", 1, "Bob", ""),
    ]


async def test_unpublishing_says_that_share_links_still_open_the_story(site: SessionManager) -> None:
    await run(site, ALICE, '/story start "Harbour" mode:free The tide came in.')
    await run(site, ALICE, "/story publish")
    await run(site, BOB, "/story share")
    assert (await run(site, ALICE, "/story unpublish")).text == (
        "Alice took “Harbour” (story #1) out of the archive. Links made with /story share still open it; "
        "/story share 1 revoke stops them."
    )


async def test_the_site_makes_its_secret_once_and_keeps_it(site: SessionManager) -> None:
    first = await secret_of(site)
    assert len(first) >= 32 and await secret_of(site) == first
    async with site.db.read() as tx:
        assert [row.name for row in (await tx.execute(select(SiteSecret))).scalars()] == [SECRET_NAME]
    async with site.db.write() as tx:
        assert await link_secret(tx, "configured") == b"configured"


async def test_a_configured_secret_signs_the_links(tmp_path: Path, tiny_model_dir: Path, database_url: str) -> None:
    """``STORYBOT_WEB_SECRET`` (a secret: never in the config's repr) signs, and nothing is stored."""
    env = {**tiny_model_env(database_url, tiny_model_dir), "STORYBOT_WEB_SECRET": "from-the-environment"}
    config = make_config(tmp_path, env)
    assert "from-the-environment" not in repr(config)
    rules = SessionManager(Database(config.database.url), config)
    await rules.db.migrate()
    try:
        await run(rules, ALICE, '/story start "Harbour" mode:free The tide came in.')
        shared = await run(rules, BOB, "/story share")
        assert shared.text.startswith("🔗 “Harbour” (story #1) opens at /shared/1/")
        assert "web.public_url is not set" in shared.text
        key = (await story_row(rules, 1)).share_key
        assert token_matches(b"from-the-environment", 1, key, shared_token(shared.text, 1))
        async with rules.db.read() as tx:
            assert (await tx.execute(select(SiteSecret))).first() is None
    finally:
        await rules.db.close()


async def test_end_and_export_name_the_archive_page_once_it_has_an_address(site: SessionManager) -> None:
    """The page, and what it waits for: the archive lists a story once it is finished and published."""
    page = f" In the archive: {SITE}/stories/1"
    await run(site, ALICE, '/story start "Harbour" mode:free The tide came in.')
    exported = await run(site, BOB, "/story export")
    assert exported.text.endswith(f" KB).{page} (readable there once finished and published: /story publish 1).")
    await run(site, ALICE, "/story publish")
    assert (await run(site, BOB, "/story export")).text.endswith(f" KB).{page} (readable there once finished).")
    assert (await run(site, ALICE, "/story end")).text.endswith(f"See it again with /story list.{page}")
    assert (await run(site, BOB, "/story export md 1")).text.endswith(f" KB).{page}")

    await run(site, ALICE, '/story start "Dunes" mode:free The wind rose.')
    ended = await run(site, ALICE, "/story end")
    assert ended.text.endswith(f"{SITE}/stories/2 (readable there once published: /story publish 2).")
    await run(site, ALICE, "/story publish 2")
    assert (await run(site, BOB, "/story export md 2")).text.endswith(f" KB). In the archive: {SITE}/stories/2")


async def test_without_an_address_end_and_export_say_nothing_of_the_archive(rules: SessionManager) -> None:
    await run(rules, ALICE, '/story start "Harbour" mode:free The tide came in.')
    assert (await run(rules, BOB, "/story export")).text.endswith(" KB).")
    assert (await run(rules, ALICE, "/story end")).text.endswith("See it again with /story list.")
    await run(rules, ALICE, "/story publish 1")
    assert (await run(rules, BOB, "/story export md 1")).text.endswith(" KB).")


async def test_a_refusal_changes_nothing(site: SessionManager) -> None:
    await run(site, ALICE, '/story start "Harbour" mode:free The tide came in.')
    before = await story_row(site, 1)
    for actor, text in [
        (BOB, "/story publish"),
        (BOB, "/story unpublish"),
        (MOD, "/story unpublish"),
        (BOB, "/story share revoke"),
        (MOD, "/story share 7"),
        (MOD, "/story publish 7"),
    ]:
        refused = await run(site, actor, text)
        assert not refused.ok and refused.private and "\n" not in refused.text, text
    after = await story_row(site, 1)
    assert (
        (after.published_at, after.share_key, after.publish_authors)
        == (None, None, True)
        == (
            before.published_at,
            before.share_key,
            before.publish_authors,
        )
    )
    assert await audit(site) == []


async def test_a_mature_story_is_never_published_the_archive_asks_nobodys_age(site: SessionManager) -> None:
    adults = replace(CHANNEL, age_restricted=True)
    assert (await run(site, ALICE, '/story start "Night" rating:mature mode:free The bar was closing.', adults)).ok
    refused = await run(site, ALICE, "/story publish", adults)
    assert not refused.ok and "is rated mature, and the web archive asks nobody's age" in refused.text
    assert "/story share 1" in refused.text
    assert (await story_row(site, 1)).published_at is None and await audit(site) == []


# ------------------------------------------------------------------------- the platforms


@pytest.fixture
def archive_address(tmp_path: Path) -> str:
    """The archive's address, in the config file the platform's bot loads (written before it starts)."""
    (tmp_path / "storybot.toml").write_text(f'[web]\npublic_url = "{SITE}"\n')
    return SITE


async def test_discord_has_the_archive_one_level_down(
    tmp_path: Path, archive_address: str, discord_fake: FakeDiscord, tiny_model_dir: Path
) -> None:
    fake = discord_fake
    config = test_discord.discord_config(tmp_path, fake, test_discord.local_model(tiny_model_dir))
    assert config.web.public_url == archive_address
    async with test_discord.running(config, fake):
        alice, bob = test_discord.ALICE, test_discord.BOB
        await fake.answered(await fake.slash(alice, "start", title="Harbour", mode="free", opening="The tide."))
        [(refused, private)] = await fake.answered(await fake.slash(bob, "archive", "publish"))
        assert private and refused == "⚠️ Only Alice (who started the story) or a moderator can publish the story."
        [(published, private)] = await fake.answered(await fake.slash(alice, "archive", "publish", authors=False))
        assert not private and published == (
            "📚 Alice published “Harbour” (story #1), without who wrote each passage: once it is finished, anyone "
            f"can read it in the archive. {SITE}/stories/1"
        )
        [(shared, private)] = await fake.answered(await fake.slash(bob, "archive", "share"))
        assert private and f"{SITE}/shared/1/" in shared
        [(ended, _)] = await fake.answered(await fake.slash(alice, "end"))
        assert ended.endswith(f"In the archive: {SITE}/stories/1")
        [(listed, private)] = await fake.answered(await fake.slash(bob, "archive", "list"))
        assert private and "#1 “Harbour”" in listed
        [(revoked, private)] = await fake.answered(await fake.slash(alice, "archive", "share", story_id=1, revoke=True))
        assert private and revoked.startswith("Every share link of “Harbour” (story #1) stopped working")
        [(unpublished, private)] = await fake.answered(await fake.slash(alice, "archive", "unpublish", story_id=1))
        assert not private and unpublished == "Alice took “Harbour” (story #1) out of the archive."
    assert test_discord.rows(tmp_path, "SELECT published_at, share_key, publish_authors FROM stories") == [
        (None, None, 0)
    ]
    assert test_discord.rows(tmp_path, "SELECT action FROM moderation_log ORDER BY id") == [
        ("published",),
        ("shared",),
        ("end",),
        ("unshared",),
        ("unpublished",),
    ]


@pytest.fixture
async def slack_site(archive_address: str, slack: Slack) -> Slack:
    """The Slack app, started after its config file names the archive's address."""
    return slack


async def test_slack_publishes_in_the_channel_and_shares_privately(slack_site: Slack, tmp_path: Path) -> None:
    api, send = slack_site.api, slack_site.sender
    await send.command('start mode:free "Tide" The tide was out.', user=test_slack.ALICE)
    await send.command("publish", user=test_slack.ALICE)
    announced = f"📚 Alice published “Tide” (story #1): once it is finished, anyone can read it in the archive. {SITE}/stories/1"
    await api.wait_for(lambda: [text for text in posts(api) if text == announced])
    await send.command("share", user=test_slack.BOB)
    [link] = await api.wait_for(lambda: [text for text in ephemerals(slack_site, test_slack.BOB) if "🔗" in text])
    assert f"{SITE}/shared/1/" in link
    await send.command("share revoke", user=test_slack.BOB)
    [refused] = await api.wait_for(lambda: [t for t in ephemerals(slack_site, test_slack.BOB) if "revoke its" in t])
    assert refused.endswith("Only Alice (who started the story) or a moderator can revoke its share links.")
    with sqlite3.connect(tmp_path / "stories.db") as db:
        [(published_at, share_key)] = db.execute("SELECT published_at, share_key FROM stories").fetchall()
    assert published_at is not None and share_key is not None


def test_the_console_publishes_shares_and_ends_with_the_link(tmp_path: Path, tiny_model_dir: Path) -> None:
    script = "\n".join(
        [
            '/story start "Dunes" mode:free The wind rose.',
            "/story publish without-authors",
            "/story share",
            "/story end",
            "/story share revoke",
        ]
    )
    done = run_console(tmp_path, tiny_model_dir, script + "\n", STORYBOT_WEB_PUBLIC_URL=SITE)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "📚 Alice published “Dunes” (story #1), without who wrote each passage: once it is finished" in out
    assert f"{SITE}/shared/1/" in out
    assert f"See it again with /story list. In the archive: {SITE}/stories/1\n" in out
    assert "Every share link of “Dunes” (story #1) stopped working" in out
    with sqlite3.connect(tmp_path / "console.db") as db:
        assert db.execute("SELECT publish_authors, share_key FROM stories").fetchall() == [(0, None)]
