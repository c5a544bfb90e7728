"""Finished stories as files: Markdown, plain text, HTML, EPUB and JSON.

One entry point, :func:`render`, turns an :class:`ExportStory` snapshot into a
:class:`RenderedFile` (file name, MIME type, bytes); adapters only attach the bytes.
``bot.export.snapshot`` reads a story from the database into a snapshot, and
``bot.export.archive`` lists stories and brings a JSON export back as a finished story.
Each format is its own module, imported on first use (EPUB pulls in ebooklib and lxml, which
commands such as ``storybot list`` never need).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from bot.export.common import ExportOptions, RenderedFile
from bot.export.model import ExportStory

__all__ = ["FORMATS", "ExportOptions", "ExportStory", "RenderedFile", "render"]

# Format name -> the module in this package that renders it (each has ``render(story, options)``).
FORMATS: dict[str, str] = {
    "md": "markdown",
    "txt": "text",
    "html": "html",
    "epub": "epub",
    "json": "json_format",
}


def render(story: ExportStory, format: str, options: ExportOptions | None = None) -> RenderedFile:
    """The story as a file in ``format`` (one of ``FORMATS``)."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; formats: {', '.join(FORMATS)}")
    module = importlib.import_module(f"{__name__}.{FORMATS[format]}")
    # A module imported by name is untyped to mypy; every format module defines this signature.
    renderer: Callable[[ExportStory, ExportOptions], RenderedFile] = module.render
    return renderer(story, options or ExportOptions())
