"""Login throttling: bounded password guessing per account name and per client address.

Each login attempt is counted, before its password is checked, under two keys: the account
name as typed (known or not, so the answer never tells whether the name exists) and the client
address. More than ``web.login_account_attempts`` attempts on one name, or
``web.login_address_attempts`` from one address, within ``web.login_window_s`` seconds lock that
key for ``web.login_lockout_s`` seconds: every login on it is answered 429 with ``Retry-After``,
without checking the password (a right password too). A successful login clears its name's
count (not its address's: one good account must not reset an address that sprays guesses).

The counts live in the memory of one web process (there is no table for them): behind a load
balancer with N processes an attacker gets at most N times the attempts. At most
``MAX_TRACKED_KEYS`` keys are kept, the longest-idle dropped first.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gps_monitor.config import WebSettings

MAX_TRACKED_KEYS = 100_000


@dataclass
class _Key:
    attempts: collections.deque[float] = field(default_factory=collections.deque)
    locked_until: float = 0.0


class LoginThrottle:
    """Counts login attempts per account name and per client address (see module docstring).

    ``clock`` returns seconds (monotonic by default).
    """

    def __init__(self, settings: WebSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._keys: collections.OrderedDict[str, _Key] = collections.OrderedDict()

    def attempt(self, account: str, address: str) -> int | None:
        """Count one login attempt; None when it may go on, else the seconds until the account
        or the address may try again (the request is then refused, and not counted)."""
        now = self._clock()
        keys = (
            (f"account:{account}", self._settings.login_account_attempts),
            (f"address:{address}", self._settings.login_address_attempts),
        )
        waits = [self._locked_for(name, limit, now) for name, limit in keys]
        wait = max(waits)
        if wait > 0:
            return math.ceil(wait)
        for name, _ in keys:
            self._entry(name).attempts.append(now)
        return None

    def succeeded(self, account: str) -> None:
        """The password was right: forget the account name's attempts."""
        self._keys.pop(f"account:{account}", None)

    def _entry(self, name: str) -> _Key:
        entry = self._keys.get(name)
        if entry is None:
            entry = self._keys[name] = _Key()
            while len(self._keys) > MAX_TRACKED_KEYS:
                self._keys.popitem(last=False)
        self._keys.move_to_end(name)
        return entry

    def _locked_for(self, name: str, limit: int, now: float) -> float:
        """Seconds ``name`` stays locked (0: not locked); locks it when this attempt would be
        one more than ``limit`` within the window."""
        entry = self._keys.get(name)
        if entry is None:
            return 0.0
        if entry.locked_until > now:
            return entry.locked_until - now
        window_start = now - self._settings.login_window_s
        while entry.attempts and entry.attempts[0] <= window_start:
            entry.attempts.popleft()
        if len(entry.attempts) < limit:
            return 0.0
        entry.attempts.clear()
        entry.locked_until = now + self._settings.login_lockout_s
        return self._settings.login_lockout_s
