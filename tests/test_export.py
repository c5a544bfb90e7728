"""The export formats on a fixed story with everything that is hard to export.

Each format is compared with a golden file under tests/golden/. After an intended change,
regenerate them with ``STORYBOT_UPDATE_GOLDEN=1 pytest tests/test_export.py`` and read the diff.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from markdown_it import MarkdownIt
from markdown_it.token import Token

from bot.commands import EXPORT_FORMATS, Export, ParseError, Show, parse
from bot.export import FORMATS, ExportOptions, render
from bot.export.json_format import DocumentError, dumps, loads
from bot.export.model import ExportPassage
from bot.export.text import text_width
from bot.words import word_count
from tests.export_fixtures import ARABIC, CHINESE, EMOJI, LONG_URL, MARKUP, START, tricky_story

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("STORYBOT_UPDATE_GOLDEN") == "1"
NON_LATIN = (CHINESE, ARABIC, EMOJI, "ليلى", "🌙")


def check_golden(name: str, data: bytes) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_bytes(data)
        return
    assert path.exists(), f"{path} is missing; run with STORYBOT_UPDATE_GOLDEN=1 to create it"
    assert data.decode("utf-8") == path.read_text(encoding="utf-8"), (
        f"{name} differs from the golden file; if the change is intended, "
        "regenerate with STORYBOT_UPDATE_GOLDEN=1 and review the diff"
    )


def epub_dump(data: bytes) -> bytes:
    """The EPUB as text: each entry's name, compression and content, in archive order."""
    out = []
    with zipfile.ZipFile(io.BytesIO(data)) as book:
        for info in book.infolist():
            kind = "stored" if info.compress_type == zipfile.ZIP_STORED else "deflated"
            out.append(f"===== {info.filename} ({kind})\n{book.read(info).decode('utf-8')}\n")
    return "".join(out).encode("utf-8")


# ----------------------------------------------------------------------------- goldens


@pytest.mark.parametrize(
    ("name", "fmt", "options"),
    [
        ("tricky.md", "md", ExportOptions()),
        ("tricky-anonymous.md", "md", ExportOptions(authors=False)),
        ("tricky.txt", "txt", ExportOptions()),
        ("tricky.html", "html", ExportOptions()),
        ("tricky.ao3.html", "html", ExportOptions(body=True)),
        ("tricky.json", "json", ExportOptions()),
        ("tricky.epub.txt", "epub", ExportOptions(chapter_passages=2)),
    ],
)
def test_each_format_matches_its_golden_file(name: str, fmt: str, options: ExportOptions) -> None:
    file = render(tricky_story(), fmt, options)
    check_golden(name, epub_dump(file.data) if fmt == "epub" else file.data)


def test_the_chat_command_and_the_renderers_know_the_same_formats() -> None:
    assert tuple(FORMATS) == EXPORT_FORMATS


def test_file_names_and_types() -> None:
    story = tricky_story()
    files = {fmt: render(story, fmt) for fmt in FORMATS}
    assert {fmt: f.filename for fmt, f in files.items()} == {
        "md": "lanterns-ghosts-a-tale.md",
        "txt": "lanterns-ghosts-a-tale.txt",
        "html": "lanterns-ghosts-a-tale.html",
        "epub": "lanterns-ghosts-a-tale.epub",
        "json": "lanterns-ghosts-a-tale.json",
    }
    assert files["epub"].mime_type == "application/epub+zip"
    assert files["html"].mime_type.startswith("text/html")
    assert render(replace(story, title="灯塔"), "md").filename == "灯塔.md"
    assert render(replace(story, title="!!!"), "md").filename == "story.md"
    assert render(story, "epub").data == render(story, "epub").data  # the same story, the same book


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown export format 'pdf'"):
        render(tricky_story(), "pdf")


# ----------------------------------------------------------------------------- content


def test_only_the_canonical_story_is_in_the_reading_formats() -> None:
    story = tricky_story()
    for fmt in ("md", "txt", "html"):
        text = render(story, fmt).data.decode()
        assert "A first try the table rejected" not in text  # superseded by a retry
        assert "Something Carol took back" not in text  # undone
    assert "Something Carol took back" not in epub_dump(render(story, "epub").data).decode()


def test_non_latin_text_comes_out_intact_in_every_format() -> None:
    story = tricky_story()
    for fmt in FORMATS:
        data = render(story, fmt).data
        text = epub_dump(data).decode() if fmt == "epub" else data.decode("utf-8")
        if fmt == "txt":  # wrapped: join the lines back (Chinese wraps between characters)
            text = re.sub(r"\n(?=[\u4e00-\u9fff，。])", "", text)
        if fmt == "json":
            text = json.dumps(json.loads(text), ensure_ascii=False)
        for sample in NON_LATIN:
            assert sample in text, (fmt, sample)


