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
import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

HEAVY_SWITCH_INTERVAL_S = 0.0005

_running = 0
_usual_interval = sys.getswitchinterval()


async def run_heavy(function: Callable[[], T], model_work: bool = False) -> T:
    """``function()`` in a thread (``MODEL_THREAD`` for ``model_work``, else the loop's pool),
    with a short GIL switch interval while it (or another) runs."""
    with heavy_work():
        if model_work:
            return await asyncio.wrap_future(MODEL_THREAD.submit(function))
        return await asyncio.to_thread(function)


@contextlib.contextmanager
def heavy_work() -> Iterator[None]:
    """A short GIL switch interval while the block (or other heavy work) runs: for the event loop
    awaiting heavy work in a thread ``run_heavy`` does not choose (the classifier's own)."""
    global _running, _usual_interval
    if _running == 0:
        _usual_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(_usual_interval, HEAVY_SWITCH_INTERVAL_S))
    _running += 1
    try:
        yield
    finally:
        _running -= 1
        if _running == 0:
            sys.setswitchinterval(_usual_interval)


class ModelThread:
    """The process's one thread for model work: every backend's loading and generating.

    torch's CPU threads (OpenMP) are a team per calling thread, and once two teams share the
    cores, each keeps its threads asleep between operations rather than spinning: a decoding step
    (hundreds of small parallel operations) then waits on every wake-up. SmolLM2 decoded at 20 ms
    a step while only one thread ever called torch, 31-35 ms once a second one had (2 AVX2
    cores), on either thread. So all model work goes through this one thread; ``contended`` says
    when other work waits for it, so a long-running batch can make way. The one exception is the
    content classifier, which has a thread of its own (``bot.safety.classifier`` says why).
    """

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._lock = threading.Lock()
        self._queued = 0

    def submit(self, function: Callable[[], T]) -> Future[T]:
        """``function()`` on the model thread. It counts as queued (``contended``) until it
        starts, or until it is cancelled before it starts (an ``asyncio.wait_for`` on
        ``run_heavy`` that timed out): a job that will never run must not keep a running batch
        from taking new turns (``Batcher.more``)."""
        with self._lock:
            self._queued += 1

        def started() -> T:
            self._dequeue()
            return function()

        def ended(future: Future[T]) -> None:
            if future.cancelled():  # only a job that has not started can be cancelled
                self._dequeue()

        future = self._executor.submit(started)
        future.add_done_callback(ended)
        return future

    @property
    def contended(self) -> bool:
        """Whether work is queued behind what runs now."""
        return self._queued > 0

    def _dequeue(self) -> None:
        with self._lock:
            self._queued -= 1


MODEL_THREAD = ModelThread()
