"""The shared batch consumer of the long-running workers (ingest, rules).

Per connection (:meth:`BatchConsumer.run`, given the transport's :class:`Source` and
:class:`Sink`), in a loop:

1. ``source.next_batch``: wait for one delivery, then take what is already there (up to
   ``batch_limit`` deliveries, ``batch_wait_s`` seconds in all);
2. the worker's :class:`Step`: its own work (ingest: decode -> judge -> write; rules: evaluate ->
   save) in one database transaction, inside which it calls the ``fence`` it is given (the
   source's ownership check, :meth:`Source.fence`; a no-op on MQTT) before the commit. It returns
   an :class:`Outcome`: the messages to publish and, optionally, what to do once they are
   acknowledged (rules clears its alarm outbox flags);
3. ``sink.publish`` the outcome's messages and wait for the broker's acknowledgements;
4. ``source.ack`` the batch's deliveries, in arrival order.

Steps 3-4 of up to ``pipeline_depth`` committed batches run in the background while the next
batch is read and committed; each waits for the previous one before it acknowledges, so
acknowledgements stay in arrival order, and a failed publish ends the connection at once, not
at the next batch, which may never come (nothing after it is acknowledged: the broker
redelivers).

Database-outage policy (:func:`gps_monitor.db.failures.is_outage`: the database is away, not the
data's fault): the step is retried on the same deliveries with exponential backoff (0.5 s
doubling to 30 s) until the database is back, after :meth:`Step.reset` drops whatever the failed
attempt left in memory. Nothing is acknowledged meanwhile, so a crash during the outage loses
nothing. A :class:`~gps_monitor.bus.base.FencedOut` step drops its batch unacknowledged (the new
owner has it). Any other exception out of a step is a bug and propagates (each worker sets bad
messages aside itself, with their reason).

Stats: :attr:`BatchConsumer.counts` holds the consumer's counters (``messages``, ``batches``,
``step_s``, ``publish_s``, ``ack_s``, ``outages``) and whatever the step adds (e.g. ``stored``);
every ``report_interval_s`` the worker's ``report`` callback logs the counts of that interval
(idle intervals are not reported).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import asyncpg

from gps_monitor.bus.base import Delivery, FencedOut, Sink, Source
from gps_monitor.db import failures

log = logging.getLogger(__name__)

T = TypeVar("T")

Fence = Callable[[asyncpg.Connection], Awaitable[None]]
"""``await fence(conn)`` inside the step's transaction, before its commit: raises
:class:`~gps_monitor.bus.base.FencedOut` when a partition of the batch is no longer ours."""


@dataclass(slots=True)
class Outcome:
    """What a committed batch gives: ``publish`` as ``(topic, payload)`` in publish order, and
    ``after_publish`` run once the broker acknowledged them all (before the deliveries are
    acknowledged)."""

    publish: list[tuple[str, bytes]] = field(default_factory=list)
    after_publish: Callable[[], Awaitable[None]] | None = None


class Step(Protocol):
    """A worker's own part of the batch loop."""

    async def __call__(self, deliveries: list[Delivery], fence: Fence) -> Outcome:
        """Handle ``deliveries`` (arrival order) in one database transaction that calls
        ``fence(conn)`` before it commits. Bad messages are set aside by the step itself.

        Raises:
            an outage (:func:`gps_monitor.db.failures.is_outage`): retried by the consumer;
            FencedOut: the batch is dropped unacknowledged.
        """
        ...

    async def reset(self) -> None:
        """Forget in-memory work that was not committed (new connection, failed attempt)."""
        ...


OUTAGE_DELAY_S = 0.5
OUTAGE_DELAY_MAX_S = 30.0


async def retry_while_outage(action: Callable[[], Awaitable[T]], what: str) -> T:
    """``await action()``, again and again while it fails with a database outage, backing off
    from 0.5 s doubling to 30 s. Anything else propagates (the caller decides whose fault it
    is)."""
    delay = OUTAGE_DELAY_S
    while True:
        try:
            return await action()
        except Exception as error:
            if not failures.is_outage(error):
                raise
            log.error("%s: database error (%r); retrying in %.1f s", what, error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, OUTAGE_DELAY_MAX_S)


