"""The generation queue: takes bot turns from the job table and writes them with a backend.

Jobs live in the database (``GenerationJob`` rows), so the queue keeps no state that a crash
could lose: at start, jobs left running are set back to pending and run again; a job's passage
is stored by ``SessionManager.finish_job``, which stores it only while the job is still running
(so a cancelled or already-finished job never adds a passage).

Model work runs in a worker thread (``asyncio.to_thread``): the event loop only waits on it,
so chat interactions are answered while the model writes. Text streams back to listeners
at most once per ``stream_interval_s``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bot.config import Config
from bot.context import PromptLimits, build_prompt
from bot.generation.backend import Backend, GenerationRequest, ModelUnavailable, Sampling
from bot.generation.text import clean_passage, speaker_stops
from bot.results import Result
from bot.sessions import BOT_NAME, JobSpec, SessionManager

log = logging.getLogger(__name__)

EMPTY_PASSAGE_ATTEMPTS = 2


class TurnListener(Protocol):
    """What an adapter implements to show the bot's turns in its channels."""

    async def turn_started(self, job: JobSpec) -> None: ...

    async def turn_progress(self, job: JobSpec, text: str) -> None: ...

    async def turn_finished(self, job: JobSpec, result: Result | None) -> None:
        """``result`` holds the stored passage, or an error; None when the turn was cancelled."""


@dataclass
class _Running:
    spec: JobSpec
    cancelled: threading.Event