def test_contributors_and_word_counts() -> None:
    people = {p.name: p.words for p in tricky_story().contributors}
    assert people == {
        "Alice": 27,
        "storybot": len(CHINESE) - CHINESE.count("。") - CHINESE.count("，"),
        "ليلى": 17,
        "Carol": 644,
    }
    assert word_count("well-known words, 3 of them — really") == 6
    assert word_count("灯塔守护者") == 5


def _inline_text(token: Token) -> str:
    """What a reader sees of one inline token: its text, line breaks as newlines."""
    breaks = ("hardbreak", "softbreak")
    assert token.children is not None, "an inline token holds its text as children"
    return "".join(c.content if c.type == "text" else "\n" if c.type in breaks else "" for c in token.children)


def test_markdown_control_characters_do_not_change_the_document_structure() -> None:
    document = render(tricky_story(), "md").data.decode()
    tokens = MarkdownIt("commonmark").enable("table").enable("strikethrough").parse(document)
    kinds = [t.type for t in tokens]
    headings = [_inline_text(tokens[i + 1]) for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings == ["Lanterns & <Ghosts>: *A* Tale 🌙", "Chapter 1", "Chapter 2: The *Storm*"]
    # One list (the contributors), one rule, paragraphs: nothing people typed became markup.
    assert kinds.count("bullet_list_open") == 1
    assert kinds.count("hr") == 1
    for markup in ("ordered_list_open", "blockquote_open", "code_block", "fence", "html_block", "table_open"):
        assert markup not in kinds
    inline = [child for t in tokens if t.type == "inline" for child in t.children or []]
    assert {c.type for c in inline} <= {"text", "strong_open", "strong_close", "em_open", "em_close", "hardbreak"}
    # Alice's passage reads exactly as she typed it (indentation aside), after her name.
    paragraphs = [_inline_text(t) for t in tokens if t.type == "inline"]
    typed = "\n".join(line.strip() for line in MARKUP.splitlines())
    assert "Alice: " + typed in paragraphs
    html = MarkdownIt("commonmark").render(document)
    assert "&lt;script&gt;alert('boo')&lt;/script&gt; &amp; &amp;amp; stay text" in html


def test_markdown_without_authors_names_nobody_in_the_text() -> None:
    document = render(tricky_story(), "md", ExportOptions(authors=False)).data.decode()
    body = document.split("---", 1)[1]
    assert "**Alice:**" not in body and "Carol" not in body


class _Collect(HTMLParser):
    """Every start tag and all text of an HTML document, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_page_escapes_what_people_wrote() -> None:
    page = render(tricky_story(), "html").data.decode()
    seen = _Collect()
    seen.feed(page)
    assert "script" not in seen.tags and "b" not in seen.tags
    text = "".join(seen.text)
    assert "<script>alert('boo')</script> & &amp; stay text" in text
    assert '<html lang="en">' in page and 'name="viewport"' in page and "@media print" in page
    assert etree.fromstring(page.split("\n", 1)[1].encode()) is not None  # also well-formed XML


def test_ao3_body_uses_only_plain_tags() -> None:
    body = render(tricky_story(), "html", ExportOptions(body=True)).data.decode()
    seen = _Collect()
    seen.feed(body)
    assert set(seen.tags) == {"h2", "p", "strong", "br"}
    assert "class=" not in body and "style" not in body and "<html" not in body
    assert "<script>alert('boo')</script>" in "".join(seen.text)


def test_text_is_wrapped_at_80_columns() -> None:
    text = render(tricky_story(), "txt").data.decode()
    lines = text.splitlines()
    assert max(text_width(line) for line in lines) <= 80
    assert max(text_width(line) for line in lines) >= 75  # filled, not wrapped early
    assert LONG_URL in re.sub(r"\n(?=a)", "", text)  # a URL wider than a line is cut, not lost
    assert "<script>alert('boo')</script>" in text


def test_chapters_follow_marks_else_every_n_passages() -> None:
    story = tricky_story()
    marked = story.chapters(2)
    assert [(c.title, c.marked, len(c.passages)) for c in marked] == [
        ("Chapter 1", False, 2),
        ("Chapter 2: The *Storm*", True, 2),
    ]
    plain = [ExportPassage(n, "human", "u", "Ann", f"Passage {n}.", "canonical", START) for n in range(1, 26)]
    unmarked = replace(story, passages=tuple(plain))
    assert [len(c.passages) for c in unmarked.chapters(10)] == [10, 10, 5]
    assert [c.title for c in unmarked.chapters(10)] == ["Chapter 1", "Chapter 2", "Chapter 3"]
    assert len(unmarked.chapters(0)) == 1


# ----------------------------------------------------------------------------- EPUB


def _epub_structure(data: bytes) -> tuple[zipfile.ZipFile, etree._Element]:
    book = zipfile.ZipFile(io.BytesIO(data))
    first = book.infolist()[0]
    assert first.filename == "mimetype"
    assert first.compress_type == zipfile.ZIP_STORED
    assert book.read("mimetype") == b"application/epub+zip"
    assert not first.extra  # readers find the type at a fixed offset
    container = etree.fromstring(book.read("META-INF/container.xml"))
    ns = {"c": "urn:oasis:names:tc:opendocument:xmlns:container"}
    opf_path = container.find(".//c:rootfile", ns).get("full-path")
    opf = etree.fromstring(book.read(opf_path))
    return book, opf


def test_epub_structure() -> None:
    data = render(tricky_story(), "epub", ExportOptions(chapter_passages=2)).data
    book, opf = _epub_structure(data)
    ns = {"opf": "http://www.idpf.org/2007/opf", "dc": "http://purl.org/dc/elements/1.1/"}
    assert opf.get("version") == "3.0"
    assert opf.findtext(".//dc:language", namespaces=ns) == "en"
    assert opf.findtext(".//dc:title", namespaces=ns) == "Lanterns & <Ghosts>: *A* Tale 🌙"
    assert opf.findtext(".//dc:identifier", namespaces=ns).startswith("urn:uuid:")
    assert [c.text for c in opf.findall(".//dc:creator", ns)] == ["Alice", "ليلى", "Carol"]
    folder = posix_dir(book)
    items = {i.get("href"): i.get("media-type") for i in opf.findall(".//opf:manifest/opf:item", ns)}
    assert set(items.values()) >= {"application/xhtml+xml", "text/css"}
    chapters = sorted(h for h in items if h.startswith("chapter-"))
    assert chapters == ["chapter-001.xhtml", "chapter-002.xhtml"]  # the story's own chapter mark
    texts = []
    for href, media in items.items():
        content = book.read(folder + href)
        if media == "application/xhtml+xml":
            root = etree.fromstring(content)  # well-formed XHTML, or this raises
            assert root.get("{http://www.w3.org/XML/1998/namespace}lang") == "en"
            assert not root.findall(".//{http://www.w3.org/1999/xhtml}script")
            texts.append("".join(root.itertext()))
    joined = "".join(texts)
    assert "<script>alert('boo')</script>" in joined
    assert "Contributors" in joined and "Carol (644 words)" in joined


def test_the_rating_is_in_every_format_and_in_the_metadata() -> None:
    story = replace(tricky_story(), rating="teen")
    assert "*Rating: Teen*" in render(story, "md").data.decode()
    assert "\nRating: Teen\n" in render(story, "txt").data.decode()
    page = render(story, "html").data.decode()
    assert '<meta name="rating" content="teen" />' in page
    header = etree.fromstring(page.split("\n", 1)[1].encode()).find(".//{*}header")
    assert header is not None and "Rating: Teen" in "".join(header.itertext())
    assert "Rating" not in render(story, "html", ExportOptions(body=True)).data.decode()  # AO3 asks for it itself
    book, opf = _epub_structure(render(story, "epub").data)
    assert [m.text for m in opf.findall(".//{*}meta[@property='schema:contentRating']")] == ["teen"]
    title_page = etree.fromstring(book.read(posix_dir(book) + "title.xhtml"))
    assert "Rating: Teen" in "".join(title_page.itertext())
    assert json.loads(render(story, "json").data)["rating"] == "teen"
    assert loads(dumps(story)).rating == "teen"


def test_a_json_file_from_before_ratings_reads_as_general() -> None:
    document = json.loads(dumps(replace(tricky_story(), rating="mature")))
    del document["rating"]
    assert loads(json.dumps(document)) == tricky_story()  # rated general, as every story was then


def posix_dir(book: zipfile.ZipFile) -> str:
    opf = next(n for n in book.namelist() if n.endswith(".opf"))
    return opf.rsplit("/", 1)[0] + "/" if "/" in opf else ""


def test_epub_declares_the_story_language() -> None:
    data = render(tricky_story(language="ar"), "epub").data
    book, opf = _epub_structure(data)
    assert opf.findtext(".//{http://purl.org/dc/elements/1.1/}language") == "ar"
    page = etree.fromstring(book.read(posix_dir(book) + "chapter-001.xhtml"))
    assert page.get("lang") == "ar"


def _epubcheck() -> list[str] | None:
    """How to run epubcheck here: Debian's /usr/bin/epubcheck is a jar that needs java."""
    found = shutil.which("epubcheck")
    if found is None:
        return None
    real = os.path.realpath(found)
    if real.endswith(".jar"):
        java = shutil.which("java")
        # A short-lived JVM starts several times faster with only the quick compiler.
        return [java, "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-jar", real] if java else None
    return [found]


@pytest.mark.skipif(_epubcheck() is None, reason="epubcheck is not installed (apt-get install epubcheck)")
def test_epub_passes_epubcheck(tmp_path: Path) -> None:
    command = _epubcheck()
    assert command is not None
    path = tmp_path / "tricky.epub"  # one book: every JVM start costs seconds
    story = replace(tricky_story(language="ar"), rating="mature")
    path.write_bytes(render(story, "epub", ExportOptions(chapter_passages=2)).data)
    done = subprocess.run([*command, str(path)], capture_output=True, text=True, timeout=300, check=False)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "No errors or warnings detected" in report, report


def test_an_empty_story_is_still_a_valid_book() -> None:
    data = render(replace(tricky_story(), passages=()), "epub").data
    book, _opf = _epub_structure(data)
    for name in book.namelist():
        if name.endswith(".xhtml"):
            etree.fromstring(book.read(name))


# ----------------------------------------------------------------------------- JSON


def test_json_keeps_everything_and_reads_back_the_same() -> None:
    story = tricky_story()
    document = json.loads(render(story, "json").data)
    assert document["format"] == "storybot-story" and document["format_version"] == 1
    statuses = [(p["number"], p["status"], p["replaces"]) for p in document["passages"]]
    assert statuses == [
        (1, "canonical", None),
        (2, "superseded", None),
        (3, "canonical", 2),
        (4, "canonical", None),
        (5, "canonical", None),
        (6, "undone", None),
        (7, "canonical", None),
    ]
    assert document["passages"][2]["generation"]["model"] == "tiny-gpt2"
    assert document["passages"][2]["direction"] == "write in Chinese"
    assert document["passages"][5]["changed_by_id"] == "u-carol"
    assert "id" not in document and all("id" not in p for p in document["passages"])
    assert loads(dumps(story)) == story


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(format="other"), "not a storybot story export"),
        (lambda d: d.update(format_version=99), "format_version 99 is newer"),
        (lambda d: d["passages"][1].pop("text"), r"passages\[1\].text is missing"),
        (lambda d: d["passages"][1].update(status="deleted"), r"passages\[1\].status must be one of"),
        (lambda d: d["passages"][2].update(number=9), r"passages\[2\].number must be 3"),
        (lambda d: d["passages"][2].update(replaces=5), r"passages\[2\].replaces must name an earlier"),
        (lambda d: d["passages"][0].update(created_at="yesterday"), "not a date and time"),
        (lambda d: d["passages"][0].update(created_at="2024-05-01T10:00:00"), "must include a time zone"),
        (lambda d: d["participants"].append(d["participants"][0]), "appears twice"),
        (lambda d: d.update(mode="chaos"), "mode must be one of"),
        (lambda d: d.update(rating="adult"), "rating must be one of general, teen, mature"),
        (lambda d: d.update(rating=18), "rating must be text"),
    ],
)
def test_a_bad_json_file_is_refused_with_one_line(mutate: Callable[[dict[str, Any]], object], message: str) -> None:
    document = json.loads(dumps(tricky_story()))
    mutate(document)
    with pytest.raises(DocumentError, match=message) as caught:
        loads(json.dumps(document))
    assert "\n" not in str(caught.value)


def test_not_json_at_all() -> None:
    with pytest.raises(DocumentError, match="not a JSON file"):
        loads(b"\xff\xfe not json")


# ----------------------------------------------------------------------------- the chat command


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("/story export authors:off", Export("md", None, authors=False)),
        ("/story export epub 12 authors:on", Export("epub", 12)),
        ("/story export body:on", Export("html", None, body=True)),
        ("/story export html #3 body:yes", Export("html", 3, body=True)),
        ("/story show 12", Show(12)),
        ("/story show #12", Show(12)),
    ],
)
def test_export_options_and_show_parse(text: str, command: object) -> None:
    assert parse(text) == command


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/story export authors:maybe", "authors: is on or off"),
        ("/story export md body:on", "body:on is HTML to paste into AO3; use it with html."),
        ("/story export authors:off authors:on", "authors is given twice."),
        ("/story show", "Give one story id"),
        ("/story show first", "Give one story id"),
    ],
)
def test_bad_export_options_and_show_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=re.escape(message)) as caught:
        parse(text)
    assert "\n" not in str(caught.value) and "Usage: /story" in str(caught.value)
