"""The generation queue: takes bot turns from the job table and writes them with a backend.

Jobs live in the database (``GenerationJob`` rows), so the queue keeps no state that a crash
could lose: jobs left running by a dead process are set back to pending and run again (at
start on SQLite, which serves one process; once their lease runs out on PostgreSQL); a job's passage
is stored by ``JobBook.finish_job``, which stores it only while the job is still running
(so a cancelled or already-finished job never adds a passage).

The job row is also the turn's outbox: the message that shows the turn is recorded on it, and an
ended turn stays owed until its platform's shower has shown it; whichever process sweeps next
shows what a dead process left unshown (``_show_owed``; docs/ARCHITECTURE.md §4 and §6).

Each claimed job is one ``_turn`` task. Model work runs in the backend's worker thread
(``Batcher``): the event loop only waits on it, so chat interactions are answered while the
model writes. A turn claimed while others are being written joins their batch at the next
step, and each turn is stored the moment its own passage is done. Text streams back to
listeners through one throttle (``_Throttle``): the newest text, ``stream_interval_s`` after the
listeners were done with the last one. It is the only pace: the adapters show what they are told.

Nothing that goes wrong stops the queue for good. The worker survives its own errors (a
database locked past every retry, a network failure, a bug): it logs the first of a run of
failures with its traceback, backs off, and carries on; a turn whose passage cannot be stored
stays running in the table and is taken up again once its lease runs out. If the worker task
ends anyway (cancelled from outside), a supervisor starts it again. ``health()`` says how it
goes, for whoever watches the process (and, later, a health endpoint).

On PostgreSQL the roles may be split between processes (``bot.app.Role``): a chat process's
queue (``claims=False``) writes nothing and shows what workers write (its ``Follower``,
``bot.generation.relay``), a worker's queue has no showers and relays its turns to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Generic, Protocol, TypeVar

from bot.config import Config, Writer
from bot.context import Budget, ContextReport, Prompt, PromptLimits, compose_prompt
from bot.failures import FIRST_BACKOFF_S, MAX_BACKOFF_S, FailureRun
from bot.generation.backend import Backend, GenerationRequest, ModelUnavailable, Sampling, longest_passage
from bot.generation.batcher import Batcher
from bot.generation.heavy import run_heavy
from bot.generation.text import clean_passage, speaker_stops, talks_as_assistant, visible_text
from bot.jobs import JobBook, JobKind, JobSpec
from bot.language import Language, language_of, written_in_another
from bot.recaps import LONGEST_SUMMARY_REQUEST, recap_prompt, recap_source
from bot.results import BOT_NAME, Result
from bot.safety.checker import Verdict
from bot.safety.checks import Checks
from bot.safety.gate import StreamGate

log = logging.getLogger(__name__)
T = TypeVar("T")

# A passage that comes out empty after cleaning, or clearly in another language than the story
# (a small model answers a Chinese story in English now and then), is written again, up to this
# many tries in all; the last non-empty one is kept if none fits.
PASSAGE_ATTEMPTS = 3
STOP_GRACE_S = 10.0  # how long stop() lets the worker and the turns wind down before cancelling
NOT_STORED = "The bot's passage could not be saved just now; it will be written again shortly."
INTERNAL_ERROR = "The bot hit an internal error; try again."
# What the channel sees instead of a passage the content checks stopped (kept, withheld, for moderators).
CHECKED_OUT_NOTICE = (
    "The bot's passage did not pass this story's content checks (rated {rating}), so it is not shown; "
    "try /story continue with a direction."
)
CHECKS_DOWN_NOTICE = (
    "The content checks are not answering, so the bot's passage is held back; try /story continue in a moment."
)
# What a turn shows when the database did not confirm its outcome. It may have been stored all the
# same (the commit's reply was lost), so showing this never marks the turn shown.
UNSURE = Result.error(NOT_STORED)
OWED_PER_SWEEP = 100  # unshown turns taken per sweep (one per heartbeat); the rest wait for the next


@dataclass(frozen=True, slots=True)
class QueueHealth:
    """How the generation worker is doing: what a health check reports."""

    model_ready: bool  # the default model is loaded: bot turns start without waiting for it
    worker_running: bool
    restarts: int  # times the supervisor had to start the worker again
    errors: int  # errors the worker survived since the process started
    failing_since: float | None  # time.time() of the first failure of the current run, if failing
    last_error: str | None
    turns_running: int
    tokens_written: int  # by this process's models since it started, every attempt and recap (Batcher)

    @property
    def healthy(self) -> bool:
        return self.worker_running and self.failing_since is None

    @property
    def ready(self) -> bool:
        """Ready for traffic: healthy, and the model loaded, so a bot turn starts at once."""
        return self.healthy and self.model_ready

    def as_dict(self) -> dict[str, object]:
        """The figures as JSON-ready values, with the verdicts, for health endpoints."""
        return {**asdict(self), "healthy": self.healthy, "ready": self.ready}


class TurnGone(Exception):
    """What a shower raises when the place that would show a turn is gone for good (the channel
    deleted or archived, the bot removed): the turn is then owed no more."""


class Follower(Protocol):
    """What shows, in a chat process, the turns that worker processes write while they are
    written (``bot.generation.relay.TurnFollower``); the end goes through the outbox, here."""

    async def settle(self, job_id: int) -> str | None:
        """Stop showing the turn's progress (its end is to be shown now); returns the ref of the
        messages that show it, as last recorded here, if any."""

    async def beat(self) -> None:
        """Renew this process's claims on the turns it shows, as the heartbeat does for jobs."""


