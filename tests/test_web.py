"""The web archive (``storybot web``) over HTTP, on SQLite and PostgreSQL: what it lists and to whom,
share links, 404s and 400s, downloads, branches, search, the Atom feed and the security headers.

Stories are written through the real rule book (``SessionManager``: start, add, hide, branch,
end, publish, share); the archive is the real aiohttp server on a loopback port, asked with a
real HTTP client. The browser's view is ``tests/test_web_browser.py``.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import re
import signal
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
from aiohttp import ClientResponse, ClientSession
from sqlalchemy import text

from adapters.web.app import SECURITY_HEADERS
from adapters.web.cache import MadePage, PageCache
from adapters.web.server import web_server
from bot import commands as c
from bot.identity import Actor, ChannelRef
from bot.sessions import SessionManager
from storage import search
from storage.database import Database
from tests.conftest import is_postgres, sqlite_url
from tests.loopback import free_port
from tests.test_console import storybot_command
from tests.test_sessions import ALICE, BOB, CHANNEL, MOD

ATOM = "{http://www.w3.org/2005/Atom}"
OTHER_CHANNEL = ChannelRef("test", "guild", "poetry")
OTHER_GUILD = ChannelRef("test", "elsewhere", "general")
SHARED = re.compile(r"/shared/\d+/[A-Za-z0-9_-]+")
HOSTILE_TITLE = "<script>alert('title')</script> @everyone \u202eevil"


@dataclass
class Site:
    """The rules that write the stories, and the archive serving the same database."""

    rules: SessionManager
    url: str
    http: ClientSession

    async def get(self, path: str) -> tuple[ClientResponse, str]:
        async with self.http.get(self.url + path, allow_redirects=False) as response:
            return response, await response.text(errors="replace")


@pytest.fixture
async def site(rules: SessionManager) -> AsyncIterator[Site]:
    """The archive over the rules' database (each database in turn), on a free loopback port."""
    async with web_server(rules.config, host="127.0.0.1", port=0) as port, ClientSession() as http:
        yield Site(rules, f"http://127.0.0.1:{port}", http)
    if is_postgres(rules.config.database.url):
        await drop_search_index(rules.config.database.url)


async def drop_search_index(url: str) -> None:
    """PostgreSQL's test database lives for the whole run: leave its schema as the migrations made it."""
    db = Database(url)
    try:
        async with db.engine.begin() as connection:
            await search.drop(connection)
    finally:
        await db.close()


async def write_story(
    rules: SessionManager,
    title: str,
    lines: Sequence[tuple[Actor, str]],
    *,
    channel: ChannelRef = CHANNEL,
    genre: str | None = None,
    end: bool = True,
    publish: bool = True,
    authors: bool = True,
) -> int:
    """A story written through the rules (free mode: people only, no bot turn), ended and
    published as asked; returns its id."""
    started = await rules.handle(channel, ALICE, c.Start(title=title, genre=genre, mode=c.Mode.FREE))
    assert started.ok, started.text
    story_id = started.story_id
    assert story_id is not None
    for actor, line in lines:
        added = await rules.handle(channel, actor, c.Add(line))
        assert added.ok, added.text
    if end:
        ended = await rules.handle(channel, ALICE, c.End())
        assert ended.ok, ended.text
    if publish:
        published = await rules.handle(channel, ALICE, c.Publish(story_id, authors=authors))
        assert published.ok, published.text
    return story_id


async def share(rules: SessionManager, story_id: int, channel: ChannelRef = CHANNEL) -> str:
    """The path of the link ``/story share`` gives for ``story_id``."""
    answer = await rules.handle(channel, BOB, c.Share(story_id))
    found = SHARED.search(answer.text)
    assert found, answer.text
    return found[0]


