"""Estimator work beside the main thread, inside one thread budget.

Some estimators train small networks on a single thread (the C2ST's classifiers: larger
threads only add contention), which leaves the other cores idle. :class:`Background` runs such
work on one worker thread while the main thread goes on with the other metrics on the rest of
the budget, so the whole run uses ``torch.get_num_threads()`` threads and never more:

* while work is pending, the main thread runs on ``budget - 1`` threads; it gets the whole
  budget back at the first :meth:`Background.poll` (between metrics) after the work is done,
  and at :meth:`Background.result`;
* background work is estimator arithmetic on arrays and never calls the model: model code may
  change process-wide state (the default dtype, the thread count), so every entry into model
  code first waits for all pending work (:func:`gmbench.models.boundary.model_code` calls the
  hooks of :func:`before_model_code`);
* seeded sections (:func:`gmbench.core.rng.forked_rng`) draw from generators private to their
  thread, so work in the two threads never shares a generator;
* with a budget of one thread there is nothing to overlap, and work runs at once, in order.

Results do not depend on the overlap: the work is the same arithmetic on the same arrays, and
on this machine's BLAS the products are the same bitwise on one or two threads
(``tests/test_background.py`` checks both on the whole default evaluation).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["Background", "before_model_code", "in_background", "thread_budget"]

_LOCAL = threading.local()
_HOOKS: list[Callable[[], None]] = []


@contextmanager
def thread_budget(threads: int | None) -> Iterator[None]:
    """Run the block on ``threads`` threads in all: torch's pool, the BLAS libraries' pools
    (threadpoolctl) and the background worker, which takes one of them (``None``: as they
    are). The previous counts come back on the way out."""
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)


def in_background() -> bool:
    """Whether the calling thread is a :class:`Background` worker."""
    return getattr(_LOCAL, "worker", False)


def before_model_code() -> None:
    """Wait for every pending background job (model code may change process-wide state)."""
    if in_background():
        raise RuntimeError("background work may not call model code")
    for hook in list(_HOOKS):
        hook()


class Background:
    """Jobs run on one worker thread, each stored under a key until :meth:`result` takes it.

    Args:
        budget: threads for the whole run (default: torch's current count).
    """

    def __init__(self, budget: int | None = None) -> None:
        self.budget = budget or torch.get_num_threads()
        self._jobs: dict[str, Future[Any]] = {}
        self._queue: list[tuple[Callable[[], Any], Future[Any]]] = []
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    @property
    def overlaps(self) -> bool:
        """Whether jobs run beside the main thread (a budget of at least two threads)."""
        return self.budget >= 2

    def submit(self, key: str, job: Callable[[], Any]) -> None:
        """Run ``job()`` in the background (at once, when the budget is one thread)."""
        fut: Future[Any] = Future()
        self._jobs[key] = fut
        if not self.overlaps:
            _settle(fut, job)
            return
        if self.wait not in _HOOKS:
            _HOOKS.append(self.wait)
        torch.set_num_threads(self.budget - 1)
        with self._lock:
            self._queue.append((job, fut))
            if self._worker is None:
                self._worker = threading.Thread(target=self._drain, daemon=True,
                                                name="gmbench-background")
                self._worker.start()

    def pending(self, key: str) -> bool:
        return key in self._jobs

    def result(self, key: str) -> Any:
        """The job's value (waiting for it), or its exception, raised here."""
        fut = self._jobs.pop(key)
        try:
            return fut.result()
        finally:
            self.poll()

    def poll(self) -> None:
        """Give the main thread the whole budget back once no job is running."""
        if self.overlaps and all(f.done() for f in self._jobs.values()) and not self._queue:
            if torch.get_num_threads() != self.budget:
                torch.set_num_threads(self.budget)
            if self.wait in _HOOKS and not self._jobs:
                _HOOKS.remove(self.wait)

    def wait(self) -> None:
        """Wait until every submitted job has finished (their results stay to be taken)."""
        for fut in list(self._jobs.values()):
            fut.exception()  # waits; the error, if any, is raised by `result`
        self.poll()

    def close(self) -> None:
        """Wait for every job, drop the results, and restore the thread count."""
        self.wait()
        self._jobs.clear()
        self.poll()

    def _drain(self) -> None:
        _LOCAL.worker = True
        while True:
            with self._lock:
                if not self._queue:
                    self._worker = None
                    return
                job, fut = self._queue.pop(0)
            _settle(fut, job)


def _settle(fut: Future[Any], job: Callable[[], Any]) -> None:
    try:
        fut.set_result(job())
    except BaseException as exc:  # noqa: BLE001 - handed to whoever takes the result
        fut.set_exception(exc)
