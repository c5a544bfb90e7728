"""Bot turns across processes: a worker writes a turn, a chat process shows it (PostgreSQL).

With the roles split (``storybot worker`` beside ``storybot discord|slack --no-worker``), the
process that writes a turn has no shower for its platform. The turn's row carries it across:

- **Worker side, ``TurnRelay``** (a listener on the worker's queue, for the turns no shower of
  its own shows): ``turn_started`` and each ``turn_progress`` (already paced by the queue's
  throttle, ``generation.stream_interval_s``) write the text so far into the row
  (``partial_text``) and send ``TurnNews`` on ``TURNS_CHANNEL`` in the same commit; the end makes
  the turn's showing owed now (not once the writer's lease ran out) and says so.
- **Chat side, ``TurnFollower``** (in every process with showers): news of a turn of a platform
  it shows makes it look at the row. It claims the turn's showing in the row first
  (``streamed_by``, renewed at each look and heartbeat, given back on a clean stop), so that of
  two chat processes of one platform only one posts "writing…"; then it hands the text to that
  platform's shower, as the queue does in one process (the start, then each text, newest only),
  and records the message ref the shower answers. The end comes through the outbox: the news
  wakes the queue's sweep of owed showings, which lets the follower finish the turn's last
  progress first (``settle``) and shows the end in the messages it recorded. The sweep leaves a
  turn another live chat process streams to that process.

Only the shower of the turn's platform hears the replay: the metrics and reminders of a chat
process hear a turn's end (from the outbox) but count nothing they did not write. A chat process
that restarts mid-turn takes the turn up again at its next news, editing the recorded message
(after a crash: once the dead one's claim ran out). A notification lost while a listener
reconnected costs only time: the next progress carries the newest text, and the heartbeat's sweep
shows any end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace

from bot.generation.queue import STOP_GRACE_S, GenerationQueue
from bot.jobs import TURN_ENDED, TURN_PROGRESS, TURN_STARTED, JobSpec, TurnNews
from bot.results import Result

__all__ = ["TurnFollower", "TurnRelay"]

log = logging.getLogger(__name__)


class TurnRelay:
    """The worker's listener that hands the turns it writes to the chat processes that show them."""

    def __init__(self, queue: GenerationQueue) -> None:
        self.queue = queue

    def _relays(self, job: JobSpec) -> bool:
        """Only the turns this process cannot show itself (in a worker: all of them)."""
        return self.queue.shower(job.channel.platform) is None

    async def turn_started(self, job: JobSpec) -> None:
        if self._relays(job):
            await self._relay(job, TURN_STARTED, None)

    async def turn_progress(self, job: JobSpec, text: str) -> None:
        if self._relays(job):
            await self._relay(job, TURN_PROGRESS, text)

    async def turn_finished(self, job: JobSpec, result: Result | None) -> None:
        if not self._relays(job):
            return
        try:
            await self.queue.jobs.owe_showing_now(job)
        except Exception as error:  # it is owed all the same, once the lease runs out
            log.warning(
                "could not hand bot turn %d to the chat processes (%s); it shows after its lease", job.job_id, error
            )

    async def _relay(self, job: JobSpec, event: str, text: str | None) -> None:
        """The news, and the text so far when there is one (a turn run again after its worker
        died shows the dead one's text until its own first text)."""
        try:
            await self.queue.jobs.relay_turn(job, event, text)
        except Exception as error:  # the next text, or the end, carries newer news
            log.warning("could not relay bot turn %d's %s: %s", job.job_id, event, error)


@dataclass
class _Replay:
    """One turn a worker writes, shown by this chat process: what it recorded, and its pump."""

    job_id: int
    platform: str
    spec: JobSpec | None = None
    message_ref: str | None = None  # the messages that show it, as last recorded
    begun: bool = False  # "writing…" was asked of the shower
    looked_for: asyncio.Event = field(default_factory=asyncio.Event)  # news came: look at the row again
    closed: bool = False
    task: asyncio.Task[None] | None = None
    idle_since: float | None = None  # when its pump stopped (the turn ended, or another process shows it)


