"""One worker thread owns the engine and batches whatever requests are waiting.

HTTP handlers run on the asyncio loop and must never block on the model. They `submit` a job (one
or more prompt rows: `n` choices or several completion prompts) and read its events from an
asyncio queue. The worker takes the first waiting job, gathers more for a short window (or until
the batch is full), runs them all as one `engine.stream` batch, and hands each row's events back
to its own request with `loop.call_soon_threadsafe`. A request whose client went away is marked
cancelled and the engine stops computing its rows at the next step.
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


@dataclass
class Job:
    prompts: list[list[int]]
    params: list[SamplingParams]
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: bool = False
    submitted_at: float = field(default_factory=time.perf_counter)

    def deliver(self, item: StreamEvent | BaseException | Finished) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, item)
        except RuntimeError:  # the loop has closed (server shutting down): nobody is listening
            self.cancelled = True


@dataclass
class BatchStats:
    """Hooks the metrics layer observes; the batcher itself keeps no counters."""

    on_batch: Callable[[int, int], None] = lambda rows, jobs: None  # rows and requests in a batch
    on_queue: Callable[[int], None] = lambda depth: None


class Batcher:
    """Run an Engine on a dedicated thread, batching jobs that wait together."""

    def __init__(self, engine: Engine, *, max_batch: int = 16, gather_seconds: float = 0.01,
                 stats: BatchStats | None = None) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.engine, self.max_batch, self.gather_seconds = engine, max_batch, gather_seconds
        self.stats = stats or BatchStats()
        self.model_lock = threading.Lock()  # held while the model computes; embeddings take it too
        self._pending: queue.Queue[Job | None] = queue.Queue()
        self._held: Job | None = None  # a job that did not fit the previous batch goes first next time
        self._depth = 0
        self._depth_lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="quark-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._pending.put(None)
        self._thread.join(timeout)

    def submit(self, prompts: list[list[int]], params: list[SamplingParams]) -> Job:
        """Queue rows for generation; call from the event loop. Rows must fit one batch."""
        if not 1 <= len(prompts) <= self.max_batch:
            raise ValueError(f"a request may have 1 to {self.max_batch} rows, not {len(prompts)}")
        job = Job(prompts, params, asyncio.get_running_loop())
        self._change_depth(+1)
        self._pending.put(job)
        return job

    def _change_depth(self, delta: int) -> None:
        with self._depth_lock:
            self._depth += delta
            depth = self._depth
        self.stats.on_queue(depth)

    def _next(self, timeout: float | None) -> Job | None | Finished:
        """The held job, else the next queued one; FINISHED when none came within `timeout`."""
        if self._held is not None:
            job, self._held = self._held, None
            return job
        try:
            return self._pending.get(timeout=timeout) if timeout is None or timeout > 0 else self._pending.get_nowait()
        except queue.Empty:
            return FINISHED

    def _gather(self, first: Job) -> list[Job]:
        """`first` plus the jobs arriving within the gather window that fit in the batch."""
        jobs, rows = [first], len(first.prompts)
        deadline = time.perf_counter() + self.gather_seconds
        while rows < self.max_batch:
            job = self._next(max(0.0, deadline - time.perf_counter()))
            if job is FINISHED:
                break
            if job is None:  # stop() while gathering: run what we have, then stop
                self._pending.put(None)
                break
            if rows + len(job.prompts) > self.max_batch:
                self._held = job
                break
            jobs.append(job)
            rows += len(job.prompts)
        return jobs

    def _work(self) -> None:
        while True:
            first = self._next(None)
            if first is None:
                return
            gathered = self._gather(first)
            self._change_depth(-len(gathered))
            jobs = [job for job in gathered if not job.cancelled]
            for job in gathered:
                if job.cancelled:  # the client left while waiting: nothing to compute
                    job.deliver(FINISHED)
            if jobs:
                self._run(jobs)

    def _run(self, jobs: list[Job]) -> None:
        owners: list[tuple[Job, int]] = [(job, k) for job in jobs for k in range(len(job.prompts))]
        prompts = [p for job in jobs for p in job.prompts]
        params = [p for job in jobs for p in job.params]
        self.stats.on_batch(len(prompts), len(jobs))
        try:
            with self.model_lock:
                for event in self.engine.stream(prompts, params, cancelled=lambda i: owners[i][0].cancelled):
                    job, local = owners[event.index]
                    job.deliver(StreamEvent(local, event.text, event.token_ids, event.finish_reason))
        except Exception as exc:  # noqa: BLE001 - every waiting request must hear about the failure
            for job in jobs:
                job.deliver(exc)
        finally:
            for job in jobs:
                job.deliver(FINISHED)

    def run_exclusive(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` (e.g. embeddings) while no batch is computing; call from a worker thread."""
        with self.model_lock:
            return fn()
