"""Reading a Slack request's fields strictly, so that a request Slack would never send is told apart
from a bug in the bot.

Slack always sends the fields the bot reads. A request without one (or with a number where Slack
sends a string) was made by hand, by a broken proxy or by a probe; reading it with ``body["x"]``
raised a ``KeyError`` or ``TypeError`` deep in a listener, which showed up as a traceback and a 500.
These readers raise ``MalformedRequest`` instead, which the HTTP gate (``endpoint``) and the Bolt
error handler (``SlackStory``) answer with 400 and one log line.

Messages name fields, never values: a request carries a verification token, a response URL and
whatever people typed, and none of that belongs in the log.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["Fields", "MalformedRequest", "optional_object", "optional_text", "required_object", "required_text"]

Fields = Mapping[str, Any]


class MalformedRequest(ValueError):
    """A request Slack would never send. Its text is one line naming the field, never a value."""


def required_text(source: Fields, key: str, where: str) -> str:
    """``source[key]``: a non-empty string, since every id the bot reads must name something."""
    value = source.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedRequest(f"{where} has no {key}")
    return value


def optional_text(source: Fields, key: str, where: str) -> str:
    """``source[key]`` when it is a string, ``""`` when it is absent or null (Slack sends both)."""
    value = source.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedRequest(f"{where}: {key} is not a string")
    return value


def required_object(source: Fields, key: str, where: str) -> Fields:
    """``source[key]``: a JSON object, whose fields are read next."""
    value = source.get(key)
    if not isinstance(value, dict):
        raise MalformedRequest(f"{where} has no {key} object")
    return value


def optional_object(source: Fields, key: str, where: str) -> Fields:
    """``source[key]`` when it is a JSON object, ``{}`` when it is absent or null."""
    value = source.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedRequest(f"{where}: {key} is not an object")
    return value