class TurnFollower:
    """Shows, in a chat process, the turns that worker processes write (module docstring)."""

    def __init__(self, queue: GenerationQueue) -> None:
        self.queue = queue
        self.jobs = queue.jobs
        self._lease_s = queue.config.generation.job_lease_s
        self._replays: dict[int, _Replay] = {}
        self._elsewhere: dict[int, float] = {}  # job id -> until when another process shows it (monotonic)
        self._stopping = False

    def heard(self, payload: str) -> None:
        """A ``TURNS_CHANNEL`` notification (on the event loop: quick)."""
        news = TurnNews.parse(payload)
        if news is None:
            log.warning("ignoring a turn notification that cannot be read: %.80r", payload)
            return
        if self._stopping or self.queue.shower(news.platform) is None:
            return  # another platform's: its own processes show it
        if news.event == TURN_ENDED:
            self.queue.show_owed_soon()  # the sweep settles the replay, then shows the end
            return
        if self._elsewhere.get(news.job_id, 0.0) > time.monotonic():
            return
        replay = self._replays.get(news.job_id)
        if replay is None:
            replay = self._replays[news.job_id] = _Replay(news.job_id, news.platform)
        if replay.task is None or replay.task.done():  # (a turn re-run after its worker died starts again)
            replay.idle_since = None
            replay.task = asyncio.create_task(self._pump(replay), name=f"follow-turn-{news.job_id}")
        replay.looked_for.set()

    async def _pump(self, replay: _Replay) -> None:
        """Show the turn's newest text each time news came, one at a time, until it is no longer
        ours to show (it ended, or another process shows it) or its end is due (``settle``)."""
        try:
            while not replay.closed:
                await replay.looked_for.wait()
                replay.looked_for.clear()
                if replay.closed or not await self._look(replay):
                    break
        finally:
            replay.idle_since = time.monotonic()
            if not replay.begun and self._replays.get(replay.job_id) is replay:  # nothing shown: nothing to settle
                del self._replays[replay.job_id]
                self._elsewhere[replay.job_id] = time.monotonic() + self._lease_s

    async def _look(self, replay: _Replay) -> bool:
        """Claim the turn for this process and show its text so far; False when it is not ours."""
        try:
            claim = await self.jobs.claim_turn_stream(replay.job_id, with_spec=replay.spec is None)
        except Exception as error:  # the next news looks again
            log.warning("could not look at bot turn %d: %s", replay.job_id, error)
            return True
        shower = self.queue.shower(replay.platform)
        if claim is None or shower is None:
            return False
        replay.spec = claim.spec or replay.spec
        replay.message_ref = replay.message_ref or claim.message_ref
        assert replay.spec is not None
        try:
            if not replay.begun:
                replay.begun = True
                await self._remember(replay, await shower.turn_started(self._spec(replay)))
            if claim.text:
                await self._remember(replay, await shower.turn_progress(self._spec(replay), claim.text))
        except Exception:  # one broken channel must not stop the others
            log.exception("the shower failed on bot turn %d", replay.job_id)
        return True

    @staticmethod
    def _spec(replay: _Replay) -> JobSpec:
        assert replay.spec is not None
        return replace(replay.spec, message_ref=replay.message_ref)

    async def _remember(self, replay: _Replay, message_ref: str | None) -> None:
        """Record the messages that show the turn when they change, for whoever shows it next."""
        if not message_ref or message_ref == replay.message_ref:
            return
        replay.message_ref = message_ref
        try:
            if await self.jobs.record_turn_message(replay.job_id, message_ref):
                self.queue.show_owed_soon()  # withdrawn while it was being posted: say so now
        except Exception as error:  # the end is shown here, in the messages this process knows
            log.warning("could not record the messages of bot turn %d: %s", replay.job_id, error)

    async def settle(self, job_id: int) -> str | None:
        """Its end is to be shown now: let the progress being shown finish, show no more."""
        replay = self._replays.pop(job_id, None)
        if replay is None:
            return None
        replay.closed = True
        replay.looked_for.set()
        if replay.task is not None:
            await asyncio.gather(replay.task, return_exceptions=True)
        return replay.message_ref

    async def beat(self) -> None:
        """Renew the claims on the turns being followed; forget those whose end another process
        showed (idle for a lease) and the old marks of turns shown elsewhere."""
        now = time.monotonic()
        live = [job_id for job_id, replay in self._replays.items() if replay.idle_since is None]
        for job_id, replay in list(self._replays.items()):
            if replay.idle_since is not None and now - replay.idle_since > self._lease_s:
                del self._replays[job_id]
        self._elsewhere = {job_id: until for job_id, until in self._elsewhere.items() if until > now}
        try:
            await self.jobs.keep_streams_alive(live)
        except Exception as error:  # a claim that runs out only lets another process take the turn over
            log.warning("could not renew the claims on the bot turns shown here: %s", error)

    async def stop(self) -> None:
        """Stop following; the turns followed are given back, so that whichever chat process hears
        of them next (a restarted one) shows them on, in the recorded messages."""
        self._stopping = True
        replays = list(self._replays.values())
        for replay in replays:
            replay.closed = True
            replay.looked_for.set()
        tasks = [replay.task for replay in replays if replay.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self._replays.clear()
        try:
            await self.jobs.release_streams([replay.job_id for replay in replays])
        except Exception as error:  # they are taken over once the claims run out
            log.warning("could not give back the bot turns shown here: %s", error)