class GenerationQueue:
    def __init__(
        self,
        sessions: SessionManager,
        config: Config,
        backend_factory: Callable[[str], Backend],
    ) -> None:
        self.sessions = sessions
        self.config = config
        self._backend_factory = backend_factory
        self._backends: dict[str, Backend] = {}
        self._listeners: list[TurnListener] = []
        self._wake = asyncio.Event()
        self._running: dict[int, _Running] = {}
        self._worker: asyncio.Task[None] | None = None
        self._watchers: set[asyncio.Task[None]] = set()
        sessions.on_jobs_changed(self.wake)

    def add_listener(self, listener: TurnListener) -> None:
        self._listeners.append(listener)

    def wake(self) -> None:
        """New or cancelled jobs: look at the table again."""
        self._wake.set()
        if self._running:
            task = asyncio.get_running_loop().create_task(self._stop_cancelled())
            self._watchers.add(task)
            task.add_done_callback(self._watchers.discard)

    async def start(self) -> None:
        recovered = await self.sessions.requeue_interrupted_jobs()
        if recovered:
            log.info("re-running %d bot turns interrupted by a restart", recovered)
        self._worker = asyncio.create_task(self._work(), name="generation-queue")
        self._wake.set()

    async def stop(self) -> None:
        """Stop taking jobs; a turn being written is abandoned and re-run at the next start."""
        for running in self._running.values():
            running.cancelled.set()
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._worker = None

    def backend(self, model_name: str) -> Backend:
        if model_name not in self._backends:
            self._backends[model_name] = self._backend_factory(model_name)
        return self._backends[model_name]

    async def warm_up(self) -> str | None:
        """Load the default model now; returns the one-line problem if it cannot be loaded."""
        try:
            await asyncio.to_thread(self.backend(self.config.model.name).load)
        except ModelUnavailable as error:
            return str(error)
        return None

    # ------------------------------------------------------------------ the worker

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while specs := await self.sessions.claim_jobs(limit=1):
                for spec in specs:
                    await self._run_job(spec)

    async def _stop_cancelled(self) -> None:
        for job_id, running in list(self._running.items()):
            if not await self.sessions.job_is_open(job_id):
                running.cancelled.set()

    async def _run_job(self, spec: JobSpec) -> None:
        cancelled = threading.Event()
        self._running[spec.job_id] = _Running(spec, cancelled)
        await self._notify("turn_started", spec)
        stream = _Throttle(self.config.generation.stream_interval_s)
        pump = asyncio.create_task(self._pump(spec, stream))
        loop = asyncio.get_running_loop()

        def on_text(text: str) -> None:  # worker thread
            loop.call_soon_threadsafe(stream.put, text)

        try:
            # Loading (a download, the first time) is not part of the turn's time limit.
            await asyncio.to_thread(self.backend(str(spec.settings["model"])).load)
            text = await asyncio.wait_for(
                asyncio.to_thread(self._write_passage, spec, on_text, cancelled),
                timeout=self.config.generation.job_timeout_s,
            )
        except asyncio.TimeoutError:
            cancelled.set()
            result = await self.sessions.fail_job(
                spec.job_id, "The bot took too long to write; try /story continue again."
            )
        except ModelUnavailable as error:
            result = await self.sessions.fail_job(spec.job_id, str(error))
        except Exception:
            log.exception("bot turn %d failed", spec.job_id)
            result = await self.sessions.fail_job(spec.job_id, "The bot hit an internal error; try again.")
        else:
            if cancelled.is_set():
                result = None
            elif not text:
                result = await self.sessions.fail_job(
                    spec.job_id, "The bot could not think of anything; try /story continue with a direction."
                )
            else:
                result = await self.sessions.finish_job(spec.job_id, text, self._generation_record(spec))
        finally:
            self._running.pop(spec.job_id, None)
            stream.close()
        await pump
        await self._notify("turn_finished", spec, result)

    def _write_passage(self, spec: JobSpec, on_text: Callable[[str], None], cancelled: threading.Event) -> str:
        """Worker thread: build the prompt, generate, clean; one more try if the passage is empty."""
        backend = self.backend(str(spec.settings["model"]))
        sampling = self._sampling(spec)
        limits = PromptLimits(
            budget_tokens=max(backend.context_length - sampling.max_new_tokens, 1),
            lore_max_tokens=self.config.story.lore_max_tokens,
            note_depth=self.config.story.note_depth,
        )
        prompt = build_prompt(spec.story, limits, backend.count_tokens)
        stops = speaker_stops((*spec.speaker_names, BOT_NAME))
        for _ in range(EMPTY_PASSAGE_ATTEMPTS):
            request = GenerationRequest(prompt, sampling, stops, on_text, cancelled)
            text = clean_passage(backend.generate([request])[0], stops)
            if text or cancelled.is_set():
                return text
        return ""

    def _sampling(self, spec: JobSpec) -> Sampling:
        model = self.config.model
        settings = spec.settings
        return Sampling(
            temperature=float(settings["temperature"]),  # type: ignore[arg-type]
            top_k=int(settings["top_k"]),  # type: ignore[call-overload]
            top_p=float(settings["top_p"]),  # type: ignore[arg-type]
            repetition_penalty=float(settings["repetition_penalty"]),  # type: ignore[arg-type]
            no_repeat_ngram_size=model.no_repeat_ngram_size,
            max_new_tokens=int(settings["length"]),  # type: ignore[call-overload]
            min_new_tokens=model.min_new_tokens,
            bad_words=tuple(model.bad_words),
        )

    def _generation_record(self, spec: JobSpec) -> dict[str, object]:
        """What is stored with the passage so an export can say how it was written."""
        return {**spec.settings, "backend": self.config.model.backend}

    async def _pump(self, spec: JobSpec, stream: _Throttle) -> None:
        async for text in stream:
            await self._notify("turn_progress", spec, text)

    async def _notify(self, event: str, *args: object) -> None:
        for listener in self._listeners:
            try:
                await getattr(listener, event)(*args)
            except Exception:  # one broken channel must not stop the queue
                log.exception("listener %r failed on %s", listener, event)


class _Throttle:
    """Latest-value stream: yields the newest text at most once per ``interval`` seconds."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._latest: str | None = None
        self._closed = False
        self._changed = asyncio.Event()
        self._last_sent = 0.0

    def put(self, text: str) -> None:
        self._latest = text
        self._changed.set()

    def close(self) -> None:
        self._closed = True
        self._changed.set()

    def __aiter__(self) -> _Throttle:
        return self

    async def __anext__(self) -> str:
        while True:
            if self._closed:
                raise StopAsyncIteration
            await self._changed.wait()
            self._changed.clear()
            wait = self._last_sent + self.interval - time.monotonic()
            if wait > 0 and not self._closed:
                await asyncio.sleep(wait)
            if self._closed:
                raise StopAsyncIteration
            if self._latest is not None:
                text, self._latest = self._latest, None
                self._last_sent = time.monotonic()
                return text
