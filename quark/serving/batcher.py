"""One worker thread owns the engine and batches the requests it is given (continuous batching).

HTTP handlers run on the asyncio loop and must never block on the model. They `submit` a job (one
or more prompt rows: `n` choices, or several completion prompts) and read its events from an
asyncio queue. The worker keeps one `LiveBatch` running: when it is idle it waits for a job and
gathers company for a short window; while it is busy, waiting jobs join the running batch at the
next step, up to `max_batch` rows. Each row's events go back to its own request through
`loop.call_soon_threadsafe`. A request whose client went away is marked cancelled and the engine
stops computing its rows at the next step.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from quark.inference import Engine, SamplingParams, StreamEvent


class Finished:
    """Sentinel put on a job's queue after its last event (or its error)."""


FINISHED = Finished()


@dataclass(eq=False)
class Job:
    prompts: list[list[int]]
    params: list[SamplingParams]
    adapters: list[str | None]  # each row's adapter (None: the base); see quark.inference.multi_lora
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: bool = False
    submitted_at: float = field(default_factory=time.perf_counter)
    unfinished: int = 0  # rows still generating, once admitted

    def deliver(self, item: StreamEvent | BaseException | Finished) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, item)
        except RuntimeError:  # the loop has closed (server shutting down): nobody is listening
            self.cancelled = True


def _put_all(items: list[tuple[Job, StreamEvent | Finished]]) -> None:
    for job, item in items:
        job.events.put_nowait(item)


@dataclass
class BatchStats:
    """Hooks the metrics layer observes; the batcher itself keeps no counters."""

    on_step: Callable[[int, int, int], None] = lambda rows, jobs, adapters: None  # rows, requests, adapters in a step
    on_queue: Callable[[int], None] = lambda depth: None


class Batcher:
    """Run an Engine on a dedicated thread; requests share its steps as they arrive."""

    def __init__(self, engine: Engine, *, max_batch: int = 16, gather_seconds: float = 0.01,
                 stats: BatchStats | None = None) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.engine, self.max_batch, self.gather_seconds = engine, max_batch, gather_seconds
        self.stats = stats or BatchStats()
        self.model_lock = threading.Lock()  # held while the model computes; embeddings take it too
        self._pending: queue.Queue[Job | None] = queue.Queue()
        self._held: Job | None = None  # a job that did not fit goes first next time
        self._stopping = False
        self._depth = 0
        self._depth_lock = threading.Lock()
        self._owners: dict[int, tuple[Job, int]] = {}  # row key -> (job, its row number in the job)
        self._thread = threading.Thread(target=self._work, name="quark-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._pending.put(None)
        self._thread.join(timeout)

    def submit(self, prompts: list[list[int]], params: list[SamplingParams],
               adapters: list[str | None] | None = None) -> Job:
        """Queue rows for generation, each with its adapter (default: the base); call from the
        event loop. Rows must fit one batch; rows of other adapters share it."""
        if not 1 <= len(prompts) <= self.max_batch:
            raise ValueError(f"a request may have 1 to {self.max_batch} rows, not {len(prompts)}")
        job = Job(prompts, params, adapters if adapters is not None else [None] * len(prompts),
                  asyncio.get_running_loop())
        self._change_depth(+1)
        self._pending.put(job)
        return job

    def run_exclusive(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` (e.g. embeddings) between engine steps; call from a worker thread."""
        with self.model_lock:
            return fn()

    def _change_depth(self, delta: int) -> None:
        with self._depth_lock:
            self._depth += delta
            depth = self._depth
        self.stats.on_queue(depth)

    def _next(self, timeout: float | None) -> Job | None:
        """The held job, else a queued one within `timeout` (None: wait; 0: do not wait)."""
        if self._held is not None:
            job, self._held = self._held, None
            return job
        try:
            job = self._pending.get(timeout=timeout) if timeout is None or timeout > 0 else self._pending.get_nowait()
        except queue.Empty:
            return None
        if job is None:
            self._stopping = True
        return job

    def _take(self, free: int, window: float) -> list[Job]:
        """Jobs that fit in `free` rows, waiting up to `window` seconds for more to arrive."""
        jobs: list[Job] = []
        deadline = time.perf_counter() + window
        while free > 0 and not self._stopping:
            job = self._next(max(0.0, deadline - time.perf_counter()))
            if job is None:
                break
            if len(job.prompts) > free:
                self._held = job
                break
            jobs.append(job)
            free -= len(job.prompts)
        self._change_depth(-len(jobs))
        return jobs

    def _work(self) -> None:
        batch = self.engine.live_batch(cancelled=lambda key: self._owners[key][0].cancelled)
        while True:
            if not batch:
                first = self._next(None)  # idle: wait for work, then gather company briefly
                if first is None:
                    return
                self._change_depth(-1)
                jobs = [first, *self._take(self.max_batch - len(first.prompts), self.gather_seconds)]
            else:
                jobs = self._take(self.max_batch - len(batch), 0.0)  # busy: join at this step
            with self.model_lock:
                for job in jobs:
                    self._admit(batch, job)
                if self._stopping:
                    self._fail(batch, None)
                    return
                if batch:
                    live = [row for row in batch.rows if not row.finish_reason]
                    self.stats.on_step(len(live), len({id(self._owners[row.key][0]) for row in live}),
                                       len({row.adapter for row in live}))
                    try:
                        events, ended = batch.step()
                    except Exception as exc:  # noqa: BLE001 - every request in the batch must hear of it
                        self._fail(batch, exc)
                        continue
                    self._dispatch(events, ended)

    def _admit(self, batch, job: Job) -> None:
        if job.cancelled:  # the client left while waiting: nothing to compute
            job.deliver(FINISHED)
            return
        try:
            keys = batch.add(job.prompts, job.params, job.adapters)
        except Exception as exc:  # noqa: BLE001 - this request fails; the running batch goes on
            job.deliver(exc)
            job.deliver(FINISHED)
            return
        job.unfinished = len(keys)
        for local, key in enumerate(keys):
            self._owners[key] = (job, local)

    def _dispatch(self, events: list[StreamEvent], ended: list[int]) -> None:
        """Hand a step's events to their requests: one wake-up per event loop, not one per event."""
        items: dict[asyncio.AbstractEventLoop, list[tuple[Job, StreamEvent | Finished]]] = {}
        for event in events:
            job, local = self._owners[event.index]
            items.setdefault(job.loop, []).append((job, StreamEvent(local, event.text, event.token_ids,
                                                                    event.finish_reason)))
        for key in ended:
            job, _ = self._owners.pop(key)
            job.unfinished -= 1
            if job.unfinished == 0:
                items.setdefault(job.loop, []).append((job, FINISHED))
        for loop, batch in items.items():
            try:
                loop.call_soon_threadsafe(_put_all, batch)
            except RuntimeError:  # the loop has closed (server shutting down): nobody is listening
                for job, _ in batch:
                    job.cancelled = True

    def _fail(self, batch, exc: BaseException | None) -> None:
        """End every admitted job: with `exc` after an error, quietly on shutdown."""
        batch.fail()
        jobs = {id(job): job for job, _ in self._owners.values()}
        self._owners.clear()
        for job in jobs.values():
            if exc is not None:
                job.deliver(exc)
            job.deliver(FINISHED)