class TurnListener(Protocol):
    """What an adapter implements to show the bot's turns in its channels.

    Every listener hears every turn. The one added with ``shows=<platform>`` is that platform's
    shower, and its answers count: the message ref ``turn_started`` returns is recorded with the
    job, and a ``turn_finished`` that returns (rather than raises) marks the turn shown. Turns it
    has not shown (its process died first, or the platform refused) are handed to it again, by
    this process or another, as ``turn_finished`` calls without a ``turn_started``.
    """

    async def turn_started(self, job: JobSpec) -> str | None:
        """Show that the turn is being written, in ``job.message_ref``'s message if there is one
        (a turn taken over from a dead process); returns the ref of the message that shows it."""

    async def turn_progress(self, job: JobSpec, text: str) -> str | None:
        """Show the text so far; returns the ref of the messages that show the turn when it changed
        (a long passage spilled into a second message), else None."""

    async def turn_finished(self, job: JobSpec, result: Result | None) -> str | None:
        """Show the turn's end: ``result`` holds the stored passage, its candidates for a vote
        (``Result.ballot``), or an error; None when the turn was withdrawn. Returns once it is
        shown, with the ref of the messages that show it when they changed (a ballot's are
        recorded, for the winner to be drawn in them); raises if the platform would not take it."""


@dataclass
class _Running:
    """A job being written: how to stop it, and where its text streams."""

    spec: JobSpec
    cancelled: threading.Event
    stream: _Throttle[tuple[int, str]]  # (the attempt at the passage, its visible text)
    gate: StreamGate
    timed_out: bool = False
    message_ref: str | None = None  # the messages that show it, as last recorded
    recording: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Stored with the passage (``_generation_record``): what the model continued, and when it began.
    story_prompt: str = ""
    writing_since: float = 0.0
    # Words the checks found in an attempt the bot writes again: banned for the rest of the turn.
    banned: tuple[str, ...] = ()
    attempt: int = 0  # how many times the passage was begun: the stream gate starts over each time
    first_passage: int = 0  # where the turn's prompt window starts: passages before it fell out

    def time_out(self) -> None:
        self.timed_out = True
        self.cancelled.set()


