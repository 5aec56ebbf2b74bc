"""Ray, when installed (``pip install "gmbench[ray]"``): started on this machine or joined,
with nothing sent off the machine unasked (usage statistics and the dashboard off)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gmbench.core.errors import GmbenchError

__all__ = ["INSTALL_HINT", "RayError", "ray_available", "ray_session"]

INSTALL_HINT = ('install Ray for parallel and multi-node runs: pip install "gmbench[ray]"')


class RayError(GmbenchError):
    """Ray is missing where it was asked for, or its cluster cannot be reached."""


def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None


@contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """The ``ray`` module, initialised: a Ray already running in this process is used as it
    is (and left running); else ``address`` is joined (``"auto"``, ``"ray://host:port"``) or,
    without one, a local Ray is started on this machine with all its CPUs and no dashboard,
    and shut down afterwards. Usage statistics are switched off before Ray is imported."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # workers inherit it
    if not ray_available():
        raise RayError(f"Ray is not installed; {INSTALL_HINT}.")
    import ray

    if ray.is_initialized():
        yield ray
        return
    options: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING",
                               "configure_logging": True}
    if address:
        options["address"] = address
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise RayError(f"could not start or join {where}: {exc}. Check the address "
                       "(`ray start --head` prints it), or leave --address out to run on "
                       "this machine.") from None
    try:
        yield ray
    finally:
        ray.shutdown()
