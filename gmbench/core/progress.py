"""Progress bars: shown on an interactive terminal, silent in logs, tests and when switched off
(``--quiet``, ``gmbench.evaluate(progress=False)``)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from tqdm.auto import tqdm

__all__ = ["progress", "progress_shown", "slowest", "stage"]

T = TypeVar("T")
MIN_STEPS = 4  # fewer steps than this finish in a blink: no bar
STAGE_DELAY = 1.0  # seconds before a stage's spinner appears (quicker stages show nothing)
_SHOWN: ContextVar[bool] = ContextVar("gmbench_progress", default=True)


@contextmanager
def progress_shown(shown: bool) -> Iterator[None]:
    """Show (the default, on a terminal) or hide every progress bar inside the block."""
    token = _SHOWN.set(shown)
    try:
        yield
    finally:
        _SHOWN.reset(token)


def progress(items: Iterable[T], *, total: int | None = None, desc: str = "") -> Iterator[T]:
    """Iterate ``items`` with a bar on stderr when it is a terminal (``disable=None``) and bars
    are not switched off."""
    if (total is not None and total < MIN_STEPS) or not _SHOWN.get():
        yield from items
        return
    yield from tqdm(items, total=total, desc=desc, disable=None, leave=False, dynamic_ncols=True)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """A spinner naming the stage and its elapsed time on stderr, shown once the stage has run
    for :data:`STAGE_DELAY` seconds (on a terminal, and unless bars are switched off)."""
    if not _SHOWN.get():
        yield
        return
    done = threading.Event()

    def spin() -> None:
        if done.wait(STAGE_DELAY):
            return
        bar = tqdm(total=None, desc=name, disable=None, leave=False, dynamic_ncols=True,
                   bar_format="{desc}: {elapsed}")
        try:
            while not bar.disable and not done.wait(0.5):
                bar.refresh()
        finally:
            bar.close()

    spinner = threading.Thread(target=spin, daemon=True, name="gmbench-stage")
    spinner.start()
    try:
        yield
    finally:
        done.set()
        spinner.join()


def slowest(seconds: dict[str, float], count: int = 3) -> str:
    """``"a 8.8 s, b 4.8 s, c 3.9 s"``: the ``count`` slowest stages of per-stage seconds."""
    top = sorted(seconds.items(), key=lambda kv: -kv[1])[:count]
    return ", ".join(f"{key} {value:.1f} s" for key, value in top if value > 0)