class BatchConsumer:
    """Drives one worker's :class:`Step` over a transport (module docstring).

    Args:
        name: the worker's name in log lines (``"ingest"``, ``"rules"``).
        step: the worker's step.
        batch_limit: most deliveries per batch.
        batch_wait_s: longest wait to fill a batch once one delivery is in (seconds).
        pipeline_depth: committed batches whose publish and acknowledgement may be under way
            while the next batch is handled (>= 1).
        report: ``report(counts, elapsed_s)`` logs one interval's counts (the worker's line).
        report_interval_s: how often it is called (seconds).
    """

    def __init__(
        self,
        name: str,
        step: Step,
        *,
        batch_limit: int,
        batch_wait_s: float,
        pipeline_depth: int = 4,
        report: Callable[[dict[str, float], float], None] | None = None,
        report_interval_s: float = 10.0,
    ) -> None:
        self.name = name
        self.step = step
        self.batch_limit = batch_limit
        self.batch_wait_s = batch_wait_s
        self.pipeline_depth = max(1, pipeline_depth)
        self.on_report = report
        self.report_interval_s = report_interval_s
        self.counts: defaultdict[str, float] = defaultdict(float)
        self._reported: dict[str, float] = {}
        self._last_report = time.monotonic()

    async def run(self, source: Source, sink: Sink) -> None:
        """Consume on one connection; returns only by an exception (the transport's error when
        the connection is gone, cancellation, a step's bug)."""
        await self.step.reset()
        pending: deque[asyncio.Task[None]] = deque()
        reporter = asyncio.create_task(self._report_periodically())
        try:
            while True:
                deliveries = await self._next_batch(source, pending)
                outcome = await self._commit(source, deliveries)
                if outcome is None:
                    continue
                previous = pending[-1] if pending else None
                pending.append(
                    asyncio.create_task(
                        self._publish_then_ack(source, sink, deliveries, outcome, previous)
                    )
                )
                while len(pending) > self.pipeline_depth:
                    await pending.popleft()
        finally:
            reporter.cancel()
            for task in pending:
                task.cancel()
            self.report()

    async def _next_batch(
        self, source: Source, pending: deque[asyncio.Task[None]]
    ) -> list[Delivery]:
        """The source's next batch, or the error of an earlier batch's publishing, whichever
        comes first (raised as it is). A failed batch stays unacknowledged, and a source that
        bounds what it holds unacknowledged (the NATS flow control) may bring nothing more."""
        fetch = asyncio.ensure_future(source.next_batch(self.batch_limit, self.batch_wait_s))
        try:
            while True:
                while pending and pending[0].done():
                    pending.popleft().result()  # raises when publishing failed
                if not pending or fetch.done():
                    return await fetch
                await asyncio.wait((fetch, pending[0]), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            fetch.cancel()
            raise

    async def _commit(self, source: Source, deliveries: list[Delivery]) -> Outcome | None:
        """The step on ``deliveries`` under the outage policy; None when fenced out."""
        partitions = frozenset(d.partition for d in deliveries)

        async def fence(conn: asyncpg.Connection) -> None:
            await source.fence(conn, partitions)

        delay = OUTAGE_DELAY_S
        while True:
            started = time.perf_counter()
            try:
                outcome = await self.step(deliveries, fence)
            except FencedOut as error:
                log.warning(
                    "%s: batch of %d delivery(ies) not committed, partition(s) %s taken over "
                    "(%s); the new owner receives them",
                    self.name, len(deliveries), sorted(partitions), error,
                )  # fmt: skip
                await self.step.reset()
                return None
            except Exception as error:
                if not failures.is_outage(error):
                    raise
                self.counts["outages"] += 1
                log.error(
                    "%s: batch of %d message(s) not committed (database: %r); retrying in %.1f s",
                    self.name, len(deliveries), error, delay,
                )  # fmt: skip
                await self.step.reset()
                await asyncio.sleep(delay)
                delay = min(delay * 2, OUTAGE_DELAY_MAX_S)
                continue
            self.counts["step_s"] += time.perf_counter() - started
            self.counts["messages"] += len(deliveries)
            self.counts["batches"] += 1
            return outcome

    async def _publish_then_ack(
        self,
        source: Source,
        sink: Sink,
        deliveries: Sequence[Delivery],
        outcome: Outcome,
        previous: asyncio.Task[None] | None,
    ) -> None:
        t0 = time.perf_counter()
        if outcome.publish:
            await sink.publish(outcome.publish)
        if outcome.after_publish is not None:
            await outcome.after_publish()
        t1 = time.perf_counter()
        self.counts["publish_s"] += t1 - t0
        if previous is not None:
            await previous  # raises when an earlier batch failed: then nothing more is acked
        await source.ack(deliveries)
        self.counts["ack_s"] += time.perf_counter() - t1

    async def _report_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.report_interval_s)
            self.report()

    def report(self) -> None:
        """Report the counts since the previous report (nothing when no message came), then
        start a new interval."""
        now = time.monotonic()
        current = dict(self.counts)
        delta = defaultdict(float, {k: v - self._reported.get(k, 0.0) for k, v in current.items()})
        if not delta.get("messages") or self.on_report is None:
            return
        elapsed_s = max(now - self._last_report, 1e-6)
        self._reported, self._last_report = current, now
        self.on_report(delta, elapsed_s)
