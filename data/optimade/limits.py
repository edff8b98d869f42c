"""Admission limits of the OPTIMADE API: expensive-query slots and a bound on requests in flight.

Both refuse at once (HTTP 503 with ``Retry-After``) instead of queueing: a saturated server
answers quickly that it is saturated, and one class of request cannot take every database
connection or worker thread from the others.

* :class:`QueryLimiter` — at most ``slots`` expensive searches at a time (the search decides what
  is expensive from the filter's cost); cheap ones never wait for it;
* :class:`InFlightLimit` — ASGI middleware answering 503 once ``limit`` requests are being served.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from crystaloop.data.optimade.errors import OverloadedError

__all__ = ["QueryLimiter", "InFlightLimit"]

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class QueryLimiter:
    """At most ``slots`` holders at once; a caller finding none free within ``wait_s`` is refused.

    Args:
        slots: concurrent holders allowed (≥ 1).
        wait_s: how long to wait for a free slot before refusing (0: refuse at once).
        retry_after_s: the ``Retry-After`` the refusal suggests, seconds.
        what: what a slot is for, in the refusal's message.
    """

    def __init__(self, slots: int, *, wait_s: float = 0.0, retry_after_s: int = 1, what: str = "expensive queries") -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.slots = slots
        self.wait_s = wait_s
        self.retry_after_s = retry_after_s
        self.what = what
        self._semaphore = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self.in_use = 0
        self.refused = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the duration of the block.

        Raises:
            OverloadedError: every slot stayed taken for ``wait_s`` (HTTP 503, ``Retry-After``).
        """
        acquired = self._semaphore.acquire(timeout=self.wait_s) if self.wait_s > 0 else self._semaphore.acquire(blocking=False)
        if not acquired:
            with self._lock:
                self.refused += 1
            raise OverloadedError(
                f"all {self.slots} slots for {self.what} are busy; retry in {self.retry_after_s} s or narrow the filter",
                retry_after=self.retry_after_s,
            )
        with self._lock:
            self.in_use += 1
        try:
            yield
        finally:
            with self._lock:
                self.in_use -= 1
            self._semaphore.release()


class InFlightLimit:
    """ASGI middleware: at most ``limit`` HTTP requests in flight; beyond, ``answer(scope)`` is sent.

    Runs on the event loop before a request reaches a worker thread, so requests beyond the limit
    are refused instead of waiting for a thread or a database connection.
    """

    def __init__(self, app: ASGIApp, *, limit: int, answer: Callable[[Scope], Any]) -> None:
        self.app = app
        self.limit = limit
        self.answer = answer
        self.in_flight = 0
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            self.refused += 1
            await self.answer(scope)(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
