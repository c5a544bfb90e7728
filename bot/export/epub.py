"""EPUB 3 (built with ebooklib): a title page (with the rating), the contributors, and the story as chapters.

Chapters follow the participants' chapter marks, else one starts every
``options.chapter_passages`` passages. The book declares the story's language, and the same
story always gives the same bytes: the identifier is derived from the story, and the archive
is rewritten with fixed timestamps and the ``mimetype`` entry first and stored, as readers and
``epubcheck`` require.
"""

from __future__ import annotations

import io
import uuid
import zipfile
from datetime import datetime
from html import escape

from ebooklib import epub

from bot.export.common import ExportOptions, RenderedFile, contributor_label, date_line, rating_line, slug
from bot.export.html import passage_paragraphs
from bot.export.model import ExportStory
from bot.words import counted
from storage.models import AuthorKind

STYLE = """\
body { font-family: serif; line-height: 1.5; }
h1, h2 { text-align: center; }
.meta { text-align: center; font-style: italic; }
p { margin: 0 0 .8em; }
.author { font-variant: small-caps; font-weight: bold; }
"""

MIME = "application/epub+zip"


def identifier(story: ExportStory) -> str:
    """A stable id: the same story exported twice is the same book to a reader's library."""
    seed = f"storybot:{story.channel.key}:{story.created_at.isoformat()}:{story.title}"
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, seed)}"


def _page(file_name: str, title: str, body: str, story: ExportStory, css: epub.EpubItem) -> epub.EpubHtml:
    page = epub.EpubHtml(title=title, file_name=file_name, lang=story.language)
    page.content = body
    page.add_item(css)
    return page


def _book(story: ExportStory, options: ExportOptions) -> tuple[epub.EpubBook, datetime]:
    book = epub.EpubBook()
    book.set_identifier(identifier(story))
    book.set_title(story.title)
    book.set_language(story.language)
    # Our name, not the library's version: the same story gives the same book after upgrades.
    book.set_unique_metadata("OPF", "generator", "", {"name": "generator", "content": "storybot"})
    for number, person in enumerate(story.contributors, start=1):
        if person.kind == AuthorKind.HUMAN:
            book.add_author(person.name, uid=f"creator-{number}")  # ids must be unique
        else:
            book.add_metadata("DC", "contributor", person.name)
    when = story.finished_at or story.created_at
    book.add_metadata("DC", "date", when.strftime("%Y-%m-%dT%H:%M:%SZ"))
    if story.genre:
        book.add_metadata("DC", "subject", story.genre)
    # schema.org's CreativeWork.contentRating; EPUB 3 reserves the schema: prefix, so no declaration.
    book.add_metadata(None, "meta", story.rating, {"property": "schema:contentRating"})

    css = epub.EpubItem(uid="style", file_name="style.css", media_type="text/css", content=STYLE.encode())
    book.add_item(css)
    title = escape(story.title, quote=False)
    pages = [
        _page(
            "title.xhtml",
            story.title,
            f'<h1 dir="auto">{title}</h1><p class="meta">{escape(date_line(story), quote=False)}</p>'
            f'<p class="meta">{escape(rating_line(story), quote=False)}</p>',
            story,
            css,
        )
    ]
    people = "".join(f"<li>{escape(contributor_label(p), quote=False)}</li>" for p in story.contributors)
    pages.append(
        _page(
            "contributors.xhtml",
            "Contributors",
            (
                f"<h2>Contributors</h2><p>{counted(story.words, 'word')}.</p><ul>{people}</ul>"
                if people
                else "<h2>Contributors</h2>"
            ),
            story,
            css,
        )
    )
    chapters = []
    for chapter in story.chapters(options.chapter_passages):
        paragraphs = "".join(
            p for passage in chapter.passages for p in passage_paragraphs(passage, options, plain=False)
        )
        chapters.append(
            _page(
                f"chapter-{chapter.number:03d}.xhtml",
                chapter.title,
                f'<h2 dir="auto">{escape(chapter.title, quote=False)}</h2>{paragraphs}',
                story,
                css,
            )
        )
    for page in pages + chapters:
        book.add_item(page)
    book.toc = [epub.Link(p.file_name, p.title, p.file_name.removesuffix(".xhtml")) for p in pages + chapters]
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = [*pages, "nav", *chapters]
    return book, when


def _normalised(raw: bytes, when: datetime) -> bytes:
    """The archive again, ``mimetype`` first and stored, every entry stamped with ``when``."""
    stamp = (max(when.year, 1980), when.month, when.day, when.hour, when.minute, when.second)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw)) as source, zipfile.ZipFile(out, "w") as target:
        names = ["mimetype", *(n for n in source.namelist() if n != "mimetype")]
        for name in names:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_STORED if name == "mimetype" else zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            target.writestr(info, source.read(name))
    return out.getvalue()


def render(story: ExportStory, options: ExportOptions) -> RenderedFile:
    book, when = _book(story, options)
    raw = io.BytesIO()
    epub.write_epub(raw, book, {"mtime": when, "raise_exceptions": True})
    return RenderedFile(f"{slug(story.title)}.epub", MIME, _normalised(raw.getvalue(), when))
