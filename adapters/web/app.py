"""The archive's aiohttp application: routes, parameters, headers and error pages.

Every response carries a strict Content-Security-Policy (no script may run, styles only from
``/static/``), ``nosniff`` and ``no-referrer`` (a share link's token never leaves in a Referer).
A story that is not there, not public, or behind a wrong, tampered or revoked share link gets
the same 404 page; a malformed parameter gets 400.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from adapters.web import pages
from adapters.web.cache import MadePage, PageCache
from bot.app import DatabaseBusy
from bot.library import SEARCH_RESULTS, Library, Place, QueryError

log = logging.getLogger(__name__)

LIBRARY = web.AppKey("library", Library)
PAGES = web.AppKey("pages", PageCache)
STATIC = Path(__file__).with_name("static")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# Unless a route says more (a share link's page: not kept at all), a proxy or browser may keep a
# page only if it asks again first: an unpublished story, a hidden passage must not live on in a cache.
REVALIDATE = "no-cache"
HTML = "text/html"
PAGE = re.compile(r"[1-9][0-9]{0,5}")
MAX_STORY_ID = 2**31 - 1  # an id past PostgreSQL's integer is no story (and no database error)
MAX_SEGMENT = 100  # the longest workspace or channel id a story can hold

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class NotFound(web.HTTPNotFound):
    """Nothing to show here: the one answer for a missing, unpublished or wrongly shared story."""


def _page(request: web.Request) -> int:
    """``?page=N`` (default 1); anything but a plain positive number is a 400."""
    typed = request.query.getone("page", "1")
    if not PAGE.fullmatch(typed):
        raise web.HTTPBadRequest(text="The page must be a whole number from 1.")
    return int(typed)


def _story_id(request: web.Request) -> int:
    story_id = int(request.match_info["id"])
    if story_id > MAX_STORY_ID:
        raise NotFound()
    return story_id


def _library(request: web.Request) -> Library:
    return request.app[LIBRARY]


def _html(body: str | bytes, *, status: int = 200, private: bool = False) -> web.Response:
    data = body.encode() if isinstance(body, str) else body
    response = web.Response(body=data, status=status, content_type=HTML, charset="utf-8")
    if private:  # a shared story's page: not for caches, nor for search engines
        response.headers["Cache-Control"] = "private, no-store"
        response.headers["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _language(request: web.Request) -> str:
    return _library(request).config.export.language


async def home(request: web.Request) -> web.Response:
    listing = await _library(request).listing(None, _page(request))
    if listing is None:
        raise NotFound()
    return _html(pages.render("listing.html", listing=listing, heading="Newest stories", language=_language(request)))


async def place(request: web.Request) -> web.Response:
    platform, workspace = request.match_info["platform"], request.match_info["workspace"]
    channel = request.match_info.get("channel")
    if max(len(platform), len(workspace), len(channel or "")) > MAX_SEGMENT:
        raise NotFound()
    where = Place(platform, workspace, channel)
    listing = await _library(request).listing(where, _page(request))
    if listing is None:
        raise NotFound()
    heading = f"{platform} · {workspace}" + (f" · #{channel}" if channel is not None else "")
    return _html(pages.render("listing.html", listing=listing, heading=heading, language=_language(request)))


async def story(request: web.Request) -> web.Response:
    library, made = _library(request), request.app[PAGES]
    story_id, token = _story_id(request), request.match_info.get("token")
    stamp = await library.stamp(story_id, token)
    if stamp is None:
        raise NotFound()
    page = made.get((story_id, token), stamp)
    if page is None:
        reading = await library.reading(story_id, token)
        if reading is None:
            raise NotFound()
        # A long story is a large page: rendered (and gzipped) off the event loop, like the exports.
        html = await asyncio.to_thread(
            pages.render, "story.html", reading=reading, language=reading.story.language, private=token is not None
        )
        page = await asyncio.to_thread(MadePage.of, html)
        made.put((story_id, token), reading.stamp, page)
    gzipped = _takes_gzip(request)
    response = _html(page.gzipped if gzipped else page.html, private=token is not None)
    if gzipped:
        response.headers["Content-Encoding"] = "gzip"
    response.headers["Vary"] = "Accept-Encoding"
    return response


def _takes_gzip(request: web.Request) -> bool:
    """Whether the browser's Accept-Encoding names gzip (and not with q=0)."""
    for coding in request.headers.get("Accept-Encoding", "").lower().split(","):
        name, _, weight = coding.partition(";")
        if name.strip() == "gzip":
            return weight.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


