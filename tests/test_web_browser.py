"""The web archive in a real browser: Debian's chromium, driven by Playwright for Python.

One archive for the module (the real server on a loopback port, over a SQLite file), with stories
written through the rule book, and two imported (``import_story``): the export tests' tricky story,
and a hostile one of 5,000 passages. Skipped, with the reason, where Playwright or chromium is
missing (``make test`` installs chromium where apt allows; Playwright comes with the dev extras).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lxml import etree
from markdown_it import MarkdownIt

from adapters.web.server import web_server
from bot import commands as c
from bot.export.archive import import_story
from bot.export.model import ExportPassage, ExportStory
from bot.export.text import text_width
from bot.identity import Actor, ChannelRef
from bot.sessions import SessionManager
from storage.database import Database
from storage.models import utcnow
from tests.conftest import make_config, sqlite_url
from tests.export_fixtures import START, tricky_story
from tests.test_export import _Collect, _epub_structure, check_golden, epub_dump, posix_dir
from tests.test_sessions import ALICE, BOB
from tests.test_web import share, write_story

async_api = pytest.importorskip("playwright.async_api", reason="Playwright is not installed (pip install playwright)")
CHROMIUM = os.environ.get("STORYBOT_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed (apt-get install chromium)"),
    pytest.mark.asyncio(loop_scope="module"),
]

HOSTILE_PASSAGES = 5_000
HOSTILE_TITLE = "<script>window.pwned = 1</script> @everyone \u202eevil title"
LONG_WORD = "Supercalifragilistic" * 20  # 400 letters without a space
PHONE = {"width": 375, "height": 700}
# What the story's texts try, one after another.
HOSTILE_TEXTS = (
    "<script>window.pwned = 1</script> @everyone, the door is open.",
    '<img src=x onerror="window.pwned = 1"> @here <b>bold?</b> &amp; &lt;',
    "שלום עולם \u202eevil override\u202c and on, and on.",
    f"{LONG_WORD} and https://example.com/{'a' * 300}",
    "كان يا ما كان، في قديم الزمان، منارة على الساحل.",
    "Plain words about a lighthouse keeper and her spiral stairs.",
)


def hostile_story() -> ExportStory:
    """5,000 passages of markup, mentions, right-to-left overrides and unbroken words, by people
    whose names are markup too, and a chapter mark halfway."""
    names = (("u-everyone", "@everyone"), ("u-script", "<script>alert(1)</script>"), ("u-layla", "ليلى"))
    passages = []
    for number in range(1, HOSTILE_PASSAGES + 1):
        author_id, name = names[number % len(names)]
        text = "Chapter 2: <i>The Storm</i>" if number == HOSTILE_PASSAGES // 2 else HOSTILE_TEXTS[number % 6]
        passages.append(
            ExportPassage(number, "human", author_id, name, text, "canonical", START + timedelta(seconds=number))
        )
    return ExportStory(
        title=HOSTILE_TITLE,
        genre="<i>horror</i>",
        language="en",
        mode="free",
        status="finished",
        starter_id="u-everyone",
        starter_name="@everyone",
        created_at=START,
        finished_at=START + timedelta(days=1),
        channel=ChannelRef("console", "local", "hostile"),
        passages=tuple(passages),
    )


@dataclass
class Archive:
    url: str
    published: int
    unpublished: int
    shared: str  # a share link's path
    tricky: int
    hostile: int
    browser: Any


async def _imported(db: Database, rules: SessionManager, story: ExportStory) -> int:
    """``story`` imported and published by its starter."""
    story_id = await import_story(db, story, now=utcnow())
    published = await rules.handle(story.channel, Actor(story.starter_id, story.starter_name), c.Publish(story_id))
    assert published.ok, published.text
    return story_id


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def archive(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Archive]:
    folder = tmp_path_factory.mktemp("web-browser")
    env = {
        "STORYBOT_DATABASE_URL": sqlite_url(folder),
        "STORYBOT_STORY_PASSAGES_PER_MINUTE": "0",
        "STORYBOT_EXPORT_CHAPTER_PASSAGES": "2",  # as the EPUB golden file was made
    }
    config = make_config(folder, env)
    db = Database(config.database.url)
    await db.migrate()
    rules = SessionManager(db, config)
    try:
        published = await write_story(
            rules,
            "The Lighthouse Keeper",
            [(ALICE, "She climbed the spiral stairs at dusk."), (BOB, "The lamp was cold.")],
        )
        unpublished = await write_story(rules, "Private Diary", [(ALICE, "Nobody reads this.")], publish=False)
        secret = await write_story(rules, "Shared Secret", [(BOB, "Only for friends.")], publish=False)
        link = await share(rules, secret)
        tricky = await _imported(db, rules, tricky_story())
        hostile = await _imported(db, rules, hostile_story())
        async with web_server(config, host="127.0.0.1", port=0) as port, async_api.async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM)
            try:
                yield Archive(f"http://127.0.0.1:{port}", published, unpublished, link, tricky, hostile, browser)
            finally:
                await browser.close()
    finally:
        await db.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(archive: Archive) -> AsyncIterator[Any]:
    """A fresh browser tab, failing the test on any script error, console error or dialog."""
    context = await archive.browser.new_context(accept_downloads=True)
    tab = await context.new_page()
    problems: list[str] = []
    tab.on("console", lambda message: message.type == "error" and problems.append(f"console: {message.text}"))
    tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    tab.on("dialog", lambda dialog: problems.append(f"dialog: {dialog.message}"))
    tab.problems = problems
    yield tab
    await context.close()


async def no_horizontal_scroll(tab: Any) -> bool:
    return bool(await tab.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


async def test_the_home_page_lists_the_published_story_and_not_the_unpublished(archive: Archive, page: Any) -> None:
    answer = await page.goto(archive.url + "/")
    assert answer.status == 200
    titles = await page.locator("li.card h2").all_inner_texts()
    assert "The Lighthouse Keeper" in titles and "Private Diary" not in titles and "Shared Secret" not in titles
    await page.click("text=The Lighthouse Keeper")
    assert page.url == f"{archive.url}/stories/{archive.published}"
    assert "She climbed the spiral stairs at dusk." in await page.inner_text("article")
    unpublished = await page.goto(f"{archive.url}/stories/{archive.unpublished}")
    assert unpublished.status == 404 and await page.inner_text("h1") == "Not found"


async def test_a_shared_link_opens_its_story_and_a_tampered_one_gets_404(archive: Archive, page: Any) -> None:
    opened = await page.goto(archive.url + archive.shared)
    assert opened.status == 200 and "Only for friends." in await page.inner_text("article")
    token = archive.shared.rsplit("/", 1)[1]
    tampered = archive.shared[: -len(token)] + token[::-1]
    refused = await page.goto(archive.url + tampered)
    assert refused.status == 404 and "Only for friends." not in await page.content()


async def test_a_hostile_story_renders_escaped_with_no_console_errors(archive: Archive, page: Any) -> None:
    answer = await page.goto(f"{archive.url}/stories/{archive.hostile}")
    assert answer.status == 200
    assert await page.inner_text("h1") == HOSTILE_TITLE
    assert await page.title() == f"{HOSTILE_TITLE} · storybot archive"
    assert await page.evaluate("document.scripts.length") == 0 and await page.evaluate("window.pwned") is None
    assert await page.locator("article img, article i, article b").count() == 0
    paragraphs = page.locator("section.chapter p")
    assert await paragraphs.count() == HOSTILE_PASSAGES - 1  # the chapter mark is a heading
    first = await paragraphs.nth(0).inner_text()
    assert first == "<script>alert(1)</script>: " + HOSTILE_TEXTS[1]
    sixth = await paragraphs.nth(5).inner_text()  # passage 6: @everyone's script
    assert sixth == "@everyone: " + HOSTILE_TEXTS[0]
    assert await page.locator("section.chapter h2", has_text="Chapter 2: <i>The Storm</i>").count() == 1
    hebrew = paragraphs.nth(1)
    assert await hebrew.evaluate("p => getComputedStyle(p).direction") == "rtl"  # dir="auto" reads it right
    assert page.problems == []  # no script ran, no style was refused, nothing failed


async def test_a_phone_sized_screen_never_scrolls_sideways(archive: Archive) -> None:
    context = await archive.browser.new_context(viewport=PHONE, is_mobile=True, device_scale_factor=2)
    try:
        tab = await context.new_page()
        for path in (
            "/",
            f"/stories/{archive.hostile}",
            f"/stories/{archive.tricky}",
            archive.shared,
            "/search?q=lighthouse",
            "/stories/999999",
            "/w/console/local/hostile",
        ):
            await tab.goto(archive.url + path)
            assert await no_horizontal_scroll(tab), path
    finally:
        await context.close()


async def test_print_leaves_out_what_only_a_screen_needs(archive: Archive, page: Any) -> None:
    await page.goto(f"{archive.url}/stories/{archive.tricky}")
    await page.emulate_media(media="print")
    for hidden in ("header.site", "footer.site", "nav.downloads"):
        assert await page.locator(hidden).evaluate("e => getComputedStyle(e).display") == "none", hidden
    assert await page.locator("article h1").is_visible()


async def test_every_download_link_gives_a_file_the_export_tests_accept(archive: Archive, page: Any) -> None:
    await page.goto(f"{archive.url}/stories/{archive.tricky}")
    links = page.locator("nav.downloads a")
    assert await links.all_inner_texts() == ["md", "txt", "html", "epub"]  # (JSON holds platform ids: not public)
    files: dict[str, bytes] = {}
    for index in range(await links.count()):
        async with page.expect_download() as started:
            await links.nth(index).click()
        download = await started.value
        files[download.suggested_filename.rsplit(".", 1)[1]] = Path(await download.path()).read_bytes()
    # The same files the export tests hold as golden (the story round-trips through the database).
    check_golden("tricky.md", files["md"])
    check_golden("tricky.txt", files["txt"])
    check_golden("tricky.html", files["html"])
    check_golden("tricky.epub.txt", epub_dump(files["epub"]))
    assert MarkdownIt().parse(files["md"].decode())[0].type == "heading_open"
    assert max(text_width(line) for line in files["txt"].decode().splitlines()) <= 80
    seen = _Collect()
    seen.feed(files["html"].decode())
    assert "script" not in seen.tags
    book, _opf = _epub_structure(files["epub"])
    for name in book.namelist():
        if name.endswith(".xhtml"):
            etree.fromstring(book.read(name))
    assert posix_dir(book)


async def test_search_finds_a_phrase(archive: Archive, page: Any) -> None:
    await page.goto(archive.url + "/")
    await page.fill("input[name=q]", '"spiral stairs"')
    await page.press("input[name=q]", "Enter")
    await page.wait_for_url("**/search?q=*")
    results = page.locator("li.card")
    titles = await results.locator("h2").all_inner_texts()
    assert titles[:1] == ["The Lighthouse Keeper"] or "The Lighthouse Keeper" in titles
    assert "Private Diary" not in titles
    assert await results.locator("mark").count() >= 1
    assert page.problems == []
