"""Calls into a worker thread, coalesced: what is asked while one batch runs is served
together by the next.

The run's claims and finishes are store work (a lock, renames, a device flush) done off the
event loop. Handing each one to a worker thread and back costs two thread switches, ~5 ms
each on a loaded 2-core machine, more than the work itself; a worker pool also runs them
side by side only to queue them again on the store's lock and flush. A :class:`Coalescer`
keeps one batch in flight: items submitted meanwhile wait and go, all together, in the next
one, which takes the lock once and flushes once (see :meth:`Store.update_many`).
"""

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# A batch function returns one result per item, in order: a value, or the exception that
# item ended in (the others still have theirs).
Batch = Callable[[Sequence[Item]], Sequence[Result | Exception]]


class Coalescer(Generic[Item, Result]):
    """Runs ``batch`` in the loop's default executor, one call at a time, on every item
    submitted since the last call started. Used from the event loop's thread only.

    With ``yields_to``, a batch ready while that coalescer has one in flight starts when that
    one ends: the run's finishes yield to its claims, which an agent waits for (both take
    the queue lock and the interpreter's lock, and a claim that shares them with a finish
    takes longer). It waits for that one batch only, never for a stream of them."""

    def __init__(
        self, batch: Batch[Item, Result], yields_to: "Coalescer[Any, Any] | None" = None
    ) -> None:
        self._batch = batch
        self._yields_to = yields_to
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._busy = False  # a batch runs, or is about to start
        self._followers: list[Callable[[], None]] = []  # to start when this one is idle

    def submit(self, item: Item) -> "asyncio.Future[Result]":
        """``item``'s result, to come; the batch holding it starts once the loop has run
        what is ready now, so that the items a scheduling round submits go together."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._waiting.append((item, future))
        if not self._busy:
            self._busy = True
            loop.call_soon(self._start, loop)
        return future

    def _start(self, loop: asyncio.AbstractEventLoop, waited: bool = False) -> None:
        ahead = self._yields_to
        if ahead is not None and ahead._busy and not waited:
            # After the batch in flight there, not after every one that follows it.
            ahead._followers.append(lambda: self._start(loop, waited=True))
            return
        taken, self._waiting = self._waiting, []
        work = loop.run_in_executor(None, self._batch, [item for item, _ in taken])
        work.add_done_callback(lambda done: self._settle(loop, taken, done))

    def _settle(
        self,
        loop: asyncio.AbstractEventLoop,
        taken: list[tuple[Item, "asyncio.Future[Result]"]],
        done: "asyncio.Future[Sequence[Result | Exception]]",
    ) -> None:
        if done.cancelled():  # the loop is closing: so are the tasks that wait here
            for _, future in taken + self._waiting:
                future.cancel()
            self._waiting, self._busy = [], False
            return
        error = done.exception()
        results = [error] * len(taken) if isinstance(error, Exception) else done.result()
        for (_, future), result in zip(taken, results, strict=True):
            if future.done():  # its task was cancelled
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
        followers, self._followers = self._followers, []
        if self._waiting:
            self._start(loop)
        else:
            self._busy = False
        for follow in followers:
            follow()
