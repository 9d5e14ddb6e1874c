"""AIMD admission control: how many requests may be in flight at the endpoint right now.

Rate control lives here, apart from transport retries: overload signals (429, 503, timeouts)
halve the limit, successes grow it, bounded by [min, max]. Only one halving per "epoch"
counts, so a burst of rejections from requests sent under the old limit shrinks it once, not
to the floor.

Growth has two speeds, as in TCP. Below a threshold, half the limit at which the endpoint
last pushed back while serving, each success adds a slot (the limit doubles per window of
requests: slow start); from there on, a slot per window. The threshold drops only when a
request admitted after one halving succeeds before the next. An outage (a server restarting,
a proxy without its backend) rejects every request and halves the limit to the floor, but
says nothing of how many requests the endpoint serves once it is back: the limit returns to
half its old level within a few windows, not one slot per window from the floor (about 60
windows from 1 to 64, which at half a minute per chat completion is half an hour at a
fraction of the endpoint's throughput).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Literal

Signal = Literal["success", "overload", "neutral"]


class AdmissionController:
    """An asyncio semaphore whose size adapts to the endpoint's answers."""

    def __init__(self, max_limit: int, min_limit: int = 1, initial: int | None = None) -> None:
        if not 1 <= min_limit <= max_limit:
            raise ValueError("need 1 <= min_limit <= max_limit")
        self.max_limit = max_limit
        self.min_limit = min_limit
        self._limit = float(max_limit if initial is None else min(max(initial, min_limit), max_limit))
        self._threshold = float(max_limit)  # below it the limit grows by one per success
        self._answered_since_halving = True
        self._in_flight = 0
        self._epoch = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.decreases = 0

    @property
    def limit(self) -> int:
        return int(self._limit)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def acquire(self) -> int:
        """Wait for a slot; returns the epoch ticket to hand back to ``release``."""
        if self._in_flight < int(self._limit) and not self._waiters:
            self._in_flight += 1
            return self._epoch
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # The slot was handed over just before the cancellation: give it back.
                self._in_flight -= 1
                self._admit_waiters()
            raise
        return self._epoch

    def release(self, ticket: int, signal: Signal) -> None:
        """Free a slot and adapt the limit to how the request went."""
        self._in_flight -= 1
        if signal == "success":
            if ticket == self._epoch:  # admitted since the last halving: served at this limit
                self._answered_since_halving = True
            if self._limit < self._threshold:
                self._limit = min(self._threshold, self._limit + 1.0)
            else:
                self._limit = min(float(self.max_limit), self._limit + 1.0 / self._limit)
        elif signal == "overload" and ticket == self._epoch:
            if self._answered_since_halving:  # pushback from an endpoint that was serving
                self._threshold = max(float(self.min_limit), self._limit / 2.0)
                self._answered_since_halving = False
            self._limit = max(float(self.min_limit), self._limit / 2.0)
            self._epoch += 1
            self.decreases += 1
        self._admit_waiters()

    def _admit_waiters(self) -> None:
        while self._waiters and self._in_flight < int(self._limit):
            waiter = self._waiters.popleft()
            if waiter.done():  # cancelled while queued
                continue
            self._in_flight += 1
            waiter.set_result(None)
