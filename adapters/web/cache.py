"""The story pages the archive made, kept while what they were made from stays the same.

A long story's page takes a read of every passage and a render (a 5,000-passage story: a
fraction of a second, and a page of megabytes); checking its ``bot.library.Stamp`` takes a few
small reads. So a page is made once per change of its story and kept, gzipped too (compressed
once, sent to every reader whose browser takes gzip: a fifth of the bytes on a phone's link).
Bounded by bytes, least recently used first out; a page whose stamp changed is made again.
"""

from __future__ import annotations

import gzip
from collections import OrderedDict
from dataclasses import dataclass

from bot.library import Stamp

# A story's page, and whose: the public page, or the page a share link opens (its own download links).
PageKey = tuple[int, str | None]


@dataclass(frozen=True, slots=True)
class MadePage:
    html: bytes  # UTF-8
    gzipped: bytes

    @classmethod
    def of(cls, html: str) -> MadePage:
        data = html.encode()
        return cls(data, gzip.compress(data, compresslevel=6, mtime=0))

    @property
    def size(self) -> int:
        return len(self.html) + len(self.gzipped)


class PageCache:
    """Made pages by ``PageKey``, each with the stamp it was made from."""

    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        self.max_bytes = max_bytes
        self._pages: OrderedDict[PageKey, tuple[Stamp, MadePage]] = OrderedDict()
        self._bytes = 0

    def get(self, key: PageKey, stamp: Stamp) -> MadePage | None:
        """The page kept for ``key`` if it was made from ``stamp``."""
        kept = self._pages.get(key)
        if kept is None or kept[0] != stamp:
            return None
        self._pages.move_to_end(key)
        return kept[1]

    def put(self, key: PageKey, stamp: Stamp, page: MadePage) -> None:
        if (old := self._pages.pop(key, None)) is not None:
            self._bytes -= old[1].size
        if page.size > self.max_bytes:
            return
        self._pages[key] = (stamp, page)
        self._bytes += page.size
        while self._bytes > self.max_bytes:
            _, (_, dropped) = self._pages.popitem(last=False)
            self._bytes -= dropped.size
