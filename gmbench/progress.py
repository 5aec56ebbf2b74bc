"""Progress bars: shown on an interactive terminal, silent in logs and tests."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

__all__ = ["progress"]

T = TypeVar("T")
MIN_STEPS = 4  # fewer steps than this finish in a blink: no bar


def progress(items: Iterable[T], *, total: int | None = None, desc: str = "") -> Iterator[T]:
    """Iterate ``items`` with a bar on stderr when it is a terminal (``disable=None``)."""
    if total is not None and total < MIN_STEPS:
        yield from items
        return
    yield from tqdm(items, total=total, desc=desc, disable=None, leave=False, dynamic_ncols=True)
