"""A per-channel circuit breaker for the notify service's senders (:mod:`notify.worker`).

States (:class:`BreakerState`):

- ``closed``: deliveries are attempted as usual; failed attempts are counted, a successful one
  resets the count. ``failures_to_open`` consecutive failed attempts (refused, timeout, 5xx,
  garbage...) open it.
- ``open``: no attempts to the channel; its deliveries wait in the table (status ``pending``,
  ``last_reply`` says why). Once ``probe_interval_s`` has passed a single probe may start.
- ``half_open``: one probe (a real pending delivery, recorded like any attempt) is in flight;
  success closes the breaker (the backlog is loaded again), failure opens it for another
  interval.

Any successful attempt closes the breaker (also one started before it opened). Pure state, no
I/O: the sender asks :meth:`CircuitBreaker.allows` / :meth:`CircuitBreaker.probe_due` and
reports each outcome to :meth:`CircuitBreaker.record`, which returns the transition (if any) so
the sender logs and defers once per change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Transition(StrEnum):
    OPENED = "opened"  # closed -> open
    PROBE_FAILED = "probe_failed"  # half_open -> open
    CLOSED = "closed"  # open / half_open -> closed


@dataclass
class CircuitBreaker:
    """One channel's breaker.

    Attributes:
        failures_to_open: consecutive failed attempts that open it (>= 1).
        probe_interval_s: seconds between probes while open (> 0).
        clock: monotonic seconds (injectable for the pure tests).
        consecutive_failures: failed attempts since the last success.
        last_failure: why the last attempt failed (our own words or an answer code, never the
            receiver's answer text: it ends up in ``last_reply``, shown to the channel owner).
    """

    failures_to_open: int
    probe_interval_s: float
    clock: Callable[[], float] = time.monotonic
    state: BreakerState = BreakerState.CLOSED
    consecutive_failures: int = 0
    last_failure: str = ""
    opened_at: float | None = None
    next_probe_at: float = field(default=0.0)

    def allows(self) -> bool:
        """Whether ordinary deliveries may be attempted (closed)."""
        return self.state is BreakerState.CLOSED

    def probe_due(self) -> bool:
        """Open and its probe interval has passed."""
        return self.state is BreakerState.OPEN and self.clock() >= self.next_probe_at

    def start_probe(self) -> None:
        """open -> half_open (one probe in flight).

        Raises:
            RuntimeError: the breaker is not open.
        """
        if self.state is not BreakerState.OPEN:
            raise RuntimeError(f"breaker: expected state open to start a probe, got {self.state}")
        self.state = BreakerState.HALF_OPEN

    def cancel_probe(self) -> None:
        """half_open -> open without an outcome (nothing was due to probe with); the next probe
        waits another interval."""
        if self.state is BreakerState.HALF_OPEN:
            self.state = BreakerState.OPEN
            self.next_probe_at = self.clock() + self.probe_interval_s

    def record(self, ok: bool, failure: str = "") -> Transition | None:
        """Count one attempt's outcome; returns the state change it caused, if any."""
        if ok:
            self.consecutive_failures = 0
            if self.state is BreakerState.CLOSED:
                return None
            self.state, self.opened_at = BreakerState.CLOSED, None
            return Transition.CLOSED
        self.consecutive_failures += 1
        self.last_failure = failure
        if self.state is BreakerState.HALF_OPEN:
            self.state = BreakerState.OPEN
            self.next_probe_at = self.clock() + self.probe_interval_s
            return Transition.PROBE_FAILED
        if self.state is BreakerState.CLOSED and (
            self.consecutive_failures >= self.failures_to_open
        ):
            self.state = BreakerState.OPEN
            self.opened_at = self.clock()
            self.next_probe_at = self.opened_at + self.probe_interval_s
            return Transition.OPENED
        return None

    def reason(self) -> str:
        """Why it is open, for the log and (as :meth:`deferral`) ``last_reply``; no secrets,
        no answer text."""
        return (
            f"breaker open after {self.failures_to_open} consecutive failed attempts "
            f"(last: {self.last_failure}); probing every {self.probe_interval_s:g} s"
        )

    def deferral(self) -> str | None:
        """What a waiting delivery's ``last_reply`` says while open; None when closed."""
        return None if self.allows() else f"deferred: channel {self.reason()}"
