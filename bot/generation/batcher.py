"""One backend's worker thread, fed by many bot turns at once (continuous batching).

Each bot turn awaits ``Batcher.generate`` for its own request. The first request starts a
worker thread that calls ``backend.generate``; requests that arrive while it runs are handed to
it between steps through ``more``, up to ``max_batch`` rows in flight, and each one is answered
the moment its own row is finished. The thread ends when nothing is left, so an idle bot holds
no thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass, replace

from bot.generation.backend import Backend, GenerationRequest


@dataclass
class _Ticket:
    """A request and the future (on the event loop) that its text goes to."""

    request: GenerationRequest
    future: asyncio.Future[str]
    loop: asyncio.AbstractEventLoop
    done: bool = False


class Batcher:
    """Runs a backend's batches in a worker thread; requests join a running batch at its next step."""

    def __init__(self, backend: Backend, max_batch: int) -> None:
        self.backend = backend
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._waiting: deque[_Ticket] = deque()
        self._in_flight = 0
        self._worker: asyncio.Future[None] | None = None

    async def generate(self, request: GenerationRequest) -> str:
        """The raw text for ``request``, written alongside whatever else is being written."""
        loop = asyncio.get_running_loop()
        ticket = _Ticket(request, loop.create_future(), loop)
        ticket.request = replace(request, on_done=lambda text: self._finish(ticket, text))
        with self._lock:
            self._waiting.append(ticket)
            start = self._worker is None
            if start:
                # Through the loop's executor, so closing the loop waits for the thread to end.
                self._worker = asyncio.ensure_future(asyncio.to_thread(self._work))
        return await ticket.future

    # ------------------------------------------------------------------ worker thread

    def _work(self) -> None:
        while True:
            with self._lock:
                batch = self._take()
                if not batch:
                    self._worker = None
                    return
            self._run(batch)

    def _run(self, batch: list[_Ticket]) -> None:
        handed = list(batch)

        def more() -> list[GenerationRequest]:
            with self._lock:
                joining = self._take()
            handed.extend(joining)
            return [ticket.request for ticket in joining]

        error: Exception | None = None
        try:
            self.backend.generate([ticket.request for ticket in batch], more)
        except Exception as failure:  # reaches every turn still in the batch, which reports it
            error = failure
        for ticket in handed:  # none is left waiting, whatever the backend did
            self._fail(ticket, error or RuntimeError("the backend returned without finishing this request"))

    def _take(self) -> list[_Ticket]:
        """Waiting tickets that fit beside those in flight (call with the lock held).

        A request cancelled while it waited is answered with no text, never started.
        """
        taken: list[_Ticket] = []
        while self._waiting and self._in_flight < self.max_batch:
            ticket = self._waiting.popleft()
            if ticket.request.cancelled.is_set():
                ticket.done = True
                _resolve(ticket, "")
                continue
            self._in_flight += 1
            taken.append(ticket)
        return taken

    def _finish(self, ticket: _Ticket, text: str) -> None:
        if self._settle(ticket):
            _resolve(ticket, text)

    def _fail(self, ticket: _Ticket, error: BaseException) -> None:
        if self._settle(ticket):
            ticket.loop.call_soon_threadsafe(_set_exception, ticket.future, error)

    def _settle(self, ticket: _Ticket) -> bool:
        """Mark a ticket answered; False when it already was."""
        with self._lock:
            if ticket.done:
                return False
            ticket.done = True
            self._in_flight -= 1
            return True


def _resolve(ticket: _Ticket, text: str) -> None:
    ticket.loop.call_soon_threadsafe(_set_result, ticket.future, text)


def _set_result(future: asyncio.Future[str], text: str) -> None:
    if not future.done():  # the turn may have been cancelled (the bot is stopping)
        future.set_result(text)


def _set_exception(future: asyncio.Future[str], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
