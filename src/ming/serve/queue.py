"""The bounded request queue in front of the engine, testable without HTTP.

`Scheduler` runs a fixed number of worker threads (1 for engines that generate one sequence at a time,
holding the engine's lock for each job; more for batching engines such as vLLM), lets at most
`max_queue` requests wait, answers 429 + Retry-After beyond that, and gives each `Job` a cancel event so
that a client that goes away frees its slot at the next token.
"""

from __future__ import annotations

import collections
import contextlib
import math
import threading
import time
from typing import Any, Callable, Iterator

from ming.engine.base import Engine
from ming.serve.errors import APIError

_END = object()


class Job:
    """One request's work: `fn(cancel)` returns an iterator whose items are handed to `sink` (from a
    worker thread), followed by `_END`; an exception raised by `fn` is handed over as the item."""

    def __init__(self, fn: Callable[[threading.Event], Iterator[Any]], sink: Callable[[Any], None]):
        self.fn = fn
        self.sink = sink
        self.cancel = threading.Event()
        self.enqueued = time.monotonic()
        self.started: float | None = None

    def run(self) -> None:
        self.started = time.monotonic()
        try:
            for item in self.fn(self.cancel):
                self._put(item)
        except BaseException as exc:  # handed to the waiting request, which answers with an error
            self._put(exc)
        finally:
            self._put(_END)

    def _put(self, item) -> None:
        try:
            self.sink(item)
        except RuntimeError:  # the event loop is gone (server shutting down): stop generating
            self.cancel.set()

    # -- consumers ---------------------------------------------------------------------------
    @classmethod
    def threaded(cls, fn) -> tuple["Job", Callable[[float | None], Iterator[Any]]]:
        """A job consumed by a plain thread: returns (job, iterate(timeout))."""
        import queue

        q: queue.Queue = queue.Queue()
        job = cls(fn, q.put)

        def iterate(timeout: float | None = 60.0):
            while True:
                item = q.get(timeout=timeout)
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item

        return job, iterate

    @classmethod
    def for_asyncio(cls, fn):
        """A job consumed by asyncio code: returns (job, async iterator). Leaving the iterator early
        (client disconnected, task cancelled) cancels the job."""
        import asyncio

        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue()
        job = cls(fn, lambda item: loop.call_soon_threadsafe(q.put_nowait, item))

        async def iterate():
            try:
                while True:
                    item = await q.get()
                    if item is _END:
                        return
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                job.cancel.set()

        return job, iterate()


class Scheduler:
    """At most `workers` jobs run at once (each holding the engine for its generation unless the
    engine batches), at most `max_queue` wait. `submit` never blocks: when full it raises a 429."""

    def __init__(self, engine: Engine, max_queue: int = 16, workers: int | None = None):
        self.engine = engine
        batching = "batching" in getattr(engine, "features", frozenset())
        self.workers = workers or (int(getattr(engine, "max_concurrency", 1)) if batching else 1)
        self.serialise = not batching
        self.max_queue = max_queue
        self._pending: collections.deque[Job] = collections.deque()
        self._running: set[Job] = set()
        self._cv = threading.Condition()
        self._closing = False
        self._recent: collections.deque[float] = collections.deque(maxlen=16)  # seconds of the last answers
        self.completed = 0
        self.rejected = 0
        self._threads = [threading.Thread(target=self._work, name=f"ming-serve-worker-{i}", daemon=True)
                         for i in range(self.workers)]
        for t in self._threads:
            t.start()

    # -- admission -------------------------------------------------------------------------------
    def submit(self, job: Job) -> Job:
        with self._cv:
            if self._closing:
                raise APIError(503, "the server is shutting down; retry on another instance",
                               code="shutting_down", headers={"Retry-After": "5"})
            if len(self._pending) + len(self._running) >= self.workers + self.max_queue:
                self.rejected += 1
                ra = self._retry_after()
                raise APIError(429, f"the server is busy: {len(self._running)} request(s) running and "
                                    f"{len(self._pending)} waiting (queue limit {self.max_queue}); retry in {ra} s",
                               code="queue_full", headers={"Retry-After": str(ra)})
            self._pending.append(job)
            self._cv.notify()
        return job

    def _retry_after(self) -> int:
        """Seconds until a slot is likely free (under the lock): the waiting jobs and this one at the service
        time measured over the last answers, shared by the workers; before any answer has finished, the
        age of the oldest running one stands for it."""
        now = time.monotonic()
        if self._recent:
            per_job = sum(self._recent) / len(self._recent)
        else:
            per_job = max((now - j.started for j in self._running if j.started is not None), default=1.0)
        return max(1, min(600, math.ceil(per_job * (len(self._pending) + 1) / self.workers)))

    def stats(self) -> dict:
        with self._cv:
            return {"running": len(self._running), "waiting": len(self._pending), "max_queue": self.max_queue,
                    "workers": self.workers, "completed": self.completed, "rejected": self.rejected}

    # -- work --------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._closing:
                    self._cv.wait()
                if not self._pending:  # closing and nothing left
                    return
                job = self._pending.popleft()
                self._running.add(job)
            try:
                if job.cancel.is_set():  # the client left (or the server is stopping) while it waited
                    job._put(APIError(503, "the request was cancelled before it started (the server is shutting "
                                           "down or the client left); retry", code="cancelled",
                                      headers={"Retry-After": "5"}))
                    job._put(_END)
                    continue
                lock = self.engine.lock if self.serialise else contextlib.nullcontext()
                with lock:
                    job.run()
                self._recent.append(time.monotonic() - (job.started or time.monotonic()))
            finally:
                with self._cv:
                    self._running.discard(job)
                    self.completed += 1
                    self._cv.notify_all()

    def idle(self) -> bool:
        with self._cv:
            return not self._pending and not self._running

    def wait_idle(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._pending or self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def cancel_all(self) -> int:
        """Cancel every running and waiting job (server shutdown)."""
        with self._cv:
            jobs = list(self._pending) + list(self._running)
        for j in jobs:
            j.cancel.set()
        return len(jobs)

    def close(self, timeout: float = 5.0) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        if not self.wait_idle(timeout):
            self.cancel_all()
            self.wait_idle(timeout)
        for t in self._threads:
            t.join(timeout=1.0)
