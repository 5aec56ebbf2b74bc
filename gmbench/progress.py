"""Progress bars: shown on an interactive terminal, silent in logs, tests and when switched off
(``--quiet``, ``gmbench.evaluate(progress=False)``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from tqdm.auto import tqdm

__all__ = ["progress", "progress_shown"]

T = TypeVar("T")
MIN_STEPS = 4  # fewer steps than this finish in a blink: no bar
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
