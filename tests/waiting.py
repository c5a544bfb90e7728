"""The one way the tests wait for something that happens on its own time (a process, a worker, a
fake server): check a condition until it holds, and fail saying what was awaited.

Tests that wait for an outcome the code announces (a turn's result through ``TurnRecorder.wait``)
use that signal instead; this is for states only a look can tell: a row's status, a counter, a
port that answers, the calls a fake platform has seen.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

T = TypeVar("T")


async def until(
    condition: Callable[[], T | Awaitable[T]],
    what: str | None = None,
    *,
    timeout: float = 20,
    every: float = 0.02,
    wake: asyncio.Event | None = None,
    alive: Callable[[], None] | None = None,
    details: Callable[[], str] | None = None,
) -> T:
    """Check ``condition`` (a function or a coroutine function) until its value is truthy, and
    return that value; it is checked once more at the deadline, so a slow last step still counts.

    On timeout: AssertionError "timed out after <timeout> s waiting for <what>" (``what``
    defaults to the condition's source line), followed by ``details()`` when given (the logs of
    the processes, the calls a fake has seen). ``wake``, an event set whenever the condition may
    have changed, makes the next check come at once rather than ``every`` seconds later. ``alive``
    runs between checks and raises when waiting longer is pointless (a process that should answer
    has died), so the test fails at once, with the reason rather than a timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return cast(T, value)
        if alive is not None:
            alive()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            message = f"timed out after {timeout} s waiting for {what or _source(condition)}"
            raise AssertionError(f"{message}\n{details()}" if details is not None else message)
        if wake is None:
            await asyncio.sleep(min(every, remaining))
            continue
        wake.clear()
        try:
            await asyncio.wait_for(wake.wait(), min(every, remaining))
        except TimeoutError:
            pass


def _source(condition: Callable[[], object]) -> str:
    """The code of the condition (a lambda's whole line), to name it in a failure message."""
    try:
        return " ".join(inspect.getsource(condition).split())
    except (OSError, TypeError):
        return repr(condition)