class GenerationQueue:
    def __init__(
        self,
        jobs: JobBook,
        config: Config,
        backend_factory: Callable[[str], Backend],
        checks: Checks,
        *,
        claims: bool = True,
    ) -> None:
        self.jobs = jobs
        self.config = config
        self.checks = checks
        # False in a chat process that leaves the writing to workers (``--no-worker``): it claims
        # no job and loads no model, but shows turns (the owed ones, and its follower's).
        self.claims = claims
        self._follower: Follower | None = None
        self._backend_factory = backend_factory
        self._batchers: dict[str, Batcher] = {}
        self._listeners: list[TurnListener] = []
        self._showers: dict[str, TurnListener] = {}  # platform -> the listener that shows its turns
        self._showing: set[int] = set()  # jobs whose end this process is showing now
        self._sweep_everything = False  # the next sweep of owed showings may take all of them
        self._sweep_owed = False  # a turn ended outside the queue (a vote closed): sweep at the next wake
        self._wake = asyncio.Event()
        self._running: dict[int, _Running] = {}
        self._making_backend = asyncio.Lock()
        self._worker: asyncio.Task[None] | None = None
        self._turns: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._stopped = asyncio.Event()
        self._watchers: set[asyncio.Task[None]] = set()
        self._warming: asyncio.Task[None] | None = None
        self._restarts = 0
        self._failures = FailureRun("the generation worker", log)
        jobs.on_jobs_changed(self.wake)
        jobs.on_showings_owed(self.show_owed_soon)

    def add_listener(self, listener: TurnListener, *, shows: str | None = None) -> None:
        """Tell ``listener`` about every turn; with ``shows``, it is that platform's shower, and the
        turns a dead process left unshown there are handed to it at once."""
        self._listeners.append(listener)
        if shows is not None:
            self._showers[shows] = listener
            self._sweep_everything = True
            self._wake.set()

    def shower(self, platform: str) -> TurnListener | None:
        """The listener that shows ``platform``'s turns in this process, if any."""
        return self._showers.get(platform)

    def follow(self, follower: Follower) -> None:
        """Show turns that other processes write through ``follower`` (a chat process on PostgreSQL)."""
        self._follower = follower

    def show_owed_soon(self) -> None:
        """A turn ended outside the queue (its vote closed): show what is owed now, not at the next beat."""
        self._sweep_owed = True
        self._wake.set()

    def wake(self, *, cancelled: Collection[int] | None = None) -> None:
        """New or cancelled jobs: look at the table again. ``cancelled``: the jobs cancelled, when
        known (another process's news), so that only a turn among them is looked at again."""
        self._wake.set()
        if self._running and (cancelled is None or not self._running.keys().isdisjoint(cancelled)):
            task = asyncio.get_running_loop().create_task(self._stop_cancelled())
            self._watchers.add(task)
            task.add_done_callback(self._watchers.discard)

    async def start(self) -> None:
        """Take up interrupted turns, start the worker, and load the default model in the background.

        The default model's backend is made and loaded in a thread, in the background: making
        one imports torch and transformers, seconds of work that must not stall the event loop
        (and every acknowledgement), and the adapters answer meanwhile; ``health()`` says
        when the model is ready. A turn claimed before then waits for the same thread.
        """
        recovered = await self.jobs.requeue_interrupted_jobs(at_start=True)
        if recovered:
            log.info("re-running %d bot turns interrupted by a restart", recovered)
        self._stopping = False
        self._stopped.clear()
        self._start_worker()
        self._wake.set()
        if self.claims:
            self._warming = asyncio.create_task(self._warm_up_in_background(), name="model-warm-up")

    async def _warm_up_in_background(self) -> None:
        if problem := await self.warm_up():
            log.warning("the model is not available: %s", problem)

    def _start_worker(self) -> None:
        self._worker = asyncio.create_task(self._work(), name="generation-queue")
        self._worker.add_done_callback(self._supervise)

    def _supervise(self, worker: asyncio.Task[None]) -> None:
        """The worker ended: expected when stopping; otherwise say so and start it again."""
        if self._stopping or worker is not self._worker:
            return
        reason = "was cancelled" if worker.cancelled() else f"died: {worker.exception()!r}"
        self._restarts += 1
        log.error("the generation worker %s; starting it again (restart %d)", reason, self._restarts)
        self._start_worker()
        self._wake.set()

    def health(self) -> QueueHealth:
        default = self._batchers.get(self.config.model.name)
        return QueueHealth(
            model_ready=default is not None and default.backend.loaded,
            worker_running=self._worker is not None and not self._worker.done(),
            restarts=self._restarts,
            errors=self._failures.errors,
            failing_since=self._failures.failing_since,
            last_error=self._failures.last_error,
            turns_running=len(self._running),
            tokens_written=sum(batcher.tokens_written for batcher in self._batchers.values()),
        )

    async def stop(self) -> None:
        """Stop taking jobs; a turn being written is abandoned and re-run at the next start.

        The worker and the turns are asked to stop (the model stops at its next token) and
        given a moment to do so, so none is cut off inside a database transaction; only what is
        still busy after ``STOP_GRACE_S`` (a model download, say) is cancelled.
        """
        self._stopping = True
        self._stopped.set()
        for running in self._running.values():
            running.cancelled.set()
        self._wake.set()
        tasks = [task for task in (self._worker, self._warming, *self._turns) if task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self._worker = None

    async def backend(self, model_name: str) -> Backend:
        """The backend that writes for stories on ``model_name`` (a named model's: its base's)."""
        return (await self._batcher(self.config.writer(model_name).base)).backend

    async def _batcher(self, model_name: str) -> Batcher:
        """The base model's batcher, its backend made in a thread (making one may import torch).
        One per base: the stories on its adapters are batched with those on the base alone."""
        async with self._making_backend:
            if model_name not in self._batchers:
                backend = await run_heavy(lambda: self._backend_factory(model_name))
                self._batchers[model_name] = Batcher(backend, self.config.generation.max_batch)
        return self._batchers[model_name]

    async def warm_up(self) -> str | None:
        """Load the default model now; returns the one-line problem if it cannot be loaded."""
        try:
            batcher = await self._batcher(self.config.model.name)
            backend = batcher.backend
            await batcher.load()
        except ModelUnavailable as error:
            return str(error)
        except Exception as error:  # a warm-up runs unattended: its failure is reported, not raised
            log.exception("loading %s failed", self.config.model.name)
            return f"Could not load {self.config.model.name}: {error}".splitlines()[0]
        self._warn_if_length_cut(backend)
        return None

    def longest_passage(self, model_name: str) -> int | None:
        """The most new tokens ``model_name`` can write beside a prompt; None while it is not loaded."""
        batcher = self._batchers.get(self.config.writer(model_name).base)
        if batcher is None or not batcher.backend.loaded:  # (asking would load it, on the event loop)
            return None
        return longest_passage(batcher.backend.context_length)

    async def preview(self, spec: JobSpec) -> ContextReport | None:
        """The prompt this queue would build for ``spec``'s turn now, measured part by part
        (``/story context``); None while the story's model is not loaded (asking would load it)."""
        batcher = self._batchers.get(self._writer(spec).base)
        if batcher is None or not batcher.backend.loaded:
            return None
        backend = batcher.backend

        def measure() -> ContextReport:
            prompt, budget = self._prompt(backend, spec, self._fitted_sampling(spec, backend))
            return ContextReport.measure(prompt, budget, backend.count_tokens)

        # Counting a long story's tokens takes a while: in a thread, as for a turn's prompt.
        return await asyncio.to_thread(measure)

    def _warn_if_length_cut(self, backend: Backend) -> None:
        longest = longest_passage(backend.context_length)
        if self.config.model.max_new_tokens > longest:
            log.warning(
                "model.max_new_tokens is %d, but %s holds %d tokens: bot passages are cut to %d tokens",
                self.config.model.max_new_tokens,
                backend.model_name,
                backend.context_length,
                longest,
            )

    # ------------------------------------------------------------------ the worker

    async def _work(self) -> None:
        """Wait for work, beat, claim; survive every error of its own, backing off while they last."""
        beat_every = self.config.generation.job_lease_s / 4
        next_beat = time.monotonic() + beat_every
        backoff = FIRST_BACKOFF_S
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(next_beat - time.monotonic(), 0))
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                beating = time.monotonic() >= next_beat and not self._stopping
                if beating:
                    next_beat = time.monotonic() + beat_every
                    await self._heartbeat()
                await self._claim()
                if beating or self._sweep_everything or self._sweep_owed:
                    self._sweep_owed = False
                    await self._show_owed()
            except Exception as error:
                self._failures.failed(error)
                await self._pause(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                self._wake.set()  # look again after the pause: jobs may be waiting
                continue
            self._failures.succeeded()
            backoff = FIRST_BACKOFF_S

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the queue is stopping."""
        try:
            await asyncio.wait_for(self._stopped.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def _claim(self) -> None:
        """Start a turn for each pending job there is room for.

        Oldest first, and a channel never has two open jobs: so every waiting channel gets a
        slot before any channel gets a second turn.
        """
        max_batch = self.config.generation.max_batch
        while (
            self.claims
            and not self._stopping
            and len(self._running) < max_batch
            and (specs := await self.jobs.claim_jobs(limit=max_batch - len(self._running)))
        ):
            for spec in specs:
                run = _Running(
                    spec,
                    threading.Event(),
                    _Throttle(self.config.generation.stream_interval_s),
                    StreamGate(self.checks, spec.standard),
                    message_ref=spec.message_ref,
                )
                if self._stopping:  # claimed while stop() began: left for the next start
                    run.cancelled.set()
                self._running[spec.job_id] = run
                task = asyncio.create_task(self._turn(run), name=f"bot-turn-{spec.job_id}")
                self._turns.add(task)
                task.add_done_callback(self._turns.discard)

    async def _heartbeat(self) -> None:
        """Tell other processes this one is alive, take back turns whose process is not, and stop
        writing turns another process cancelled (an undo there wakes only that process)."""
        await self.jobs.keep_jobs_alive(list(self._running))
        if self._follower is not None:
            await self._follower.beat()
        await self._stop_cancelled()
        if recovered := await self.jobs.requeue_interrupted_jobs():
            log.warning("re-running %d bot turns whose process stopped answering", recovered)

    async def _stop_cancelled(self) -> None:
        """Stop writing turns that were undone, retried or ended meanwhile."""
        try:
            for job_id, running in list(self._running.items()):
                if not await self.jobs.job_is_open(job_id):
                    running.cancelled.set()
        except Exception as error:  # the worker's next look at the table catches up
            log.warning("could not check for cancelled bot turns: %s", error)

    async def _turn(self, run: _Running) -> None:
        """Write one job's passage and store it (or its error); then make room for the next job."""
        if run.spec.kind == JobKind.RECAP:
            await self._recap(run)
            return
        # Shown beside the writing, so a slow platform never holds up the model.
        started = asyncio.create_task(self._show_start(run), name=f"show-start-{run.spec.job_id}")
        pump = asyncio.create_task(self._pump(run))
        timer: asyncio.TimerHandle | None = None
        try:
            writer = self._writer(run.spec)
            batcher = await self._batcher(writer.base)
            # Loading (a download, the first time) is not part of a turn's time limit.
            await batcher.load(writer.adapter)
            loop = asyncio.get_running_loop()
            timer = loop.call_later(self.config.generation.job_timeout_s, run.time_out)
            run.writing_since = time.monotonic()
            if run.spec.candidates > 1:
                outcome = self._store_candidates(run, await self._write_candidates(batcher, run, loop))
            else:
                outcome = self._store(run, *await self._write_checked(batcher, run, loop))
            result = await self._settle(run, outcome)
        except ModelUnavailable as error:
            result = await self._settle(run, self.jobs.fail_job(run.spec.job_id, str(error)))
        except Exception:
            log.exception("bot turn %s failed", run.spec.job_id)
            result = await self._settle(run, self.jobs.fail_job(run.spec.job_id, INTERNAL_ERROR))
        finally:
            if timer is not None:
                timer.cancel()
            self._showing.add(run.spec.job_id)  # (before it leaves _running: a sweep must not take it)
            self._running.pop(run.spec.job_id, None)
            run.stream.close()
            self._wake.set()
        await pump
        await started
        if result is not None or not self._stopping:
            # (A turn cut short by a stop is not "withdrawn": it runs again at the next start.)
            await self._show_end(replace(run.spec, message_ref=run.message_ref), result)
        self._showing.discard(run.spec.job_id)
        written = result is not None and (result.passage is not None or result.ballot is not None)
        if written and run.first_passage > run.spec.story.recap_covers:  # (the prompt's cut: whichever candidate wins)
            await self._ask_for_recap(run)  # after the showing: the channel never waits for it

    async def _ask_for_recap(self, run: _Running) -> None:
        """Passages fell out of the turn's prompt that the recap does not cover: queue a recap."""
        if not self.config.story.recap_max_tokens:
            return
        try:
            await self.jobs.queue_recap(run.spec.story_id, run.spec.passage_seqs[run.first_passage - 1])
        except Exception as error:  # the next turn asks again
            log.warning("could not queue a recap of story %d: %s", run.spec.story_id, error)

    async def _recap(self, run: _Running) -> None:
        """Write and store a recap job's summary: never shown in the channel, so no listener hears
        of it; one the checks stop, or that comes out empty, is dropped (the next turn asks again)."""
        spec, timer = run.spec, None
        try:
            writer = self._writer(spec)
            batcher = await self._batcher(writer.base)
            await batcher.load(writer.adapter)
            timer = asyncio.get_running_loop().call_later(self.config.generation.job_timeout_s, run.time_out)
            made = await asyncio.to_thread(self._recap_request, batcher.backend, run)
            text, covers_up_to = "", 0
            if made is not None:
                request, covers_up_to = made
                text = clean_passage(await batcher.generate(request), request.stop_texts)
            if text and not run.cancelled.is_set():
                verdict = await self.checks.judge(text, spec.standard)
                if not verdict.passed:
                    log.info("the recap of story %d did not pass the %s check", spec.story_id, verdict.checker)
                    text = ""
            await self.jobs.finish_recap(spec.job_id, text if not run.cancelled.is_set() else None, covers_up_to)
        except Exception:
            log.exception("the recap of story %d failed", spec.story_id)
            with contextlib.suppress(Exception):  # else it runs again once its lease runs out
                await self.jobs.finish_recap(spec.job_id, None, 0)
        finally:
            if timer is not None:
                timer.cancel()
            self._running.pop(spec.job_id, None)
            run.stream.close()
            self._wake.set()

    def _recap_request(self, backend: Backend, run: _Running) -> tuple[GenerationRequest, int] | None:
        """The request for a recap of the passages the turn's prompt now leaves out (as many as fit
        beside the summary), and the ``seq`` of the last one; None when there is none to summarise."""
        spec = run.spec
        sampling = self._fitted_sampling(spec, backend)
        first = self._prompt(backend, spec, sampling)[0].first_passage
        sampling = replace(sampling, max_new_tokens=min(self.config.story.recap_max_tokens, sampling.max_new_tokens))
        frame = backend.prompt_frame
        overhead = backend.count_tokens(frame.overhead() + "\n\n" + LONGEST_SUMMARY_REQUEST)
        budget = backend.context_length - sampling.max_new_tokens - overhead
        source, taken = recap_source(spec.story, first, budget, backend.count_tokens)
        if not taken:
            return None
        request = GenerationRequest(
            prompt=recap_prompt(frame, source),
            sampling=sampling,
            stop_texts=speaker_stops((*spec.speaker_names, BOT_NAME)),
            cancelled=run.cancelled,
            adapter=self._writer(spec).adapter,  # (no cache key: the channel's cache holds its story's prompt)
        )
        return request, spec.passage_seqs[spec.story.recap_covers + taken - 1]

    async def _show_start(self, run: _Running) -> None:
        await self._remember(run, await self._tell("turn_started", run.spec))

    async def _tell(self, event: str, spec: JobSpec, *args: object) -> str | None:
        """Tell every listener; returns what the platform's shower answered (its message ref)."""
        shower, answer = self._showers.get(spec.channel.platform), None
        for listener in self._listeners:
            try:
                said = await getattr(listener, event)(spec, *args)
            except Exception:  # one broken channel must not stop the queue
                log.exception("listener %r failed on %s", listener, event)
                continue
            if listener is shower:
                answer = said
        return answer

    async def _remember(self, run: _Running, message_ref: str | None) -> None:
        """Record the messages that show the turn when they change, so whoever shows it next
        (a takeover, a late showing) edits them instead of leaving them behind."""
        async with run.recording:
            if not message_ref or message_ref == run.message_ref:
                return
            run.message_ref = message_ref
            try:
                await self.jobs.record_turn_message(run.spec.job_id, message_ref)
            except Exception as error:  # the turn goes on; a takeover would post new messages
                log.warning("could not record the messages of bot turn %d: %s", run.spec.job_id, error)

    async def _show_end(self, spec: JobSpec, result: Result | None) -> None:
        """Tell the listeners how the turn ended; once its platform shows it, it is owed no more.
        (A ballot's turn is still open: its messages are recorded, and its end is owed once the
        vote closes.)"""
        shower = self._showers.get(spec.channel.platform)
        self._showing.add(spec.job_id)
        try:
            for listener in self._listeners:
                try:
                    shown_in = await listener.turn_finished(spec, result)
                    if listener is shower and shown_in and result is not None and _redrawn_whole(result):
                        await self.jobs.record_turn_message(spec.job_id, shown_in)
                except TurnGone as gone:
                    log.warning("bot turn %d cannot be shown any more: %s", spec.job_id, gone)
                except Exception as error:
                    if listener is not shower:
                        log.exception("listener %r failed on turn_finished", listener)
                        continue
                    log.warning("bot turn %d could not be shown (%s); it will be shown again later", spec.job_id, error)
                    return
            if shower is not None and result is not None and result.ballot is not None:
                await self.jobs.mark_ballot_shown(spec.job_id)  # (its winner is owed when the vote closes)
            elif shower is not None and result is not UNSURE:
                await self.jobs.mark_turn_shown(spec.job_id)
        except Exception as error:  # shown, but not marked: shown once more later, which is harmless
            log.warning("could not mark bot turn %d shown: %s", spec.job_id, error)
        finally:
            self._showing.discard(spec.job_id)
            if result is not None and result.ballot is not None:
                self.show_owed_soon()  # its vote may have closed while the ballot was being shown

    async def _show_owed(self) -> None:
        """Hand the turns that no process has shown to this process's showers.

        Each is shown in a task of its own, like a turn, so a slow platform holds up nothing.
        """
        everything, self._sweep_everything = self._sweep_everything, False
        if not self._showers or self._stopping:
            return
        try:
            # Not the turns this process is writing or showing: a claim would put them off a lease.
            busy = self._showing | set(self._running)
            owed = await self.jobs.claim_owed_showings(
                list(self._showers), OWED_PER_SWEEP, at_start=everything, skip=busy
            )
        except Exception:
            self._sweep_everything = everything  # still owed a full sweep once the database answers
            raise
        for spec, result in owed:
            if spec.job_id in self._showing or spec.job_id in self._running:
                continue  # this process is writing or showing it right now
            log.info("showing bot turn %d: its process left it unshown, or its vote closed", spec.job_id)
            task = asyncio.create_task(self._show_late(spec, result), name=f"show-owed-{spec.job_id}")
            self._turns.add(task)
            task.add_done_callback(self._turns.discard)

    async def _show_late(self, spec: JobSpec, result: Result | None) -> None:
        """Show an owed turn's end; one this process followed while a worker wrote it, once its
        last progress is shown, in the messages it recorded."""
        if self._follower is not None:
            shown_in = await self._follower.settle(spec.job_id)
            spec = replace(spec, message_ref=shown_in or spec.message_ref)
        await self._show_end(spec, result)

    async def _settle(self, run: _Running, outcome: Awaitable[Result | None]) -> Result | None:
        """Record a turn's outcome; if the database will not take it, the turn stays open.

        The job is then still "running" in the table with no process beating for it, so it
        is taken up again once its lease runs out; meanwhile the channel is told so.
        """
        try:
            return await outcome
        except Exception as error:
            self._failures.failed(error)
            log.warning("bot turn %s could not be stored; it will run again after its lease", run.spec.job_id)
            return UNSURE

    async def _store(
        self, run: _Running, text: str, verdict: Verdict, refused: Sequence[tuple[str, Verdict]] = ()
    ) -> Result | None:
        """Store the turn's passage (with ``refused``: its other candidates the checks stopped, kept
        withheld for the moderators), or its failure."""
        if run.timed_out:
            return await self.jobs.fail_job(
                run.spec.job_id, "The bot took too long to write; try /story continue again."
            )
        if run.cancelled.is_set():
            return None
        if not text:
            return await self.jobs.fail_job(
                run.spec.job_id, "The bot could not think of anything; try /story continue with a direction."
            )
        if not verdict.passed:
            notice = CHECKS_DOWN_NOTICE if verdict.down else CHECKED_OUT_NOTICE.format(rating=run.spec.standard.rating)
            record = self._generation_record(run)
            return await self.jobs.withhold_job(run.spec.job_id, text, record, verdict, notice, refused)
        return await self.jobs.finish_job(run.spec.job_id, text, self._generation_record(run), refused)

    async def _store_candidates(self, run: _Running, checked: list[tuple[str, Verdict]]) -> Result | None:
        """Open the channel's vote on the candidates the checks passed; with one, it is simply the
        turn's passage, and with none the first is withheld (``_store``, as for one passage). The
        ones the checks stopped are kept withheld, for the moderators, with an audit line each."""
        passed = [text for text, verdict in checked if verdict.passed]
        refused = [(text, verdict) for text, verdict in checked if not verdict.passed]
        if len(passed) < 2 or run.timed_out or run.cancelled.is_set():
            text, verdict = next(
                ((t, v) for t, v in checked if v.passed), checked[0] if checked else ("", Verdict.PASS)
            )
            return await self._store(run, text, verdict, [r for r in refused if r[0] != text])
        return await self.jobs.open_vote(run.spec.job_id, passed, self._generation_record(run), refused)

    async def _write_candidates(
        self, batcher: Batcher, run: _Running, loop: asyncio.AbstractEventLoop
    ) -> list[tuple[str, Verdict]]:
        """The turn's candidates, each with the checks' verdict: ``candidates`` rows of one prompt
        in one batch (the channel's cached prefix serves every row after the first), shown
        together once written, so none streams. Identical ones count once."""
        request, run.story_prompt = await asyncio.to_thread(self._request, batcher.backend, run, loop)
        request.on_text = None
        language = language_of(run.story_prompt)
        rows = [self._attempts(batcher, request, run, language) for _ in range(run.spec.candidates)]
        texts = list(dict.fromkeys(text for text in await asyncio.gather(*rows) if text))
        verdicts = await asyncio.gather(*(self._verdict(run, text) for text in texts))
        return list(zip(texts, verdicts, strict=True))

    async def _write_checked(
        self, batcher: Batcher, run: _Running, loop: asyncio.AbstractEventLoop
    ) -> tuple[str, Verdict]:
        """The passage and the checks' verdict on it. One the checks stop is written once more,
        with the words they found banned at decode time; a second refusal stands."""
        text = await self._write_passage(batcher, run, loop)
        verdict = await self._verdict(run, text)
        if not verdict.passed and not verdict.down:
            log.info("bot turn %s did not pass the %s check; writing it again", run.spec.job_id, verdict.checker)
            run.banned = verdict.found
            text = await self._write_passage(batcher, run, loop)
            verdict = await self._verdict(run, text)
        return text, verdict

    async def _verdict(self, run: _Running, text: str) -> Verdict:
        if not text or run.cancelled.is_set():
            return Verdict.PASS  # nothing will be stored or shown
        return await self.checks.judge(text, run.spec.standard)

    async def _write_passage(self, batcher: Batcher, run: _Running, loop: asyncio.AbstractEventLoop) -> str:
        """The cleaned passage, written again while it is empty, an assistant talking, or in
        another language than the story (``PASSAGE_ATTEMPTS``)."""
        # Building the prompt counts tokens, which can take a while for a long story.
        request, run.story_prompt = await asyncio.to_thread(self._request, batcher.backend, run, loop)
        return await self._attempts(batcher, request, run, language_of(run.story_prompt))

    async def _attempts(
        self, batcher: Batcher, request: GenerationRequest, run: _Running, language: Language | None
    ) -> str:
        """One passage for ``request``, cleaned, written again while it comes out empty, as an
        assistant talking, or in another language than ``language``."""
        kept = ""
        for _ in range(PASSAGE_ATTEMPTS):
            run.attempt += 1
            text = clean_passage(await batcher.generate(request), request.stop_texts)
            kept = text or kept
            if run.cancelled.is_set():
                break
            if not text:
                log.info("bot turn %s came out empty; writing it again", run.spec.job_id)
                continue
            if talks_as_assistant(text):
                log.info("bot turn %s came out as an assistant talking; writing it again", run.spec.job_id)
                continue
            other = written_in_another(text, language)
            if other is None or language is None:
                break
            log.info("bot turn %s came out in %s, not %s; writing it again", run.spec.job_id, other.name, language.name)
        return kept

    def _request(
        self, backend: Backend, run: _Running, loop: asyncio.AbstractEventLoop
    ) -> tuple[GenerationRequest, str]:
        """The request for the turn's passage, and the story as the model is to continue it (unframed)."""
        spec = run.spec
        sampling = self._fitted_sampling(spec, backend)
        banned = (*self.checks.decode_bans(spec.standard), *run.banned)
        if banned:
            sampling = replace(sampling, bad_words=tuple(dict.fromkeys((*sampling.bad_words, *banned))))
        stops = speaker_stops((*spec.speaker_names, BOT_NAME))

        def on_text(text: str) -> None:  # worker thread
            shown = visible_text(text, stops).strip()
            if shown:
                loop.call_soon_threadsafe(run.stream.put, (run.attempt, shown))

        prompt = self._prompt(backend, spec, sampling)[0]
        story_prompt, run.first_passage = prompt.text, prompt.first_passage
        request = GenerationRequest(
            prompt=backend.prompt_frame.around(story_prompt),
            sampling=sampling,
            stop_texts=stops,
            on_text=on_text,
            cancelled=run.cancelled,
            cache_key=spec.channel.key,
            adapter=self._writer(spec).adapter,
        )
        return request, story_prompt

    def _fitted_sampling(self, spec: JobSpec, backend: Backend) -> Sampling:
        """The story's sampling, its length cut to what the model holds: a length beyond it (set
        before the model was loaded, or in the config) would run off the end of its positions."""
        sampling = Sampling.for_story(spec.settings, self.config.model)
        longest = longest_passage(backend.context_length)
        return replace(sampling, max_new_tokens=longest) if sampling.max_new_tokens > longest else sampling

    def _prompt(self, backend: Backend, spec: JobSpec, sampling: Sampling) -> tuple[Prompt, Budget]:
        """The story as the model is to continue it (before its frame), and the budget it fits:
        the context less the passage asked for and the frame's own text."""
        frame_tokens = backend.count_tokens(backend.prompt_frame.overhead())
        budget = Budget(backend.context_length, sampling.max_new_tokens, frame_tokens)
        limits = PromptLimits(
            budget_tokens=budget.tokens,
            lore_max_tokens=self.config.story.lore_max_tokens,
            note_depth=self.config.story.note_depth,
            recap_max_tokens=self.config.story.recap_max_tokens,
        )
        return compose_prompt(spec.story, limits, backend.count_tokens), budget

    def _writer(self, spec: JobSpec) -> Writer:
        """The base model and adapter that write the story (its ``model`` setting, resolved)."""
        return self.config.writer(spec.settings.model)

    def _generation_record(self, run: _Running) -> dict[str, object]:
        """What is stored with the passage: how it was written (for the exports and ``storybot
        stats``: the story's model, and the base and adapter folder it stands for), and the story as
        the model saw it (for ``storybot export-dataset``)."""
        writer = self._writer(run.spec)
        return {
            **run.spec.settings.as_dict(),
            "base": writer.base,
            "adapter": writer.adapter.path if writer.adapter is not None else None,
            "backend": self.config.model.backend,
            "seconds": round(time.monotonic() - run.writing_since, 2),
            "story_prompt": run.story_prompt,
        }

    async def _pump(self, run: _Running) -> None:
        """Hand each streamed text the gate lets through (whole sentences that passed the checks)
        to the listeners."""
        async for attempt, text in run.stream:
            shown = await run.gate.admit(text, attempt)
            if shown is not None:
                await self._remember(run, await self._tell("turn_progress", run.spec, shown))


def _redrawn_whole(result: Result) -> bool:
    """Whether a turn's end may show in other messages than the turn recorded, which must then be
    recorded: a ballot (its candidates take what they take), and a vote's winner (fewer, maybe)."""
    return result.ballot is not None or (result.passage is not None and result.passage.elected is not None)


class _Throttle(Generic[T]):
    """Latest-value stream: yields the newest text (any value), ``interval`` seconds after the consumer asked
    for the next one (that is, after the listeners were done with the last), and skips the texts
    that came meanwhile. So a turn's messages change at most once per interval, however slowly a
    platform answers, and never two updates at once."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._latest: T | None = None
        self._closed = False
        self._changed = asyncio.Event()
        self._next_at = 0.0  # when the next text may go out
        self._handed_out = False  # a text went out, and its consumer may still be busy with it

    def put(self, text: T) -> None:
        self._latest = text
        self._changed.set()

    def close(self) -> None:
        self._closed = True
        self._changed.set()

    def __aiter__(self) -> _Throttle[T]:
        return self

    async def __anext__(self) -> T:
        if self._handed_out:  # asked again: the consumer is done with the last text, the rest starts
            self._handed_out = False
            self._next_at = time.monotonic() + self.interval
        while True:
            if self._closed:
                raise StopAsyncIteration
            await self._changed.wait()
            self._changed.clear()
            wait = self._next_at - time.monotonic()
            if wait > 0 and not self._closed:
                await asyncio.sleep(wait)
            if self._closed:
                raise StopAsyncIteration
            if self._latest is not None:
                text, self._latest = self._latest, None
                self._handed_out = True
                return text
