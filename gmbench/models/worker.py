"""The isolated model worker's side: ``python -m gmbench.models.worker READ_FD WRITE_FD``.

Started by :mod:`gmbench.models.isolated`, in a fresh empty working folder and under the
limits it sets. It reads a ``load`` message (the model file, the dataset's description, the
device, and a copy of the training split), imports the model file and builds the model as
``gmbench evaluate`` does in its own process, answers with what the model declares, then
serves ``call`` messages (one member of the model, its seed, its input arrays) until ``close``
or the end of the channel. The copy of the training split is what ``get_dataset(name)``
returns here, with an empty test split: nothing of the test split reaches a worker except as
the inputs of the calls that score it. What the model prints goes to stderr (the channel has
its own descriptors).
"""

from __future__ import annotations

import os
import random
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gmbench.core.errors import GmbenchError
from gmbench.core.rng import forked_rng
from gmbench.datasets import Dataset, DatasetInfo, Documents, Split
from gmbench.models.wire import ChannelClosed, read_message, write_message

__all__ = ["ATTRIBUTES", "main"]

# the model attributes gmbench reads besides its members (JSON values only)
ATTRIBUTES = ("log_prob_space", "log_prob_kind", "NAME", "context_length", "vocab_size",
              "bos_token_id", "tokenizer_name")
MEMBERS = ("sample", "log_prob", "encode", "decode", "sample_conditional", "token_log_prob",
           "tokenize")
MAX_INPUT = 16 << 30  # bytes of one message's arrays from gmbench (the training split)


def _dataset(info: dict[str, Any], header: dict[str, Any], arrays: list[np.ndarray]) -> Dataset:
    """The dataset as the model may see it: the training split, an empty test split."""
    desc = DatasetInfo(**{**info, "shape": tuple(info["shape"])})  # its to_dict()
    x, rest = arrays[0], arrays[1:]
    y = rest.pop(0) if header.get("has_labels") else None
    documents = None
    if header.get("documents") is not None:
        data, starts = rest
        documents = Documents(tuple(header["documents"]), data, starts)
    empty = Split(np.zeros((0, *x.shape[1:]), x.dtype), None if y is None else y[:0],
                  None if documents is None else Documents((), data[:0], starts[:1] * 0))
    return Dataset(info=desc, train=Split(x, y, documents), test=empty,
                   source="a copy of the training split (isolated worker)")


def _array(value: Any, where: str) -> list[np.ndarray]:
    """What a member returned as arrays: one, or each of a tuple's (``(z, log_q)``)."""
    from gmbench.models.model import _to_numpy

    if isinstance(value, tuple) and value and all(
            isinstance(v, (torch.Tensor, np.ndarray)) for v in value):
        return [_to_numpy(v, where=where) for v in value]
    return [_to_numpy(value, where=where)]


class _Server:
    def __init__(self, model: Any, device: str) -> None:
        self.model = model
        self.device = device
        self.kept: dict[int, tuple[Any, tuple[Any, ...]]] = {}  # encode's codes, by handle
        self.handles = 0

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).to(self.device)

    @contextmanager
    def _continued(self, states: tuple[Any, ...]) -> Iterator[None]:
        """A forked RNG section that starts where ``encode`` left the generators (in gmbench's
        process ``decode`` follows ``encode`` in one seeded section)."""
        with forked_rng(0):
            random.setstate(states[0])
            np.random.set_state(states[1])
            torch.set_rng_state(states[2])
            yield

    def call(self, header: dict[str, Any], arrays: list[np.ndarray]) -> list[np.ndarray]:
        m = self.model
        member, seed = header["member"], int(header["seed"])
        where = f"{m.source.path.name}: `{member}`"
        if member == "decode":
            z, states = self.kept.pop(int(header["handle"]))
            with self._continued(states):
                return _array(m.call("decode", m.attribute("decode", None), z), where)
        with forked_rng(seed):
            if member == "sample":
                out = m.call("sample", m._sample_call, int(header["count"]), seed)
            elif member == "tokenize":
                out = m.call("tokenize", m.attribute("tokenize", None), arrays[0].tobytes())
                return [np.asarray(v) for v in out] if isinstance(out, (tuple, list)) \
                    else _array(out, where)
            else:
                out = m.call(member, m.attribute(member, None), self._tensor(arrays[0]))
            if member == "encode":
                self.handles += 1
                handle = self.handles
                self.kept[handle] = (out, (random.getstate(), np.random.get_state(),
                                           torch.get_rng_state()))
                return [np.asarray([handle], dtype=np.int64)]
        return _array(out, where)


def _serve(rfd: int, wfd: int) -> None:
    from gmbench.datasets import _OWN
    from gmbench.models.model import build_model, import_model_file

    write_message(wfd, {"ok": True, "ready": True})  # gmbench and torch imported: time starts
    header, _ = read_message(rfd, max_bytes=0)  # "import": the model file
    try:
        module, source = import_model_file(Path(header["path"]))
    except GmbenchError as exc:
        write_message(wfd, {"error": str(exc)})
        return
    write_message(wfd, {"ok": True, "name": source.name, "dataset": source.dataset,
                        "reference": source.reference, "sha256": source.sha256})
    header, arrays = read_message(rfd, max_bytes=MAX_INPUT)  # "load": the dataset's copy
    if header.get("op") != "load":
        return
    torch.set_num_threads(int(header["threads"]))
    data = _dataset(header["info"], header, arrays)
    _OWN[data.info.name] = data  # get_dataset(name) in the model: this copy
    device = header["device"]
    try:
        model = build_model(module, source, data.info, device)
    except GmbenchError as exc:
        write_message(wfd, {"error": str(exc)})
        return
    attributes = {}
    for name in ATTRIBUTES:
        value = model.attribute(name, None)
        if isinstance(value, (str, int, float, bool)) or value is None:
            attributes[name] = value
    members = [m for m in MEMBERS if callable(model.attribute(m, None))]
    weights = model.source.weights
    write_message(wfd, {"ok": True, "attributes": attributes, "members": members,
                        "weights": None if weights is None else weights.to_dict()})
    server = _Server(model, device)
    while True:
        try:
            header, arrays = read_message(rfd, max_bytes=MAX_INPUT)
        except ChannelClosed:
            return
        if header.get("op") == "close":
            return
        try:
            write_message(wfd, {"ok": True}, server.call(header, arrays))
        except GmbenchError as exc:
            write_message(wfd, {"error": str(exc)})


def main(argv: list[str]) -> int:
    rfd, wfd = int(argv[0]), int(argv[1])
    os.dup2(2, 1)  # what the model prints goes to stderr, never into the channel
    sys.stdout = sys.stderr
    try:
        _serve(rfd, wfd)
    except ChannelClosed:
        return 0
    except BaseException:  # noqa: BLE001 - reported to gmbench as the worker's failure
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
