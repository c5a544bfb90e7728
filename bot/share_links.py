"""The web archive's addresses, and the signed links that open one story to whoever has them.

A share link is ``/shared/<story id>/<token>``, the token an HMAC-SHA256 of the story's id and
its ``share_key`` (a random value stored with the story) under the site's secret. So a link
cannot be guessed or made for another story without the secret, and revoking a story's links
(``share_key`` set to None) stops every one of them at once: the next ``/story share`` makes a
new key, and with it a new token. The secret is the config's ``web.secret``, or else a random
one the bot makes on first use and keeps in the database (``site_secrets``), so that every
process and the web archive sign alike. Changing the secret changes every story's link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from sqlalchemy.ext.asyncio import AsyncSession

from storage import queries as q
from storage.models import Story, StoryStatus

SECRET_NAME = "share-links"  # the ``site_secrets`` row that signs links when web.secret is empty


def new_share_key() -> str:
    """A fresh random share key (128 bits)."""
    return secrets.token_urlsafe(16)


def share_token(secret: bytes, story_id: int, share_key: str) -> str:
    """The token of story ``story_id``'s share links: HMAC-SHA256 over ``"<id>:<key>"``, base64url, unpadded."""
    digest = hmac.new(secret, f"{story_id}:{share_key}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def token_matches(secret: bytes, story_id: int, share_key: str | None, token: str) -> bool:
    """Whether ``token`` opens story ``story_id`` (compared in constant time); never once revoked."""
    if share_key is None or not token.isascii():
        return False
    return hmac.compare_digest(share_token(secret, story_id, share_key), token)


def share_path(story_id: int, token: str) -> str:
    return f"/shared/{story_id}/{token}"


def story_path(story_id: int) -> str:
    """Where a published story is read in the archive."""
    return f"/stories/{story_id}"


def absolute(public_url: str, path: str) -> str:
    """``path`` on the archive as people reach it (``web.public_url``), or the path alone without one."""
    return public_url.rstrip("/") + path


def archive_note(public_url: str, story: Story) -> str:
    """The sentence an answer about ``story`` ends with when the archive has an address: its page
    there, and when it is not listed yet, what it waits for (the archive lists a story once it is
    finished and published). Empty without ``web.public_url``."""
    if not public_url:
        return ""
    page = f" In the archive: {absolute(public_url, story_path(story.id))}"
    finished = story.status == StoryStatus.FINISHED
    if story.published_at is None:
        until = "published" if finished else "finished and published"
        return f"{page} (readable there once {until}: /story publish {story.id})."
    return page if finished else f"{page} (readable there once finished)."


async def link_secret(tx: AsyncSession, configured: str) -> bytes:
    """What signs share links: ``configured`` (the config's ``web.secret``) when set, else the
    site's own secret, made and stored in this transaction the first time it is needed."""
    if configured:
        return configured.encode()
    return (await q.site_secret(tx, SECRET_NAME, secrets.token_urlsafe(32))).encode()
