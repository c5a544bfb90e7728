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
from bot.generation.text import clean_passage, speaker_stops, visible_text
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
    """A job being written: how to stop it, and where its text streams."""

    spec: JobSpec
    cancelled: threading.Event
    stream: _Throttle
    timed_out: bool = False

    def time_out(self) -> None:
        self.timed_out = True
        self.cancelled.set()


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
            # Channels that ask at nearly the same moment (a burst of commits a few ms apart)
            # should share one batch rather than the first one running alone.
            await asyncio.sleep(self.config.generation.batch_window_ms / 1000)
            self._wake.clear()
            # Oldest first, and a channel never has two open jobs: so every waiting channel
            # gets a slot in the next batch before any channel gets a second turn.
            while specs := await self.sessions.claim_jobs(limit=self.config.generation.max_batch):
                by_model: dict[str, list[JobSpec]] = {}
                for spec in specs:
                    by_model.setdefault(str(spec.settings["model"]), []).append(spec)
                for model_name, batch in by_model.items():
                    await self._run_batch(model_name, batch)

    async def _stop_cancelled(self) -> None:
        for job_id, running in list(self._running.items()):
            if not await self.sessions.job_is_open(job_id):
                running.cancelled.set()

    async def _run_batch(self, model_name: str, specs: list[JobSpec]) -> None:
        loop = asyncio.get_running_loop()
        runs = [_Running(spec, threading.Event(), _Throttle(self.config.generation.stream_interval_s))
                for spec in specs]
        for run in runs:
            self._running[run.spec.job_id] = run
            await self._notify("turn_started", run.spec)
        pumps = [asyncio.create_task(self._pump(run)) for run in runs]
        timers: list[asyncio.TimerHandle] = []
        backend = self.backend(model_name)
        try:
            # Loading (a download, the first time) is not part of a turn's time limit.
            await asyncio.to_thread(backend.load)
            timers = [loop.call_later(self.config.generation.job_timeout_s, run.time_out) for run in runs]
            texts = await asyncio.to_thread(self._write_passages, backend, runs, loop)
            results = [await self._store(run, text) for run, text in zip(runs, texts)]
        except ModelUnavailable as error:
            results = [await self.sessions.fail_job(run.spec.job_id, str(error)) for run in runs]
        except Exception:
            log.exception("bot turns %s failed", [run.spec.job_id for run in runs])
            results = [await self.sessions.fail_job(run.spec.job_id, "The bot hit an internal error; try again.")
                       for run in runs]
        finally:
            for timer in timers:
                timer.cancel()
            for run in runs:
                self._running.pop(run.spec.job_id, None)
                run.stream.close()
        await asyncio.gather(*pumps)
        for run, result in zip(runs, results):
            await self._notify("turn_finished", run.spec, result)

    async def _store(self, run: _Running, text: str) -> Result | None:
        if run.timed_out:
            return await self.sessions.fail_job(
                run.spec.job_id, "The bot took too long to write; try /story continue again."
            )
        if run.cancelled.is_set():
            return None
        if not text:
            return await self.sessions.fail_job(
                run.spec.job_id, "The bot could not think of anything; try /story continue with a direction."
            )
        return await self.sessions.finish_job(run.spec.job_id, text, self._generation_record(run.spec))

    def _write_passages(self, backend: Backend, runs: list[_Running], loop: asyncio.AbstractEventLoop) -> list[str]:
        """Worker thread: build the prompts, generate them as one batch, clean the texts.

        A passage that comes out empty after cleaning gets one more try.
        """
        requests = [self._request(backend, run, loop) for run in runs]
        texts = [""] * len(runs)
        pending = list(range(len(runs)))
        for _ in range(EMPTY_PASSAGE_ATTEMPTS):
            raw = backend.generate([requests[i] for i in pending])
            for i, text in zip(pending, raw):
                texts[i] = clean_passage(text, requests[i].stop_texts)
            pending = [i for i in pending if not texts[i] and not runs[i].cancelled.is_set()]
            if not pending:
                break
        return texts

    def _request(self, backend: Backend, run: _Running, loop: asyncio.AbstractEventLoop) -> GenerationRequest:
        spec = run.spec
        sampling = self._sampling(spec)
        limits = PromptLimits(
            budget_tokens=max(backend.context_length - sampling.max_new_tokens, 1),
            lore_max_tokens=self.config.story.lore_max_tokens,
            note_depth=self.config.story.note_depth,
        )

        stops = speaker_stops((*spec.speaker_names, BOT_NAME))

        def on_text(text: str) -> None:  # worker thread
            shown = visible_text(text, stops).strip()
            if shown:
                loop.call_soon_threadsafe(run.stream.put, shown)

        return GenerationRequest(
            prompt=build_prompt(spec.story, limits, backend.count_tokens),
            sampling=sampling,
            stop_texts=stops,
            on_text=on_text,
            cancelled=run.cancelled,
            cache_key=spec.channel.key,
        )

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

    async def _pump(self, run: _Running) -> None:
        async for text in run.stream:
            await self._notify("turn_progress", run.spec, text)

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
