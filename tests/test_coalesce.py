"""orchestra_ci.coalesce: what is asked while a batch runs goes together in the next one."""

import asyncio
import threading
from collections.abc import Sequence

from orchestra_ci.coalesce import Coalescer


class Recorder:
    """A batch function that records its batches and blocks until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, items: Sequence[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        self.threads.add(threading.current_thread().name)
        self.release.wait(10)
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


def test_items_submitted_together_go_in_one_batch_off_the_loop() -> None:
    recorder = Recorder()

    async def main() -> list[int | BaseException]:
        coalesce = Coalescer(recorder)
        return await asyncio.gather(*(coalesce.submit(i) for i in range(4)), return_exceptions=True)

    results = asyncio.run(main())
    assert recorder.batches == [[0, 1, 2, 3]]
    assert threading.main_thread().name not in recorder.threads
    assert results[0::2] == [0, 20]
    assert [str(e) for e in results[1::2]] == ["odd 1", "odd 3"]


def test_items_submitted_while_a_batch_runs_wait_for_the_next() -> None:
    recorder = Recorder()
    recorder.release.clear()

    async def main() -> list[int]:
        coalesce = Coalescer(recorder)
        first = asyncio.ensure_future(coalesce.submit(0))
        while not recorder.batches:  # the first batch is running
            await asyncio.sleep(0.001)
        later = [asyncio.ensure_future(coalesce.submit(i)) for i in (2, 4, 6)]
        await asyncio.sleep(0.01)
        assert recorder.batches == [[0]]  # nothing else starts meanwhile
        recorder.release.set()
        return [await first, *[await f for f in later]]

    assert asyncio.run(main()) == [0, 20, 40, 60]
    assert recorder.batches == [[0], [2, 4, 6]]


def test_a_batch_that_raises_fails_each_of_its_items_and_the_next_still_runs() -> None:
    calls: list[list[int]] = []

    def flaky(items: Sequence[int]) -> list[int | Exception]:
        calls.append(list(items))
        if len(calls) == 1:
            raise OSError("disk gone")
        return list(items)

    async def main() -> None:
        coalesce = Coalescer(flaky)
        failed = await asyncio.gather(
            coalesce.submit(1), coalesce.submit(11), return_exceptions=True
        )
        assert [str(e) for e in failed] == ["disk gone", "disk gone"]
        assert await coalesce.submit(3) == 3

    asyncio.run(main())
    assert calls == [[1, 11], [3]]


def test_a_cancelled_waiter_leaves_the_others_their_results() -> None:
    recorder = Recorder()
    recorder.release.clear()

    async def main() -> int:
        coalesce = Coalescer(recorder)
        gone = asyncio.ensure_future(coalesce.submit(0))
        kept = asyncio.ensure_future(coalesce.submit(2))
        while not recorder.batches:
            await asyncio.sleep(0.001)
        gone.cancel()
        recorder.release.set()
        return await kept

    assert asyncio.run(main()) == 20


def test_a_yielding_coalescer_waits_for_the_batch_in_flight_and_no_more() -> None:
    gates = [threading.Event(), threading.Event()]  # one per claim batch
    claimed: list[list[int]] = []

    def claim(items: Sequence[int]) -> list[int | Exception]:
        claimed.append(list(items))
        assert gates[len(claimed) - 1].wait(10)
        return list(items)

    finishes = Recorder()

    async def main() -> None:
        ahead = Coalescer(claim)
        behind = Coalescer(finishes, yields_to=ahead)
        first = ahead.submit(0)
        while not claimed:  # the first claim batch is running
            await asyncio.sleep(0.001)
        finish = behind.submit(2)
        second = ahead.submit(4)
        await asyncio.sleep(0.02)
        assert finishes.batches == []  # it yields while the claim batch is in flight
        gates[0].set()
        assert await first == 0
        # The second claim batch now runs (held at its gate); the finish does not wait for it.
        assert await asyncio.wait_for(finish, 10) == 20
        assert claimed == [[0], [4]] and not second.done()
        gates[1].set()
        assert await second == 4

    asyncio.run(main())