async def download(request: web.Request) -> web.Response:
    token = request.match_info.get("token")
    file = await _library(request).download(_story_id(request), request.match_info["format"], token)
    if file is None:
        raise NotFound()
    response = web.Response(body=file.data)
    response.headers["Content-Type"] = file.mime_type
    # RFC 6266: a plain ASCII fallback, and the title's own letters for browsers that read them.
    fallback = file.filename.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
    response.headers["Content-Disposition"] = (
        f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(file.filename, safe='')}"
    )
    if token is not None:
        response.headers["Cache-Control"] = "private, no-store"
    return response


async def search(request: web.Request) -> web.Response:
    typed = request.query.getone("q", "")
    try:
        terms, found = await _library(request).search(typed)
    except QueryError as error:
        raise web.HTTPBadRequest(text=str(error)) from None
    body = pages.render(
        "search.html",
        query=typed,
        terms=bool(terms),
        found=found,
        limit=SEARCH_RESULTS,
        language=_language(request),
    )
    return _html(body)


async def feed(request: web.Request) -> web.Response:
    library = _library(request)
    cards = await library.newest()
    base = library.config.web.public_url.rstrip("/") or str(request.url.origin())
    updated = max((card.published_at for card in cards), default=datetime(2000, 1, 1, tzinfo=UTC))
    body = pages.render("feed.xml", cards=cards, base=base, updated=updated)
    response = web.Response(text=body, content_type="application/atom+xml", charset="utf-8")
    if not library.config.web.public_url:  # its links come from the request's Host: no cache may share it
        response.headers["Cache-Control"] = "private, no-store"
    return response


_ERRORS = {
    400: ("Bad request", "The address asks for something this archive does not understand."),
    404: (
        "Not found",
        "There is no such page here. A story shows here once it is published, or through its share link.",
    ),
    405: ("Not allowed", "This page only answers GET."),
}


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Small HTML pages for 400, 404 and 405 (the same 404 whatever was missing), 503 when the
    database stays busy, and 500, logged, for anything else."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status not in _ERRORS:
            raise
        heading, message = _ERRORS[error.status]
        detail = error.text if error.status == 400 and error.text else message
        response = _html(
            pages.render("error.html", heading=heading, message=detail, language="en"), status=error.status
        )
        if "Allow" in error.headers:
            response.headers["Allow"] = error.headers["Allow"]
        return response
    except DatabaseBusy:
        message = "The archive is busy right now; try again in a moment."
        return _html(pages.render("error.html", heading="Busy", message=message, language="en"), status=503)
    except Exception:
        # The route, not the path: a share link's token is a secret, and logs travel.
        route = request.match_info.route.resource
        log.exception("the archive could not answer %s %s", request.method, route.canonical if route else "?")
        message = "Something went wrong on our side."
        return _html(pages.render("error.html", heading="Sorry", message=message, language="en"), status=500)


async def _secure(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)
    response.headers.setdefault("Cache-Control", REVALIDATE)


def archive_app(library: Library, extra_routes: Iterable[web.RouteDef] = ()) -> web.Application:
    """The archive over ``library``; ``extra_routes`` beside it (the operators' /healthz, /metrics)."""
    app = web.Application(middlewares=[error_pages])
    app[LIBRARY] = library
    app[PAGES] = PageCache()
    story_id = r"{id:[0-9]{1,12}}"
    token = r"{token:[A-Za-z0-9_-]{1,100}}"
    app.add_routes(
        [
            web.get("/", home),
            web.get("/w/{platform}/{workspace}", place),
            web.get("/w/{platform}/{workspace}/{channel}", place),
            web.get(f"/stories/{story_id}", story),
            web.get(f"/stories/{story_id}/download/{{format}}", download),
            web.get(f"/shared/{story_id}/{token}", story),
            web.get(f"/shared/{story_id}/{token}/download/{{format}}", download),
            web.get("/search", search),
            web.get("/feed.atom", feed),
            web.static("/static", STATIC),
            *extra_routes,
        ]
    )
    app.on_response_prepare.append(_secure)
    return app
