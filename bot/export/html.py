"""HTML: one standalone page to read on a phone or print, or (``body``) a fragment for AO3.

The page carries its own stylesheet (no fonts or scripts fetched from anywhere), follows the
reader's dark mode, and prints with one chapter per page. The ``body`` variant is only the
story, in the handful of plain tags that Archive of Our Own and similar sites keep when pasted
into their HTML editor. Everything people and the model wrote is escaped: ``<script>`` is text.
"""

from __future__ import annotations

from html import escape

from bot.export.common import (
    ExportOptions,
    RenderedFile,
    contributor_label,
    date_line,
    paragraphs,
    rating_line,
    slug,
)
from bot.export.model import Chapter, ExportPassage, ExportStory
from bot.words import counted

STYLE = """\
:root { color-scheme: light dark; }
body { margin: 0; font: 1.125rem/1.65 "Iowan Old Style", Georgia, "Noto Serif", serif; }
main { max-width: 38em; margin: 0 auto; padding: 1.5rem 1.25rem 4rem; }
h1 { font-size: 2rem; line-height: 1.2; margin: 1rem 0 .25rem; }
h2 { font-size: 1.3rem; margin: 2.5em 0 1em; text-align: center; }
.meta { margin-top: 0; font-style: italic; opacity: .75; }
.contributors h2 { font-size: 1rem; margin: 1.5em 0 .25em; text-align: left; }
.contributors ul { margin: 0; padding-left: 1.2em; }
article p { margin: 0 0 .9em; overflow-wrap: break-word; hyphens: auto; }
.author { font-variant: small-caps; font-weight: 600; }
hr { border: 0; margin: 2em 0; text-align: center; }
hr::after { content: "\\2042"; }
@media print {
  body { font-size: 11pt; color: #000; background: #fff; }
  main { max-width: none; padding: 0; }
  .chapter + .chapter { break-before: page; }
  h1, h2 { break-after: avoid; }
  p { orphans: 3; widows: 3; }
}
"""


def passage_paragraphs(passage: ExportPassage, options: ExportOptions, *, plain: bool) -> list[str]:
    """The passage's paragraphs; ``plain`` leaves out classes and attributes (for pasting)."""
    out = []
    for index, lines in enumerate(paragraphs(passage.text)):
        body = "<br />".join(escape(line, quote=False) for line in lines)
        if index == 0 and options.authors:
            label = escape(passage.author_name, quote=False)
            tag = "<strong>" if plain else '<strong class="author">'
            body = f"{tag}{label}:</strong> {body}"
        out.append(f"<p>{body}</p>" if plain else f'<p dir="auto">{body}</p>')
    return out


def _chapters(story: ExportStory, options: ExportOptions, *, plain: bool) -> list[str]:
    chapters: tuple[Chapter, ...] = story.chapters(0)
    out = []
    for chapter in chapters:
        inner = []
        if chapter.marked or len(chapters) > 1:
            inner.append(f"<h2>{escape(chapter.title, quote=False)}</h2>")
        for passage in chapter.passages:
            inner.extend(passage_paragraphs(passage, options, plain=plain))
        if plain:
            out.extend(inner)
        else:
            out.append('<section class="chapter">\n' + "\n".join(inner) + "\n</section>")
    return out


def body(story: ExportStory, options: ExportOptions) -> str:
    """Only the story, as AO3's editor keeps it: p, strong, br and h2, no classes or styles."""
    return "\n".join(_chapters(story, options, plain=True)) + "\n"


def page(story: ExportStory, options: ExportOptions) -> str:
    title = escape(story.title, quote=False)
    people = "".join(f"<li>{escape(contributor_label(p), quote=False)}</li>" for p in story.contributors)
    contributors = (
        f'<section class="contributors">\n<h2>Contributors ({counted(story.words, "word")})</h2>\n'
        f"<ul>{people}</ul>\n</section>\n"
        if people
        else ""
    )
    story_html = "\n".join(_chapters(story, options, plain=False))
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="{escape(story.language)}">\n<head>\n<meta charset="utf-8" />\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1" />\n'
        '<meta name="generator" content="storybot" />\n'
        f'<meta name="rating" content="{escape(story.rating)}" />\n'
        f"<title>{title}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<main>\n"
        f'<header>\n<h1 dir="auto">{title}</h1>\n<p class="meta">{escape(date_line(story), quote=False)}</p>\n'
        f'<p class="meta">{escape(rating_line(story), quote=False)}</p>\n'
        f"{contributors}</header>\n<hr />\n<article>\n{story_html}\n</article>\n</main>\n</body>\n</html>\n"
    )


def render(story: ExportStory, options: ExportOptions) -> RenderedFile:
    if options.body:
        return RenderedFile(f"{slug(story.title)}.ao3.html", "text/html; charset=utf-8", body(story, options).encode())
    return RenderedFile(f"{slug(story.title)}.html", "text/html; charset=utf-8", page(story, options).encode())
