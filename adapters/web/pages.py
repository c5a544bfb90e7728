"""The archive's pages: Jinja2 templates (``templates/``) over the core's plain data (``bot.library``).

Autoescaping is on for every template, HTML and XML alike, and nothing people or the model wrote
is ever marked safe: a title of ``<script>`` is text. Text people wrote sits in elements with
``dir="auto"`` or in ``<bdi>``, so right-to-left text reads right and a stray direction override
ends where its text does, never turning the words after it around.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from bot.export.common import paragraphs
from bot.library import MARK_END, MARK_START
from bot.words import counted

SITE_NAME = "storybot archive"
# Characters XML 1.0 forbids; the core strips control characters from what it stores, and this
# keeps the feed well-formed whatever an older row or an import holds.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_MARKS = re.compile(f"{MARK_START}(.*?){MARK_END}", re.DOTALL)


def segment(value: str) -> str:
    """One path segment: everything but unreserved characters percent-encoded, ``/`` too."""
    return quote(value, safe="")


def marked(snippet: str) -> Iterator[tuple[str, bool]]:
    """A search snippet as (text, is a match) pieces, for the template to escape each."""
    position = 0
    for match in _MARKS.finditer(snippet):
        if match.start() > position:
            yield snippet[position : match.start()].replace(MARK_START, "").replace(MARK_END, ""), False
        yield match[1], True
        position = match.end()
    if position < len(snippet):
        yield snippet[position:].replace(MARK_START, "").replace(MARK_END, ""), False


def day(value: datetime) -> str:
    return f"{value:%Y-%m-%d}"


def xml_text(value: str) -> str:
    return _NOT_XML.sub("", value)


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("adapters.web", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "xml"), default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        segment=segment, marked=marked, day=day, xml_text=xml_text, counted=counted, paragraphs=paragraphs
    )
    environment.globals["site_name"] = SITE_NAME
    return environment


ENVIRONMENT = _environment()


def render(template: str, **context: Any) -> str:
    """``templates/<template>`` filled with ``context``."""
    return ENVIRONMENT.get_template(template).render(**context)
