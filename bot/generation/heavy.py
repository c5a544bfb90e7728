"""Heavy work in a thread that leaves the event loop its share of the interpreter.

Importing torch and transformers and loading a model run in a worker thread, never on the event
loop, but they are long runs of Python code holding the GIL. Python hands the GIL to a waiting
thread only every ``sys.getswitchinterval()`` (5 ms by default), and every acknowledgement the
loop sends needs it many times (each aiosqlite statement and each HTTP call hops threads), so
while a model loads an acknowledgement could wait a second or more. Measured with
``bench.slack_acks``: a shorter interval while heavy work runs brought the slowest
acknowledgements during a load from about 2 s to well under 1 s. It is put back when the last
heavy job ends, so it costs nothing the rest of the time.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

HEAVY_SWITCH_INTERVAL_S = 0.0005

_running = 0
_usual_interval = sys.getswitchinterval()


async def run_heavy(function: Callable[[], T]) -> T:
    """``function()`` in a thread, with a short GIL switch interval while it (or another) runs."""
    global _running, _usual_interval
    if _running == 0:
        _usual_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(_usual_interval, HEAVY_SWITCH_INTERVAL_S))
    _running += 1
    try:
        return await asyncio.to_thread(function)
    finally:
        _running -= 1
        if _running == 0:
            sys.setswitchinterval(_usual_interval)
