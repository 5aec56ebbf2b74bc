"""Seeds: child seeds derived from the run seed, and seeded sections for code that draws from
the global generators.

Randomness in gmbench is an argument. Every consumer derives its own seed from the run seed
and a name (:func:`child_seed`), so adding a metric never shifts another metric's draws, and
model code (which may use the global generators) runs inside :func:`forked_rng`, where the
calling thread's draws from ``random``, NumPy and torch come from generators seeded with the
section's seed (:mod:`gmbench.core.generators`), while the process's generators stay
untouched.
"""

from __future__ import annotations

import contextvars
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from gmbench.core.generators import private_generators

__all__ = ["COMMON_SEED", "MAX_SEED", "check_seed", "child_seed", "current_seed", "forked_rng",
           "generator"]


MAX_SEED = 2**63 - 1
# The seed of gmbench's randomness in per-example scoring of the dataset's own splits
# (dequantization draws, the global generators a stochastic log_prob such as IWAE or an
# encoder draws from, the scored train subset): the draws are keyed by the examples and never
# by --seed, so an unchanged model gives the same per-example values in every run, and two
# runs can be compared example by example (common random numbers).
COMMON_SEED = 0


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
    """Inside, the calling thread draws from ``random``, NumPy and torch (CPU and CUDA) as if
    they had just been seeded with ``seed`` (the same numbers), through generators of its own:
    the process's global generators are neither seeded nor restored, so another thread
    drawing from them meanwhile is not disturbed. :func:`current_seed` is the seed of the
    innermost section."""
    with private_generators(seed):
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
