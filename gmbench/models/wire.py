"""The channel between gmbench and an isolated model worker (:mod:`gmbench.models.isolated`):
length-prefixed JSON headers followed by raw arrays, nothing unpickled.

A message is an 8-byte little-endian length, that many bytes of UTF-8 JSON (an object), then
the raw bytes of each array its ``"arrays"`` entry describes (``dtype`` from a fixed list of
numeric types, ``shape``), in order, C-contiguous and little-endian. The reader checks every
size against :data:`MAX_HEADER` and the byte budget it is given before it reads, so a peer that
claims 10^12 values is refused instead of allocated.
"""

from __future__ import annotations

import json
import math
import os
import select
import struct
import time
from typing import Any

import numpy as np

__all__ = ["DTYPES", "MAX_HEADER", "ChannelClosed", "ChannelError", "ChannelTimeout",
           "read_message", "write_message"]

MAX_HEADER = 1 << 20  # bytes of a message's JSON header
# the dtypes an array on the channel may have (numbers only: no objects, no strings)
DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                    "uint64", "float16", "float32", "float64"})


class ChannelError(Exception):
    """A malformed message (bad length, JSON, dtype, shape or size)."""


class ChannelClosed(ChannelError):
    """The peer closed the channel (it exited or was killed)."""


class ChannelTimeout(ChannelError):
    """The peer did not answer before the deadline."""


def _wait(fd: int, *, write: bool, deadline: float | None) -> None:
    if deadline is None:
        return
    left = deadline - time.monotonic()
    if left <= 0:
        raise ChannelTimeout
    ready = select.select([], [fd], [], left) if write else select.select([fd], [], [], left)
    if not any(ready):
        raise ChannelTimeout


def _write_all(fd: int, data: bytes | memoryview, deadline: float | None) -> None:
    view = memoryview(data).cast("B")
    while view:
        _wait(fd, write=True, deadline=deadline)
        try:
            sent = os.write(fd, view[:1 << 20])
        except BrokenPipeError:
            raise ChannelClosed from None
        view = view[sent:]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytearray:
    out = bytearray(n)
    view = memoryview(out)
    got = 0
    while got < n:
        _wait(fd, write=False, deadline=deadline)
        chunk = os.readv(fd, [view[got:got + (1 << 20)]])
        if chunk == 0:
            raise ChannelClosed
        got += chunk
    return out


def write_message(fd: int, header: dict[str, Any], arrays: tuple[np.ndarray, ...] | list[np.ndarray]
                  = (), *, deadline: float | None = None) -> None:
    """Send ``header`` (JSON-able) and ``arrays`` (numeric numpy arrays)."""
    prepared = []
    for a in arrays:
        a = np.asarray(a)
        if a.dtype.name not in DTYPES:
            raise ChannelError(f"an array of dtype {a.dtype} cannot cross the channel")
        prepared.append(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")))
    head = {**header, "arrays": [{"dtype": a.dtype.name, "shape": list(a.shape)}
                                 for a in prepared]}
    blob = json.dumps(head).encode()
    _write_all(fd, struct.pack("<Q", len(blob)) + blob, deadline)
    for a in prepared:
        if a.nbytes:
            _write_all(fd, a.data.cast("B"), deadline)


def read_message(fd: int, *, max_bytes: int, deadline: float | None = None
                 ) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Receive one message: its header and arrays (owned, writable copies). ``max_bytes``
    bounds the arrays' total size."""
    (length,) = struct.unpack("<Q", bytes(_read_exact(fd, 8, deadline)))
    if length > MAX_HEADER:
        raise ChannelError(f"a header of {length} bytes (at most {MAX_HEADER})")
    try:
        header = json.loads(bytes(_read_exact(fd, length, deadline)))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ChannelError(f"a header that is not JSON ({exc})") from None
    specs = header.get("arrays") if isinstance(header, dict) else None
    if not isinstance(specs, list):
        raise ChannelError("a header without its list of arrays")
    shapes = []
    total = 0
    for spec in specs:
        dtype, shape = (spec.get("dtype"), spec.get("shape")) if isinstance(spec, dict) \
            else (None, None)
        if dtype not in DTYPES or not isinstance(shape, list) or not all(
                isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**40
                for s in shape) or len(shape) > 32:
            raise ChannelError(f"an array described as {spec!r}")
        size = math.prod(shape) * np.dtype(dtype).itemsize
        total += size
        if total > max_bytes:
            raise ChannelError(f"arrays of more than {max_bytes:,} bytes")
        shapes.append((np.dtype(dtype).newbyteorder("<"), tuple(shape), size))
    arrays = []
    for dtype, shape, size in shapes:
        raw = _read_exact(fd, size, deadline) if size else bytearray()
        arrays.append(np.frombuffer(raw, dtype=dtype).reshape(shape).astype(
            dtype.newbyteorder("="), copy=False))
    return header, arrays