class Page(HTMLParser):
    """A page as a browser's tokenizer reads it: its start tags, text, and each link."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.links: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.links += [value for name, value in attrs if name == "href" and value]

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def words(self) -> str:
        return " ".join("".join(self.text).split())


# --------------------------------------------------------------------------- what is listed


async def test_only_finished_published_stories_are_listed_and_readable(site: Site) -> None:
    rules = site.rules
    public = await write_story(rules, "The Lighthouse", [(ALICE, "The lamp was cold."), (BOB, "The sea was loud.")])
    private = await write_story(rules, "Private Diary", [(ALICE, "Nobody reads this.")], publish=False)
    running = await write_story(rules, "Still Going", [(BOB, "It goes on.")], end=False)  # published, running

    home, body = await site.get("/")
    assert home.status == 200 and home.content_type == "text/html"
    page = Page(body)
    assert "The Lighthouse" in page.words
    assert "Private Diary" not in body and "Still Going" not in body
    assert f"/stories/{public}" in page.links and f"/stories/{private}" not in page.links
    assert "Alice, Bob" in page.words and "8 words" in page.words

    readable, _ = await site.get(f"/stories/{public}")
    missing, missing_body = await site.get("/stories/999999")
    assert readable.status == 200 and missing.status == 404
    for hidden in (private, running):
        answer, hidden_body = await site.get(f"/stories/{hidden}")
        assert answer.status == 404 and hidden_body == missing_body  # nothing says it exists
        download, _ = await site.get(f"/stories/{hidden}/download/md")
        assert download.status == 404


async def test_a_workspace_and_a_channel_list_their_own_stories(site: Site) -> None:
    rules = site.rules
    await write_story(rules, "General One", [(ALICE, "One.")])
    await write_story(rules, "Poetry One", [(ALICE, "Two.")], channel=OTHER_CHANNEL)
    await write_story(rules, "Far Away", [(ALICE, "Three.")], channel=OTHER_GUILD)
    await write_story(rules, "Unlisted", [(ALICE, "Four.")], channel=ChannelRef("test", "quiet", "x"), publish=False)

    _, guild = await site.get("/w/test/guild")
    assert "General One" in guild and "Poetry One" in guild and "Far Away" not in guild
    _, poetry = await site.get("/w/test/guild/poetry")
    assert "Poetry One" in poetry and "General One" not in poetry
    _, elsewhere = await site.get("/w/test/elsewhere")
    assert "Far Away" in elsewhere
    for nowhere in (
        "/w/test/quiet",
        "/w/test/quiet/x",
        "/w/test/guild/nothing",
        "/w/nope/nope",
        "/w/test/" + "x" * 500,
    ):
        answer, _ = await site.get(nowhere)
        assert answer.status == 404, nowhere


async def test_the_home_page_is_paged_and_bad_parameters_are_400(site: Site) -> None:
    for n in range(23):
        await write_story(site.rules, f"Story {n:02}", [(ALICE, f"Passage {n}.")])
    _, first = await site.get("/")
    _, second = await site.get("/?page=2")
    assert "Story 22" in first and "Story 03" in first and "Story 02" not in first  # newest first, 20 a page
    assert "Story 02" in second and "Story 00" in second and "Page 2" in Page(second).words
    assert 'href="?page=2"' in first and 'href="?page=1"' in second and 'href="?page=3"' not in second
    past, _ = await site.get("/?page=3")
    assert past.status == 404
    for bad in ("0", "-1", "x", "1.5", "9999999", "", "%00"):
        answer, body = await site.get(f"/?page={bad}")
        assert answer.status == 400 and "<h1>Bad request</h1>" in body, bad
    search_too_long, _ = await site.get("/search?q=" + "a" * 201)
    assert search_too_long.status == 400


# --------------------------------------------------------------------------- a story's page


async def test_a_story_page_shows_contributors_authors_chapters_and_downloads(site: Site) -> None:
    rules = site.rules
    story_id = await write_story(
        rules,
        "The Storm",
        [(ALICE, "The wind rose."), (BOB, "Chapter 2: Landfall"), (BOB, "They reached the shore at last.")],
        genre="adventure",
    )
    answer, body = await site.get(f"/stories/{story_id}")
    page = Page(body)
    assert answer.status == 200
    assert "The Storm" in page.words and "adventure" in page.words and "Rating: General" in page.words
    assert "Alice: 3 words" in page.words and "Bob: 6 words" in page.words  # the heading is no passage
    assert "Alice: The wind rose." in page.words and "Bob: They reached the shore at last." in page.words
    assert "Landfall" in page.words and "#chapter-2" in page.links
    downloads = [link for link in page.links if "/download/" in link]
    assert downloads == [f"/stories/{story_id}/download/{f}" for f in ("md", "txt", "html", "epub")]
    for link in downloads:
        file, _ = await site.get(link)
        assert file.status == 200, link
        assert (
            "attachment" in file.headers["Content-Disposition"] and "the-storm" in file.headers["Content-Disposition"]
        )
    markdown, text_ = await site.get(f"/stories/{story_id}/download/md")
    assert markdown.content_type == "text/markdown" and "**Alice:** The wind rose." in text_
    unknown, _ = await site.get(f"/stories/{story_id}/download/pdf")
    assert unknown.status == 404
    # The JSON export holds platform ids and the moderation log: for the channel, never the public.
    private, _ = await site.get(f"/stories/{story_id}/download/json")
    assert private.status == 404


async def test_a_story_published_without_authors_names_no_passage_s_author(site: Site) -> None:
    story_id = await write_story(site.rules, "Anonymous", [(ALICE, "Hello there."), (BOB, "General.")], authors=False)
    _, body = await site.get(f"/stories/{story_id}")
    page = Page(body)
    assert "Alice: Hello there." not in page.words and "Hello there." in page.words
    assert "Alice: 2 words" in page.words  # the contributors stay, as in an export without authors
    _, markdown = await site.get(f"/stories/{story_id}/download/md")
    assert "**Alice:**" not in markdown


async def test_hidden_passages_are_neither_shown_nor_found(site: Site) -> None:
    rules = site.rules
    started = await rules.handle(CHANNEL, ALICE, c.Start(title="Moderated", mode=c.Mode.FREE))
    await rules.handle(CHANNEL, ALICE, c.Add("A kind opening about marmalade."))
    await rules.handle(CHANNEL, BOB, c.Add("Something unkind about porcupines."))
    hidden = await rules.handle(CHANNEL, MOD, c.Hide(2))
    assert hidden.ok, hidden.text
    await rules.handle(CHANNEL, ALICE, c.End())
    await rules.handle(CHANNEL, ALICE, c.Publish(started.story_id))
    _, body = await site.get(f"/stories/{started.story_id}")
    assert "marmalade" in body and "porcupines" not in body
    _, found = await site.get("/search?q=porcupines")
    assert "Moderated" not in found and "No published story holds" in Page(found).words
    _, kind = await site.get("/search?q=marmalade")
    assert "Moderated" in kind


async def test_branches_are_listed_under_their_parent_and_name_it(site: Site) -> None:
    rules = site.rules
    parent = await write_story(rules, "Roots", [(ALICE, "One."), (BOB, "Two."), (ALICE, "Three.")], end=False)
    thread = ChannelRef("test", "guild", "general", "thread-1")
    made = await rules.handle(thread, BOB, c.Branch(2, from_story_id=parent))
    assert made.ok, made.text
    await rules.handle(thread, BOB, c.Add("A new way."))
    await rules.handle(thread, BOB, c.End())
    await rules.handle(CHANNEL, ALICE, c.End())
    _, parent_page = await site.get(f"/stories/{parent}")  # published while running: listed once ended
    assert f"/stories/{made.story_id}" not in Page(parent_page).links  # the branch is not published yet
    published = await rules.handle(thread, BOB, c.Publish(made.story_id))
    assert published.ok, published.text
    _, parent_page = await site.get(f"/stories/{parent}")
    _, branch_page = await site.get(f"/stories/{made.story_id}")
    assert f"/stories/{made.story_id}" in Page(parent_page).links and "from passage 2" in Page(parent_page).words
    assert (
        f"/stories/{parent}" in Page(branch_page).links
        and "Branched from Roots at passage 2" in Page(branch_page).words
    )
    # An unpublished parent is not named, nor linked: it is its channel's, not the web's.
    assert (await rules.handle(CHANNEL, ALICE, c.Unpublish(parent))).ok
    _, branch_page = await site.get(f"/stories/{made.story_id}")
    assert f"/stories/{parent}" not in Page(branch_page).links
    assert "Branched from a story that is not in the archive at passage 2" in Page(branch_page).words


# --------------------------------------------------------------------------- share links


async def test_a_share_link_opens_an_unpublished_story_and_nothing_else_does(site: Site) -> None:
    rules = site.rules
    story_id = await write_story(rules, "Just For Us", [(ALICE, "Our secret passage.")], publish=False)
    other = await write_story(rules, "Another", [(ALICE, "Elsewhere.")], publish=False)
    link = await share(rules, story_id)
    opened, body = await site.get(link)
    assert opened.status == 200 and "Our secret passage." in body and "only its share link opens" in body
    assert opened.headers["Cache-Control"] == "private, no-store" and "noindex" in opened.headers["X-Robots-Tag"]
    assert f"{link}/download/md" in Page(body).links
    file, markdown = await site.get(f"{link}/download/md")
    assert file.status == 200 and "Our secret passage." in markdown
    _, missing_body = await site.get("/stories/999999")
    token = link.rsplit("/", 1)[1]
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    for wrong in (
        f"/shared/{story_id}/{tampered}",
        f"/shared/{other}/{token}",  # another story's id
        f"/shared/999999/{token}",
        f"/shared/{story_id}/{token[:10]}",
        f"/shared/{story_id}/{tampered}/download/md",
        f"/shared/{story_id}/bad~token",
    ):
        answer, wrong_body = await site.get(wrong)
        assert answer.status == 404, wrong
        if "download" not in wrong and "~" not in wrong:
            assert wrong_body == missing_body
    home, _ = await site.get("/")
    assert "Just For Us" not in await home.text()
    revoked = await rules.handle(CHANNEL, ALICE, c.Share(story_id, revoke=True))
    assert revoked.ok, revoked.text
    after, _ = await site.get(link)
    assert after.status == 404


# --------------------------------------------------------------------------- hostile text, 404s, headers


async def test_hostile_text_is_escaped_everywhere(site: Site) -> None:
    rules = site.rules
    evil = Actor("u-evil", "<img src=x onerror=alert(1)> @everyone")
    story_id = await write_story(
        rules,
        HOSTILE_TITLE,
        [(evil, "<script>alert('passage')</script> @here & &amp;"), (BOB, "שלום \u202eעולם <b>bold</b>")],
        genre="<i>genre</i>",
    )
    for path in ("/", f"/stories/{story_id}", "/search?q=alert", "/w/test/guild"):
        answer, body = await site.get(path)
        page = Page(body)
        assert answer.status == 200, path
        assert not {"script", "img", "i", "b"} & set(page.tags), path
        assert "<script>alert('title')</script>" in page.words, path
    _, body = await site.get(f"/stories/{story_id}")
    page = Page(body)
    assert "<script>alert('passage')</script> @here & &amp;" in page.words
    assert "<img src=x onerror=alert(1)> @everyone" in page.words
    assert "<bdi>&lt;img src=x onerror=alert(1)&gt; @everyone</bdi>" in body  # a name cannot turn text around


async def test_errors_are_small_pages_and_never_500(site: Site) -> None:
    for path, status in (
        ("/nothing-here", 404),
        ("/stories/abc", 404),
        ("/stories/99999999999", 404),  # past PostgreSQL's integer: still just "not found"
        ("/stories/0", 404),
        ("/static/../bot/config.py", 404),
        ("/search?q=%22unclosed", 200),
        ("/search?q=AND+OR+NOT+*+(+)+%3A+-", 200),  # operator syntax is only words here
    ):
        answer, body = await site.get(path)
        assert answer.status == status, path
        assert answer.content_type == "text/html" and "</html>" in body, path
    async with site.http.post(site.url + "/") as posted:
        assert posted.status == 405 and "Not allowed" in await posted.text()


async def test_every_response_carries_the_security_headers(site: Site) -> None:
    story_id = await write_story(site.rules, "Headers", [(ALICE, "Safe.")])
    for path in ("/", f"/stories/{story_id}", f"/stories/{story_id}/download/epub", "/feed.atom", "/search?q=x",
                 "/static/style.css", "/nope", "/?page=0"):  # fmt: skip
        answer, _ = await site.get(path)
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers.get(name) == value, (path, name)
    assert "default-src 'none'" in SECURITY_HEADERS["Content-Security-Policy"]


# --------------------------------------------------------------------------- search


async def test_search_finds_words_and_phrases_in_published_stories_only(site: Site) -> None:
    rules = site.rules
    ocean = await write_story(rules, "Ocean Tales", [(ALICE, "The keeper climbed the spiral stairs at dusk.")])
    await write_story(rules, "Mountain Tales", [(BOB, "The spiral stairs of the dragon's keep were cold.")])
    await write_story(rules, "Unseen", [(ALICE, "The keeper climbed the spiral stairs too.")], publish=False)
    _, phrase = await site.get('/search?q="keeper climbed"')
    page = Page(phrase)
    assert "Ocean Tales" in page.words and "Mountain Tales" not in page.words and "Unseen" not in page.words
    assert re.search("<mark>keeper(</mark> <mark>| )climbed</mark>", phrase)  # FTS5 marks a phrase whole
    _, words = await site.get("/search?q=SPIRAL+stairs")
    assert "Ocean Tales" in words and "Mountain Tales" in words and "Unseen" not in words
    _, title = await site.get("/search?q=ocean")
    assert f"/stories/{ocean}" in Page(title).links and "Mountain Tales" not in title
    _, either = await site.get("/search?q=ocean+or+mountain")  # every word, "or" too: no operators
    assert "Ocean Tales" not in either and "Mountain Tales" not in either
    _, empty = await site.get("/search?q=")
    assert "every word must be there" in empty
    unpublished = await rules.handle(CHANNEL, ALICE, c.Unpublish(ocean))
    assert unpublished.ok, unpublished.text
    _, gone = await site.get("/search?q=keeper")
    assert "Ocean Tales" not in gone


async def test_the_search_index_repairs_itself_when_a_migration_took_its_triggers(site: Site) -> None:
    if is_postgres(site.rules.config.database.url):
        pytest.skip("PostgreSQL's index is an expression index: no triggers to lose")
    db = site.rules.db
    async with db.write() as tx:  # what SQLite's batch migrations do to a rebuilt table's triggers
        await tx.execute(text("DROP TRIGGER search_passages_insert"))
    await write_story(site.rules, "After The Migration", [(ALICE, "A quokka smiled.")])
    async with db.read() as tx:
        assert not await search.intact(tx)
    _, found = await site.get("/search?q=quokka")
    assert "After The Migration" in found
    async with db.read() as tx:
        assert await search.intact(tx)


def test_a_query_is_words_and_phrases_and_nothing_else() -> None:
    query = search.SearchQuery.parse('Lamp "DARK and stormy" night-time lamp "" NEAR(x y) ')
    # A word with punctuation inside is its words side by side, as both indexes cut it.
    assert query.terms == (("lamp",), ("dark", "and", "stormy"), ("night", "time"), ("near", "x"), ("y",))
    assert query.expression() == '"lamp" "dark and stormy" "night time" "near x" "y"'
    assert not search.SearchQuery.parse(' "" - * ')
    assert search.SearchQuery.parse("cafe\u0301").terms == (("caf\u00e9",),)  # a decomposed é, composed
    with pytest.raises(search.QueryError):
        search.SearchQuery.parse("x" * 201)
    with pytest.raises(search.QueryError):
        search.SearchQuery.parse(" ".join(f"w{n}" for n in range(13)))


# --------------------------------------------------------------------------- the feed


async def test_the_feed_is_atom_with_the_newest_published_stories(site: Site) -> None:
    rules = site.rules
    first = await write_story(rules, "First Light", [(ALICE, "Dawn.")], genre="poem")
    await write_story(rules, "Hidden Away", [(ALICE, "Nobody.")], publish=False)
    second = await write_story(rules, HOSTILE_TITLE, [(BOB, "Dusk.")])
    answer, body = await site.get("/feed.atom")
    assert answer.status == 200 and answer.content_type == "application/atom+xml"
    feed = ET.fromstring(body.encode())
    assert feed.tag == f"{ATOM}feed"
    assert feed.findtext(f"{ATOM}id") and feed.findtext(f"{ATOM}updated") and feed.find(f"{ATOM}author") is not None
    entries = feed.findall(f"{ATOM}entry")
    assert [e.findtext(f"{ATOM}title") for e in entries] == [HOSTILE_TITLE, "First Light"]
    assert [e.find(f"{ATOM}link").get("href") for e in entries] == [
        f"{site.url}/stories/{second}",
        f"{site.url}/stories/{first}",
    ]
    for entry in entries:
        assert entry.findtext(f"{ATOM}id") and entry.findtext(f"{ATOM}updated")
    assert entries[1].findtext(f"{ATOM}summary") == "poem · rated general · 1 word · by Alice"


async def test_the_feed_links_to_the_public_address_when_one_is_set(site: Site) -> None:
    story_id = await write_story(site.rules, "Addressed", [(ALICE, "Here.")])
    config = replace(site.rules.config, web=replace(site.rules.config.web, public_url="https://stories.example.org/"))
    async with web_server(config, host="127.0.0.1", port=0) as port:
        _, body = await Site(site.rules, f"http://127.0.0.1:{port}", site.http).get("/feed.atom")
    feed = ET.fromstring(body.encode())
    link = feed.find(f"{ATOM}entry/{ATOM}link")
    assert link is not None and link.get("href") == f"https://stories.example.org/stories/{story_id}"


async def test_the_archive_serves_the_operators_health_and_metrics(site: Site) -> None:
    health, body = await site.get("/healthz")
    assert health.status == 200 and '"healthy": true' in body
    metrics, exposition = await site.get("/metrics")
    assert metrics.status == 200 and "storybot_" in exposition


async def test_a_story_page_is_made_once_and_made_again_when_its_story_changes(site: Site) -> None:
    rules = site.rules
    story_id = await write_story(rules, "Kept", [(ALICE, "First words."), (BOB, "Second words.")], end=False)
    link = await share(rules, story_id)  # a running story opens only through its link
    _, before = await site.get(link)
    async with site.http.get(site.url + link, headers={"Accept-Encoding": "identity"}) as plain:
        assert plain.headers.get("Content-Encoding") is None and await plain.text() == before
    async with site.http.get(site.url + link, headers={"Accept-Encoding": "gzip"}) as packed:
        assert packed.headers["Content-Encoding"] == "gzip" and await packed.text() == before
    await rules.handle(CHANNEL, BOB, c.Add("Third words."))
    _, added = await site.get(link)
    assert "Third words." in added
    await rules.handle(CHANNEL, MOD, c.Hide(3))
    _, hidden = await site.get(link)
    assert "Third words." not in hidden and "Second words." in hidden
    await rules.handle(CHANNEL, ALICE, c.End())
    _, ended = await site.get(link)
    public, _ = await site.get(f"/stories/{story_id}")
    assert "still being written" in before and "still being written" not in ended and public.status == 200
    await rules.handle(CHANNEL, ALICE, c.Unpublish(story_id))
    gone, _ = await site.get(f"/stories/{story_id}")
    assert gone.status == 404


def test_the_page_cache_keeps_the_latest_pages_within_its_bytes() -> None:
    cache = PageCache(max_bytes=3 * len(MadePage.of("x" * 1000).html))
    pages = {n: MadePage.of(f"{n}" * 1000) for n in range(4)}
    for n, page in pages.items():
        cache.put((n, None), ("stamp", n), page)
    assert cache.get((0, None), ("stamp", 0)) is None  # the oldest went first
    assert cache.get((3, None), ("stamp", 3)) == pages[3]
    assert cache.get((3, None), ("stamp", "changed")) is None
    assert gzip.decompress(pages[3].gzipped) == pages[3].html


async def test_storybot_web_serves_on_the_port_its_config_names(tmp_path: Path) -> None:
    """The real command, as an operator starts it: ``[web]`` from the environment, then Ctrl-C."""
    port = free_port()
    env = {**os.environ, "STORYBOT_DATABASE_URL": sqlite_url(tmp_path), "STORYBOT_WEB_PORT": str(port)}
    (tmp_path / "storybot.toml").write_text("")
    server = subprocess.Popen([*storybot_command(), "web"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        async with ClientSession() as http:

            async def home() -> bool:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/") as answer:
                        return answer.status == 200 and "No stories are published yet" in await answer.text()
                except OSError:
                    return False

            for _ in range(300):
                if server.poll() is not None or await home():
                    break
                await asyncio.sleep(0.1)
            assert await home(), server.stderr.read() if server.poll() is not None else "no answer"
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 130
