"""One backend's batches on the model thread, fed by many bot turns at once (continuous batching).

Each bot turn awaits ``Batcher.generate`` for its own request. The first request starts the
worker on the model thread, which calls ``backend.generate``; requests that arrive while it runs
are handed to it between steps through ``more``, up to ``max_batch`` rows in flight, and each
one is answered the moment its own row is finished. The worker ends when nothing is left.

All model work, ``Batcher.load`` too, runs on the process's one model thread
(``heavy.MODEL_THREAD``: why, there), shared by the batchers of different models: while another
batcher's work waits for it, a running batch takes no newcomers and gives the thread up when its
rows are done; its waiting requests queue up again behind the other work.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, replace

from bot.config import Adapter
from bot.generation.backend import Backend, GenerationRequest
from bot.generation.heavy import MODEL_THREAD, run_heavy

log = logging.getLogger(__name__)


@dataclass
class _Ticket:
    """A request and the future (on the event loop) that its text goes to."""

    request: GenerationRequest
    future: asyncio.Future[str]
    loop: asyncio.AbstractEventLoop
    done: bool = False


class Batcher:
    """Runs a backend's batches on the model thread; requests join a running batch at its next step."""

    def __init__(self, backend: Backend, max_batch: int) -> None:
        self.backend = backend
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._waiting: deque[_Ticket] = deque()
        self._in_flight = 0
        self._worker: Future[None] | None = None
        self._adapters: set[Adapter] = set()  # loaded on the backend's model
        self.tokens_written = 0  # in every text the backend answered, by its tokenizer (for the metrics)

    async def load(self, adapter: Adapter | None = None) -> None:
        """Load the backend's model, and ``adapter`` on it (if not yet), on the model thread. Once
        loaded, nothing is queued there: every turn asks, and a queued no-op would stop the running
        batch taking newcomers."""
        if not self.backend.loaded or (adapter is not None and adapter not in self._adapters):
            await run_heavy(lambda: self.backend.load(adapter), model_work=True)
            if adapter is not None:
                self._adapters.add(adapter)

    async def generate(self, request: GenerationRequest) -> str:
        """The raw text for ``request``, written alongside whatever else is being written."""
        loop = asyncio.get_running_loop()
        ticket = _Ticket(request, loop.create_future(), loop)
        ticket.request = replace(request, on_done=lambda text: self._finish(ticket, text))
        with self._lock:
            self._waiting.append(ticket)
            if self._worker is None:
                self._start_worker()
        return await ticket.future

    def _start_worker(self) -> None:
        """Queue the worker on the model thread (call with the lock held)."""
        self._worker = MODEL_THREAD.submit(self._work)
        self._worker.add_done_callback(_log_failure)

    # ------------------------------------------------------------------ worker thread

    def _work(self) -> None:
        while True:
            with self._lock:
                batch = self._take()
                if not batch:
                    self._worker = None
                    return
            self._run(batch)
            if MODEL_THREAD.contended:  # another model's work waits: its turn, then ours again
                with self._lock:
                    self._worker = None
                    if self._waiting:
                        self._start_worker()
                return

    def _run(self, batch: list[_Ticket]) -> None:
        handed = list(batch)

        def more() -> list[GenerationRequest]:
            if MODEL_THREAD.contended:
                return []
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
            self._count(text)

    def _count(self, text: str) -> None:
        """Add ``text``'s tokens to ``tokens_written``: re-counted here, on the worker thread, once the
        turn has its text, since neither backend hands over its own count; a count that fails costs
        only the figure."""
        if not text:
            return
        try:
            tokens = self.backend.count_tokens(text)
        except Exception as error:
            log.debug("could not count the tokens of a written text: %s", error)
            return
        with self._lock:
            self.tokens_written += tokens

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


def _log_failure(worker: Future[None]) -> None:
    """A worker that died (it never should: the backend's errors go to the turns) is logged."""
    error = worker.exception() if not worker.cancelled() else None
    if error is not None:
        log.error("the model thread's batch worker failed", exc_info=error)
