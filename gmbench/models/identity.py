"""Which weights a model carries: a content hash of the parameters actually loaded.

A model's file hash (``model.sha256``) says which *code* ran; a retrained checkpoint loaded by
the same file is still another model. :func:`weights_identity` hashes what the model holds,
in this order of preference:

1. **declared files**: ``weights_files`` on the model object or ``WEIGHTS`` in the model file
   (a path or a list of paths, relative to the model file): the sha256 of each file;
2. **an ``nn.Module``**: its ``state_dict`` (every parameter and buffer: name, dtype, shape and
   bytes, in name order);
3. **anything else**: the tensors, arrays and modules among the object's attributes (one level
   deep, in name order), e.g. the ``loc`` and ``scale`` of a ``torch.distributions`` object.

Byte-identical weights give the same hash whatever file or process loaded them; a single
changed parameter gives another. ``None`` when the model holds no parameters (a model computed
entirely in code).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gmbench.core.errors import ModelError
from gmbench.core.files import sha256_file

__all__ = ["WeightsIdentity", "weights_identity"]


@dataclass(frozen=True)
class WeightsIdentity:
    """The weights' hash and where it came from (``"files"``, ``"state_dict"``,
    ``"attributes"``), with the declared files' names for the record."""

    sha256: str
    source: str
    files: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sha256": self.sha256, "source": self.source}
        if self.files:
            out["files"] = list(self.files)
        return out


def _tensor_bytes(value: torch.Tensor | np.ndarray) -> tuple[torch.dtype, tuple[int, ...], bytes]:
    """dtype, shape and contents of a tensor or array; sparse tensors by their dense values.
    Raises for what holds no bytes of its own (meta tensors, object arrays)."""
    if isinstance(value, np.ndarray):  # hashed as the tensor it converts to
        value = torch.from_numpy(np.ascontiguousarray(value))  # refuses object arrays
    t = value.detach()
    if t.is_meta:
        raise TypeError("meta tensor")
    if t.layout != torch.strided:
        t = t.to_dense()
    t = t.cpu().contiguous()
    return t.dtype, tuple(t.shape), t.reshape(-1).view(torch.uint8).numpy().tobytes()


def _update_tensor(digest: Any, name: str, value: torch.Tensor | np.ndarray) -> None:
    try:
        dtype, shape, data = _tensor_bytes(value)
    except Exception as exc:  # noqa: BLE001 - any tensor subclass may refuse
        raise ModelError(f"the model's parameter `{name}` cannot be hashed for the weights "
                         f"record ({type(exc).__name__}: {exc}): load real values into it "
                         "(not a meta tensor or an array of Python objects), or declare the "
                         "weight files with `WEIGHTS = \"weights.safetensors\"` in the model "
                         "file.") from None
    digest.update(f"{name}|{dtype}|{shape}|".encode())
    digest.update(data)


def _hash_named(named: Iterable[tuple[str, torch.Tensor | np.ndarray]]) -> str | None:
    digest = hashlib.sha256()
    count = 0
    for name, value in sorted(named, key=lambda kv: kv[0]):
        _update_tensor(digest, name, value)
        count += 1
    return digest.hexdigest() if count else None


def _attribute_arrays(obj: Any) -> list[tuple[str, torch.Tensor | np.ndarray]]:
    found: list[tuple[str, torch.Tensor | np.ndarray]] = []
    try:
        attributes: Mapping[str, Any] = vars(obj)
    except TypeError:  # no __dict__ (slots, builtins)
        return found
    for name, value in attributes.items():
        if isinstance(value, (torch.Tensor, np.ndarray)):
            found.append((name, value))
        elif isinstance(value, torch.nn.Module):
            found += [(f"{name}.{k}", v) for k, v in value.state_dict().items()]
    return found


def _declared_files(obj: Any, module_weights: Any, model_file: Path) -> list[Path] | None:
    declared = getattr(obj, "weights_files", None)
    if declared is None:
        declared = module_weights
    if declared is None:
        return None
    if isinstance(declared, (str, os.PathLike)):
        items = [declared]
    elif isinstance(declared, (list, tuple)) and all(isinstance(i, (str, os.PathLike))
                                                     for i in declared):
        items = list(declared)
    else:
        raise ModelError(f"{model_file.name}: `weights_files` / `WEIGHTS` is "
                         f"{type(declared).__name__}; give a path or a list of paths to the "
                         "weight files the model loads (relative to the model file).")
    paths = []
    for item in items:
        path = Path(item)
        path = path if path.is_absolute() else model_file.parent / path
        if not path.is_file():
            raise ModelError(f"{model_file.name} declares the weights file {item}, which does "
                             f"not exist (looked for {path}). Fix `weights_files` / `WEIGHTS`, "
                             "or remove the declaration to hash the loaded parameters instead.")
        paths.append(path)
    return paths


def weights_identity(obj: Any, *, model_file: Path, module_weights: Any = None
                     ) -> WeightsIdentity | None:
    """The identity of the weights ``obj`` holds (see the module docstring).

    Args:
        obj: the model object, as returned by ``load`` (before any call to it).
        model_file: the model file (declared paths are relative to its folder).
        module_weights: the model file's module-level ``WEIGHTS``, if any.
    """
    files = _declared_files(obj, module_weights, model_file)
    if files is not None:
        digest = hashlib.sha256()
        for path in sorted(files, key=lambda p: p.name):
            digest.update(f"{path.name}|{sha256_file(path)}|".encode())
        return WeightsIdentity(digest.hexdigest(), "files", tuple(p.name for p in files))
    if isinstance(obj, torch.nn.Module):
        sha = _hash_named(obj.state_dict().items())
        return WeightsIdentity(sha, "state_dict") if sha else None
    sha = _hash_named(_attribute_arrays(obj))
    return WeightsIdentity(sha, "attributes") if sha else None
