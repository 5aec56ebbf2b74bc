"""Seeds: child seeds derived from the run seed, and a forked global RNG state.

Randomness in gmbench is an argument. Every consumer derives its own seed from the run seed
and a name (:func:`child_seed`), so adding a metric never shifts another metric's draws, and
model code (which may use the global generators) runs inside :func:`forked_rng`, which
seeds ``random``, NumPy and torch and restores all three afterwards.
"""

from __future__ import annotations

import contextvars
import random
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["COMMON_SEED", "MAX_SEED", "check_seed", "child_seed", "current_seed", "forked_rng",
           "generator"]


MAX_SEED = 2**63 - 1
# The seed of gmbench's randomness in per-example scoring of the dataset's own splits
# (dequantization draws, the global generators a stochastic log_prob such as IWAE or an
# encoder draws from, the scored train subset): the draws are keyed by the examples and never
# by --seed, so an unchanged model gives the same per-example values in every run, and two
# runs can be compared example by example (common random numbers).
COMMON_SEED = 0
# The global generators are process-wide: a forked section (seed, draw, restore) holds this
# lock, so estimator work in a background thread (gmbench.core.background) never interleaves its
# draws with another section's.
_GLOBAL_RNG = threading.RLock()


def check_seed(seed: int) -> int:
    """``seed`` as an int in ``[0, 2**63 - 1]``; a :class:`ValueError` saying so otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"a seed must be an integer, got {type(seed).__name__} {seed!r}")
    if not 0 <= int(seed) <= MAX_SEED:
        raise ValueError(f"a seed must lie in [0, 2**63 - 1], got {seed}")
    return int(seed)


def child_seed(seed: int, *names: str | int) -> int:
    """A 31-bit seed derived deterministically from ``seed`` and a path of names.

    The whole run seed enters the derivation (NumPy's ``SeedSequence`` takes integers of any
    size), so seeds that differ anywhere, also above 2**32, give different draws.

    Args:
        seed: the run seed, in ``[0, 2**63 - 1]``.
        names: labels (strings or integers) naming the consumer, e.g. ``("sample", 3)``.
    """
    keys = [zlib.crc32(n.encode()) if isinstance(n, str) else int(n) for n in names]
    state = np.random.SeedSequence([check_seed(seed), *keys]).generate_state(1)
    return int(state[0]) & 0x7FFFFFFF


def generator(seed: int, *names: str | int) -> np.random.Generator:
    """A NumPy generator seeded with :func:`child_seed`."""
    return np.random.default_rng(child_seed(seed, *names))


@contextmanager
def forked_rng(seed: int) -> Iterator[None]:
    """Seed ``random``, NumPy and torch (CPU and CUDA) with ``seed``; restore them on exit.
    One forked section runs at a time in the process; :func:`current_seed` is its seed."""
    with _GLOBAL_RNG, _forked(seed):
        token = _CURRENT.set(seed)
        try:
            yield
        finally:
            _CURRENT.reset(token)


_CURRENT: contextvars.ContextVar[int | None] = contextvars.ContextVar("forked_seed",
                                                                      default=None)


def current_seed() -> int | None:
    """The seed of the innermost :func:`forked_rng` section running now (``None`` outside
    one): an isolated model worker seeds its own generators with it, so the model draws the
    same numbers there as in gmbench's process."""
    return _CURRENT.get()


@contextmanager
def _forked(seed: int) -> Iterator[None]:
    py_state = random.getstate()
    np_state = np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
