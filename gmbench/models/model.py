"""The model contract (``docs/CONTRACT.md``, section 2): importing a model file, and calling
it safely.

:func:`import_model_file` imports ``model.py``; :func:`build_model` takes the model from
``load(dataset, device)`` or a module-level ``model`` and wraps it in a :class:`Model`, which
calls the user's members in batches, inside a forked and seeded RNG state, and validates what
they return. Anything wrong becomes a :class:`~gmbench.core.errors.ModelError` naming the file,
the member and the fix.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import inspect
import math
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from gmbench.core.errors import ModelError
from gmbench.core.files import sha256_file
from gmbench.core.progress import progress
from gmbench.core.rng import child_seed, forked_rng
from gmbench.datasets import DatasetInfo
from gmbench.estimators.uncertainty import logmeanexp
from gmbench.models.boundary import CallTimeout, ModelExit, model_code, owned
from gmbench.models.identity import WeightsIdentity, weights_identity
from gmbench.models.text import text_interface

__all__ = [
    "CAPABILITIES",
    "LOG_PROB_KINDS",
    "LOG_PROB_SPACES",
    "Model",
    "ModelSource",
    "build_model",
    "import_model_file",
    "refuse_class",
]

CAPABILITIES = ("sample", "log_prob", "encode_decode", "sample_conditional", "token_log_prob")
LOG_PROB_SPACES = ("data", "dequantized")
LOG_PROB_KINDS = ("exact", "lower_bound", "estimate")
POSITIVE_MASS_TOLERANCE = 1e-4  # nats: float32 rounding of a log-mass near 0
MAX_ABS_LOG_PROB = 1e10  # nats: beyond this a log-probability is an overflow, not a model
FLOAT_RANGE_TOLERANCE = 1e-6
# The model is asked for samples in blocks of this many, block b inside an RNG state seeded
# from (seed, b): the samples depend on the seed alone, never on --batch-size.
SAMPLE_BLOCK = 1000
# Dequantization noise is drawn in blocks of this many examples, block b from (seed, split,
# draw, b), and sliced for each batch: example i gets the same noise at any --batch-size.
NOISE_BLOCK = 256


@dataclass(frozen=True)
class ModelSource:
    """Where a model came from: path, display name, sha256 of the file, declared dataset,
    (once built) the identity of the weights it loaded, and ``reference``: why it is a
    reference point rather than a competitor (the file's ``REFERENCE``, e.g. a memorizer;
    ``""`` for a competitor). Boards show reference models for orientation, never as the
    best baseline or on a Pareto front."""

    path: Path
    name: str
    sha256: str
    dataset: str | None
    weights: WeightsIdentity | None = None
    reference: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "sha256": self.sha256, "name": self.name,
                "weights_sha256": None if self.weights is None else self.weights.sha256,
                "weights_source": None if self.weights is None else self.weights.source,
                "reference": self.reference or None}


def _line_in(exc: BaseException, path: Path) -> str:
    """``" (model.py line 12)"`` for the innermost frame of ``exc`` inside ``path``."""
    if isinstance(exc, SyntaxError) and exc.lineno is not None:
        return f" ({path.name} line {exc.lineno})"
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if Path(f.filename).resolve() == path]
    return f" ({path.name} line {frames[-1].lineno})" if frames else ""


def _what_happened(exc: BaseException) -> str:
    """``raised ValueError: ...``, or how the code tried to end the process."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    if isinstance(exc, ModelExit):
        return f"called os._exit({exc.status})"
    if isinstance(exc, CallTimeout):
        return str(exc)
    try:
        text = str(exc).rstrip(".")
    except Exception:  # noqa: BLE001 - an exception whose __str__ raises
        text = "(its message cannot be printed)"
    if len(text) > MAX_MESSAGE:
        text = f"{text[:MAX_MESSAGE]}... ({len(text)} characters in all)"
    return f"raised {type(exc).__name__}: {text}"


MAX_MESSAGE = 2000  # characters of a model's exception message repeated in gmbench's error


def _folder_of(path: Path) -> str | None:
    """The folder of a model file, to keep importable while its code runs (``None`` for a
    model given as an object)."""
    return str(path.resolve().parent) if path.is_file() else None


# the members behind each capability
_MEMBERS = {"sample": ("sample",), "log_prob": ("log_prob",), "encode_decode": ("encode", "decode"),
            "sample_conditional": ("sample_conditional",), "token_log_prob": ("token_log_prob",)}


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1].lower() in "aeiou" else f"a {noun}"


def refuse_class(obj: Any, *, what: str, fix: str) -> None:
    """A :class:`ModelError` when ``obj`` is a class where a model object belongs
    (``evaluate(M)`` for ``evaluate(M())``): its members are then unbound functions, and the
    first call would fail with a message that blames them. ``what`` names the place, ``fix``
    says what to do instead (``{name}`` is the class's name)."""
    if inspect.isclass(obj):
        name = obj.__name__
        raise ModelError(f"{what} is the class {name}, not a model object; "
                         f"{fix.format(name=name)}.")


def _attr(obj: Any, name: str, default: Any, *, where: str) -> Any:
    """``getattr(obj, name, default)`` run as model code: a property or ``__getattr__`` that
    raises (anything but ``AttributeError``) becomes a :class:`ModelError` naming ``name``."""
    try:
        with model_code():
            return getattr(obj, name, default)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise ModelError(f"{where}: reading `{name}` {_what_happened(exc)}. Make `{name}` a "
                         "plain attribute or method, or remove it.") from None


def import_model_file(path: str | Path) -> tuple[ModuleType, ModelSource]:
    """Import a model file as a fresh module; its directory is on ``sys.path`` meanwhile."""
    file = Path(path).resolve()
    if file.is_dir():
        raise ModelError(f"Model file {path} is a directory; pass the path of a Python file "
                         "(e.g. model.py) that defines `load(dataset, device)` or `model`.")
    if file.exists() and not file.is_file():
        raise ModelError(f"Model file {path} is not a regular file (a pipe, device or "
                         "socket); pass the path of a Python file.")
    if not file.is_file():
        raise ModelError(f"Model file {path} does not exist. Pass the path of a Python file "
                         "that defines `load(dataset, device)` or a module-level `model`.")
    try:
        digest = sha256_file(file)
    except OSError as exc:
        raise ModelError(f"Model file {path} cannot be read ({exc.strerror}); check its "
                         "permissions.") from None
    module_name = f"gmbench_model_{hashlib.sha1(str(file).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ModelError(f"{path} cannot be imported as a Python module; give a .py file.")
    module = importlib.util.module_from_spec(spec)
    # registered, as an import would: a model that pickles its own classes (a copy, a
    # process pool) finds its module by name
    sys.modules[module_name] = module
    sys.path.insert(0, str(file.parent))
    try:
        with model_code():
            spec.loader.exec_module(module)
    except (KeyboardInterrupt, ModelError):
        raise
    except BaseException as exc:  # any error in user code becomes a one-paragraph message
        hint = (" Install the missing package, or remove the import."
                if isinstance(exc, ModuleNotFoundError) else "")
        raise ModelError(
            f"{path} does not import: it {_what_happened(exc)}{_line_in(exc, file)}. "
            f"Fix the file so that `python {path}` runs without error.{hint}"
        ) from None
    finally:
        if str(file.parent) in sys.path:
            sys.path.remove(str(file.parent))
    name = _attr(module, "NAME", None, where=str(path))
    if name is not None and not isinstance(name, str):
        raise ModelError(f"{path}: `NAME` must be a string such as \"my-model\", got "
                         f"{type(name).__name__}.")
    name = name or (file.parent.name if file.stem == "model" else file.stem)
    dataset = _attr(module, "DATASET", None, where=str(path))
    if dataset is not None and not isinstance(dataset, str):
        raise ModelError(f"{path}: `DATASET` must be a string such as \"fashion-mnist\", "
                         f"got {type(dataset).__name__}.")
    reference = _attr(module, "REFERENCE", None, where=str(path))
    if reference is not None and not (isinstance(reference, str) and reference.strip()):
        raise ModelError(f"{path}: `REFERENCE` must say in words why the model is a "
                         "reference point (e.g. \"replays training images\"), got "
                         f"{reference!r}.")
    return module, ModelSource(path=file, name=name, sha256=digest, dataset=dataset,
                               reference=(reference or "").strip())


def _to_numpy(value: Any, *, where: str) -> np.ndarray:
    """A copy owned by gmbench: a model that refills its output buffer cannot change it."""
    try:
        return _convert(value, where=where)
    except (ModelError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - a tensor subclass, an odd array-like
        raise ModelError(f"{where} returned a {type(value).__name__} that cannot be copied to a "
                         f"NumPy array ({_what_happened(exc)}); return a plain torch tensor or "
                         "numpy array.") from None


def _convert(value: Any, *, where: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        if value.is_meta:
            raise ModelError(f"{where} returned a meta tensor (a shape without values); return "
                             "a tensor with data.")
        if value.layout != torch.strided:
            value = value.to_dense()
        return owned(value.float() if value.dtype == torch.bfloat16 else value)
    if isinstance(value, np.ndarray):
        return owned(value)
    if isinstance(value, (list, tuple)):
        try:
            return np.array(value)
        except (ValueError, TypeError):
            pass
    raise ModelError(f"{where} returned a {type(value).__name__}; return a torch tensor or a "
                     "numpy array.")


def _describe_nonfinite(values: np.ndarray, offset: int, split: str) -> str:
    parts = []
    for label, mask in (("NaN", np.isnan(values)), ("+inf", np.isposinf(values)),
                        ("-inf", np.isneginf(values))):
        idx = np.flatnonzero(mask)
        if idx.size:
            shown = ", ".join(str(int(i) + offset) for i in idx[:5])
            more = f" and {idx.size - 5} more" if idx.size > 5 else ""
            parts.append(f"{idx.size} {label} (at {split} rows {shown}{more})")
    return "; ".join(parts)


class _NoiseBlocks:
    """Uniform dequantization noise ``u ~ U[0,1)^D`` keyed on the example's index: block ``b``
    of :data:`NOISE_BLOCK` rows is drawn from ``(seed, split, draw, b)``, so example ``i``
    gets the same noise whatever the batch it is scored in."""

    def __init__(self, seed: int, split: str, draw: int, dim: int) -> None:
        self.seed, self.split, self.draw, self.dim = seed, split, draw, dim
        self._cache: dict[int, np.ndarray] = {}

    def _block(self, b: int) -> np.ndarray:
        if b not in self._cache:
            if len(self._cache) > 2:
                self._cache.pop(next(iter(self._cache)))
            rng = np.random.default_rng(child_seed(self.seed, "dequant", self.split, self.draw,
                                                   b))
            self._cache[b] = rng.random((NOISE_BLOCK, self.dim))
        return self._cache[b]

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Noise of examples ``start .. stop - 1``, ``(stop - start, D)`` float64."""
        first, last = start // NOISE_BLOCK, (stop - 1) // NOISE_BLOCK
        parts = [self._block(b) for b in range(first, last + 1)]
        joined = parts[0] if len(parts) == 1 else np.concatenate(parts)
        offset = start - first * NOISE_BLOCK
        return joined[offset:offset + stop - start]


def _batches(n: int, size: int) -> Iterator[tuple[int, int, int]]:
    for i, start in enumerate(range(0, n, size)):
        yield i, start, min(start + size, n)


class Model:
    """A user's model behind validated, batched, seeded calls.

    Attributes:
        source: where the model file is and its hash.
        info: the dataset the model is evaluated on.
        capabilities: the subset of :data:`CAPABILITIES` it has.
        log_prob_space: ``"data"`` or ``"dequantized"``.
        log_prob_kind: ``"exact"``, ``"lower_bound"`` or ``"estimate"``.
    """

    def __init__(self, obj: Any, *, source: ModelSource, info: DatasetInfo, device: str) -> None:
        self.obj = obj
        self.source = source
        self.info = info
        self.device = torch.device(device)
        refuse_class(obj, what=f"{self._file}: the model", fix="pass an instance, `{name}()`")
        found = {m: _attr(obj, m, None, where=self._file) for cap in CAPABILITIES
                 for m in _MEMBERS[cap]}
        for member, value in found.items():
            if value is not None and not callable(value):
                raise ModelError(
                    f"{self._file}: the model's `{member}` is {_a(type(value).__name__)}, not a "
                    f"method, so gmbench cannot call `{member}(...)`. Define `{member}` as a "
                    "method (docs/CONTRACT.md, section 2), or give the attribute another name.")
        self.capabilities = frozenset(cap for cap in CAPABILITIES
                                      if all(found[m] is not None for m in _MEMBERS[cap]))
        if not {"sample", "log_prob", "token_log_prob"} & self.capabilities:
            raise ModelError(f"{self._file}: the model ({type(obj).__name__}) has neither "
                             "`sample(n)` nor `log_prob(x)`"
                             + (" nor `token_log_prob(x)`" if info.kind == "text" else "")
                             + "; define at least one of them.")
        self.text = text_interface(self, obj) if "token_log_prob" in self.capabilities \
            else None
        self._token_log_prob = _attr(obj, "token_log_prob", None, where=self._file)
        self.log_prob_space = _attr(obj, "log_prob_space", "data", where=self._file)
        self.log_prob_kind = _attr(obj, "log_prob_kind", "exact", where=self._file)
        if not isinstance(self.log_prob_space, str) or self.log_prob_space not in LOG_PROB_SPACES:
            raise ModelError(f"{self._file}: `log_prob_space` is {self.log_prob_space!r}; use "
                             "\"data\" or \"dequantized\".")
        if not isinstance(self.log_prob_kind, str) or self.log_prob_kind not in LOG_PROB_KINDS:
            raise ModelError(f"{self._file}: `log_prob_kind` is {self.log_prob_kind!r}; use one "
                             "of \"exact\", \"lower_bound\" (an ELBO), \"estimate\" (IWAE).")
        if self.log_prob_space == "dequantized" and not info.is_discrete:
            raise ModelError(f"{self._file}: `log_prob_space = \"dequantized\"` is only for "
                             f"discrete data, but {info.name} is continuous; use \"data\".")
        self._sample_call = self._make_sample_call() if "sample" in self.capabilities else None
        # how the model was contained when it ran in isolated workers (``--isolate``)
        self.isolation: dict[str, Any] | None = None

    @property
    def _file(self) -> str:
        return self.source.path.name

    def attribute(self, name: str, default: Any) -> Any:
        """The model's attribute ``name`` (read as model code), else ``default``."""
        return _attr(self.obj, name, default, where=self._file)

    def call(self, member: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` as the model's ``member``: seeded, without gradients, any exception
        a :class:`ModelError` naming the member."""
        return self._call(member, fn, *args)

    def _call(self, member: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            with model_code(_folder_of(self.source.path)), torch.no_grad():
                return fn(*args, **kwargs)
        except (ModelError, KeyboardInterrupt):
            raise
        except CallTimeout as exc:
            raise ModelError(
                f"{self._file}: `{member}` {exc}; it was stopped. Raise --timeout if the model "
                "is slow, or fix it (a model stuck inside one long C call is stopped only "
                "under --isolate, which ends its worker).") from None
        except BaseException as exc:
            raise ModelError(
                f"{self._file}: `{member}` {_what_happened(exc)}"
                f"{_line_in(exc, self.source.path)}. Fix `{member}` so that it accepts "
                f"what the contract (section 2) describes for {self.info.name} "
                f"(one example has shape {self.info.shape}) and returns its result."
            ) from None

    # ----------------------------------------------------------------- sampling
    def _make_sample_call(self) -> Callable[[int, int], Any]:
        fn = _attr(self.obj, "sample", None, where=self._file)
        if isinstance(self.obj, torch.distributions.Distribution):
            return lambda n, seed: fn(torch.Size([n]))
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            return lambda n, seed: fn(n)
        if "seed" in params:
            return lambda n, seed: fn(n, seed=seed)
        first = next(iter(params), None)
        if first == "sample_shape":
            return lambda n, seed: fn(torch.Size([n]))
        return lambda n, seed: fn(n)

    def sample(self, n: int, *, seed: int, desc: str = "sampling",
               blocks: tuple[int, int] | None = None) -> np.ndarray:
        """``n`` validated samples in the data representation, shape ``(n, *shape)``.

        The model is called on blocks of :data:`SAMPLE_BLOCK` samples, block ``b`` inside an
        RNG state seeded from ``(seed, b)``, so the samples depend on ``seed`` alone. Discrete
        data come back as int64 levels; continuous data as float32. ``blocks=(first, stop)``
        draws only blocks ``first <= b < stop`` of the ``n`` (a shard: the shards' samples,
        concatenated in block order, are the ``n`` samples).
        """
        if self._sample_call is None:
            raise ModelError(f"{self._file}: the model has no `sample(n)`.")
        chunks = []
        every = list(_batches(n, SAMPLE_BLOCK))
        if blocks is not None:
            every = every[blocks[0]:blocks[1]]
        for i, start, stop in progress(every, total=len(every), desc=desc):
            s = child_seed(seed, "sample", i)
            with forked_rng(s):
                out = self._call("sample", self._sample_call, stop - start, s)
            out = self._drop_log_density(out, stop - start)
            chunks.append(self.check_samples(out, stop - start, member="sample"))
        return np.concatenate(chunks) if chunks else np.empty((0, *self.info.shape))

    def _drop_log_density(self, out: Any, n: int) -> Any:
        """normflows' ``NormalizingFlow.sample(n)`` returns ``(z, log_q)``: samples and their
        log-densities. Keep the samples when the pair has exactly that form (``z`` of shape
        ``(n, *shape)``, ``log_q`` of shape ``(n,)``)."""
        if not (isinstance(out, tuple) and len(out) == 2):
            return out
        z, log_q = out
        if (isinstance(z, (torch.Tensor, np.ndarray)) and isinstance(log_q, (torch.Tensor, np.ndarray))
                and tuple(z.shape) == (n, *self.info.shape) and tuple(log_q.shape) == (n,)):
            return z
        return out

    def sample_conditional(self, labels: np.ndarray, *, seed: int) -> np.ndarray:
        """One validated sample per integer label, shape ``(len(labels), *shape)``, in blocks
        of :data:`SAMPLE_BLOCK` (like :meth:`sample`)."""
        fn = _attr(self.obj, "sample_conditional", None, where=self._file)
        if fn is None:
            raise ModelError(f"{self._file}: the model has no `sample_conditional(labels)`.")
        chunks = []
        for i, start, stop in _batches(len(labels), SAMPLE_BLOCK):
            with forked_rng(child_seed(seed, "sample_conditional", i)):
                # a copy: a model that writes into its labels cannot change gmbench's
                lab = torch.tensor(np.array(labels[start:stop], copy=True), dtype=torch.long,
                                   device=self.device)
                out = self._call("sample_conditional", fn, lab)
            chunks.append(self.check_samples(out, stop - start, member="sample_conditional"))
        return np.concatenate(chunks)

    def check_samples(self, out: Any, n: int, *, member: str) -> np.ndarray:
        """Validate what ``sample``-like members return and map it to the data representation."""
        where = f"{self._file}: `{member}`"
        arr = _to_numpy(out, where=where)
        if arr.dtype.kind not in "iuf":  # bool, complex, strings, objects
            raise ModelError(f"{where} returned dtype {arr.dtype}; return real numbers: integer "
                             "levels or floats in [0, 1] for discrete data, floats otherwise "
                             "(booleans are refused: convert them with `.long()` if they are "
                             "levels 0/1).")
        expected = (n, *self.info.shape)
        if arr.shape != expected:
            hint = ""
            if arr.size == math.prod(expected):
                hint = f" It has the right number of values: reshape it to {expected}."
            elif arr.ndim >= 1 and arr.shape[0] != n:
                hint = f" It returned {arr.shape[0]} samples when asked for {n}."
            raise ModelError(f"{where} returned shape {tuple(arr.shape)}; expected {expected} "
                             f"(n, *DatasetInfo.shape) for {self.info.name}.{hint}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise ModelError(f"{where} returned {bad} non-finite values (NaN or inf); every "
                             "sample must be finite.")
        if not self.info.is_discrete:
            with np.errstate(over="ignore"):  # overflow is reported below, as an error
                arr = arr.astype(np.float32, copy=False)
            if not np.isfinite(arr).all():
                raise ModelError(f"{where} returned values beyond float32's range (about "
                                 "3.4e38), which become infinite; every sample must be finite "
                                 "in float32.")
            return arr
        levels = int(self.info.levels)  # type: ignore[arg-type]
        lo, hi = arr.min(), arr.max()
        if arr.dtype.kind in "iu":
            if lo < 0 or hi > levels - 1:
                raise ModelError(f"{where} returned integers in [{lo}, {hi}]; {self.info.name} "
                                 f"has {levels} levels, so integers must lie in [0, {levels - 1}]"
                                 " (or return floats in [0, 1]).")
            return arr.astype(np.int64, copy=False)
        if hi > 1 and lo >= 0 and hi <= levels - 1 and bool((arr == np.floor(arr)).all()):
            # whole numbers above 1 cannot be values in [0, 1]: integer levels in floats, as
            # torch.distributions.Binomial and Categorical-like samplers return them
            return arr.astype(np.int64)
        if lo < -FLOAT_RANGE_TOLERANCE or hi > 1 + FLOAT_RANGE_TOLERANCE:
            raise ModelError(f"{where} returned floats in [{lo:.4g}, {hi:.4g}]; floats must lie "
                             f"in [0, 1] (gmbench maps y to min(floor(y*{levels}), {levels - 1})),"
                             f" or return integer levels in [0, {levels - 1}] (integers, or "
                             "floats that are whole numbers).")
        return np.minimum(np.floor(np.clip(arr, 0, 1) * levels), levels - 1).astype(np.int64)

    # ----------------------------------------------------------------- likelihood
    def _as_input(self, x: np.ndarray) -> torch.Tensor:
        """A fresh tensor for the model: writing into it cannot reach gmbench's arrays."""
        t = torch.from_numpy(np.array(x, copy=True, order="C"))
        t = t.long() if self.info.is_discrete else t.float()
        return t.to(self.device, non_blocking=True)

    def log_prob(self, x: np.ndarray, *, seed: int, split: str, batch_size: int = 500,
                 dequant_samples: int = 1) -> np.ndarray:
        """Per-example ``log P(x)`` in nats in the data space, shape ``(n,)``.

        For a ``"dequantized"`` model, each draw scores ``log p(y) - D log(levels)`` with
        ``y = (x + u) / levels``; with ``dequant_samples = K > 1`` the draws are combined by
        the importance-weighted ``log-mean-exp`` (a tighter bound on the discrete log-mass).
        """
        fn = _attr(self.obj, "log_prob", None, where=self._file)
        if fn is None or "log_prob" not in self.capabilities:
            raise ModelError(f"{self._file}: the model has no `log_prob(x)`.")
        n = len(x)
        out = np.empty(n, dtype=np.float64)
        dequantized = self.log_prob_space == "dequantized"
        levels = self.info.levels or 1  # only used when dequantized, i.e. discrete data
        offset = self.info.dim * math.log(levels) if dequantized else 0.0
        noise = [_NoiseBlocks(seed, split, k, self.info.dim) for k in range(dequant_samples)]
        for _, start, stop in progress(_batches(n, batch_size), total=math.ceil(n / batch_size),
                                       desc=f"log_prob ({split})"):
            xb = self._as_input(x[start:stop])
            # keyed by the examples of the batch (the same examples at the same batch size get
            # the same draws in every run), not by the batch's position
            with forked_rng(child_seed(seed, "log_prob", split, start, stop)):
                if dequantized:
                    draws = []
                    # (x + u) / L computed in float64, then kept strictly below the cell's
                    # upper edge (x + 1) / L: in float32 it can round up onto the next cell.
                    top = torch.nextafter(((xb + 1).double() / levels).float(),
                                          torch.zeros((), device=self.device))
                    for k in range(dequant_samples):
                        u = torch.from_numpy(noise[k].rows(start, stop)).view(xb.shape)
                        y = torch.minimum(((xb.double() + u.to(self.device)) / levels).float(),
                                          top)
                        draws.append(self._check_log_prob(self._call("log_prob", fn, y),
                                                          stop - start, start, split) - offset)
                    lp = draws[0] if dequant_samples == 1 else logmeanexp(np.stack(draws))
                else:
                    lp = self._check_log_prob(self._call("log_prob", fn, xb), stop - start,
                                              start, split)
            out[start:stop] = lp
        return out

    def _check_log_prob(self, value: Any, n: int, offset: int, split: str) -> np.ndarray:
        where = f"{self._file}: `log_prob`"
        arr = _to_numpy(value, where=where)
        if arr.dtype.kind not in "iuf":  # bool, complex, strings, objects
            raise ModelError(f"{where} returned dtype {arr.dtype}; it must return real "
                             "log-likelihoods in nats (a float tensor of shape (n,)).")
        if arr.shape != (n,):
            hint = " Sum over the event dimensions." if arr.ndim > 1 and arr.shape[0] == n else ""
            raise ModelError(f"{where} returned shape {tuple(arr.shape)} for a batch of {n}; "
                             f"it must return one log-likelihood per example, shape ({n},).{hint}")
        arr = arr.astype(np.float64, copy=False)
        if np.isfinite(arr).all() and np.abs(arr).max(initial=0.0) > MAX_ABS_LOG_PROB:
            row = int(np.abs(arr).argmax())
            raise ModelError(f"{where} returned {arr[row]:.4g} nats at {split} row "
                             f"{row + offset}: a log-probability this large in magnitude (over "
                             f"{MAX_ABS_LOG_PROB:.0e} nats) means the model over- or underflowed. "
                             "Compute it in log space, or clamp probabilities away from 0.")
        if not np.isfinite(arr).all():
            raise ModelError(f"{where} returned non-finite log-probabilities: "
                             f"{_describe_nonfinite(arr, offset, split)}. Every example needs a "
                             "finite log-likelihood (clamp probabilities away from 0).")
        # an importance-sampled estimate of a log-mass (IWAE) is unbiased in probability, not
        # bounded by 0: one example may score above 0; the mass checks of the likelihood
        # metrics judge its total
        if self.info.is_discrete and self.log_prob_space == "data" \
                and self.log_prob_kind != "estimate":
            top = float(arr.max())
            if top > POSITIVE_MASS_TOLERANCE:
                raise ModelError(
                    f"{where} returned a positive log-probability ({top:.4g} nats at {split} row "
                    f"{int(arr.argmax()) + offset}) on discrete data, where it must be a "
                    "log-mass (<= 0). This looks like a density passed off as a mass: if your "
                    "model is a density on [0,1)^D evaluated at dequantized inputs, set "
                    "`log_prob_space = \"dequantized\"` on the model and gmbench will feed it "
                    f"y = (x + u) / {self.info.levels} and convert."
                )
        return arr

    # ----------------------------------------------------------------- text
    def token_log_prob(self, windows: np.ndarray) -> np.ndarray:
        """``log p(t_j | t_<j)`` in nats of every token of ``(n, T)`` token windows, validated,
        ``(n, T)`` float64 (the model's ``token_log_prob``)."""
        assert self.text is not None
        fn = self._token_log_prob
        t = torch.from_numpy(np.array(windows, dtype=np.int64, copy=True)).to(self.device)
        with forked_rng(child_seed(0, "token_log_prob", *windows.shape)):
            value = self._call("token_log_prob", fn, t)
        where = f"{self._file}: `token_log_prob`"
        arr = _to_numpy(value, where=where)
        if arr.dtype.kind not in "iuf" or arr.shape != windows.shape:
            raise ModelError(f"{where} returned {arr.dtype} of shape {tuple(arr.shape)} for "
                             f"windows of shape {tuple(windows.shape)}; return one float "
                             "log-probability (nats) per token, of the windows' shape: "
                             "log p(x[:, j] | x[:, :j]).")
        arr = arr.astype(np.float64, copy=False)
        if not np.isfinite(arr).all():
            raise ModelError(f"{where} returned non-finite values "
                             f"({_describe_nonfinite(arr.reshape(-1), 0, 'window')}): clamp "
                             "probabilities away from 0.")
        if arr.max(initial=-math.inf) > POSITIVE_MASS_TOLERANCE:
            raise ModelError(f"{where} returned a positive log-probability "
                             f"({arr.max():.4g} nats): a next-token probability is at most 1. "
                             "Return log-softmax values, not logits.")
        return np.minimum(arr, 0.0)

    # ----------------------------------------------------------------- autoencoding
    def reconstruct(self, x: np.ndarray, *, seed: int, batch_size: int = 500) -> np.ndarray:
        """``decode(encode(x))`` validated like samples, shape ``(n, *shape)``."""
        chunks = []
        encode = _attr(self.obj, "encode", None, where=self._file)
        decode = _attr(self.obj, "decode", None, where=self._file)
        for _, start, stop in _batches(len(x), batch_size):
            with forked_rng(child_seed(seed, "reconstruct", start, stop)):
                z = self._call("encode", encode, self._as_input(x[start:stop]))
                out = self._call("decode", decode, z)
            chunks.append(self.check_samples(out, stop - start, member="decode"))
        return np.concatenate(chunks)


def object_identity(obj: Any, *, model_file: Path) -> tuple[Any, WeightsIdentity | None]:
    """``NAME`` and the weights' identity of a model given as an object (the Python API), both
    read as model code: a property or ``state_dict`` that raises becomes a
    :class:`ModelError` naming it."""
    where = type(obj).__name__
    name = _attr(obj, "NAME", None, where=where)
    try:
        with model_code():
            identity = weights_identity(obj, model_file=model_file)
    except (ModelError, KeyboardInterrupt):
        raise
    except BaseException as exc:
        raise ModelError(f"{where}: hashing the model's weights for the record "
                         f"{_what_happened(exc)}: its `state_dict()`, `weights_files` or "
                         "tensor attributes failed. Fix them, or pass the model's file.") from None
    return name, identity


def build_model(module: ModuleType, source: ModelSource, info: DatasetInfo, device: str
                ) -> Model:
    """Take the model from ``load(dataset, device)``, else from ``model`` (``docs/CONTRACT.md``,
    section 2)."""
    where = source.path.name
    loader = _attr(module, "load", None, where=where)
    if callable(loader):
        try:
            with model_code(_folder_of(source.path)):
                # a copy: what `load` does to it cannot change gmbench's description
                obj = loader(copy.deepcopy(info), device)
        except (ModelError, KeyboardInterrupt):
            raise
        except BaseException as exc:
            raise ModelError(
                f"{source.path.name}: `load(dataset, device)` {_what_happened(exc)}"
                f"{_line_in(exc, source.path)}. Fix `load`; gmbench called it with "
                f"dataset={info.name!r} (a DatasetInfo) and device={device!r}."
            ) from None
        if obj is None:
            raise ModelError(f"{source.path.name}: `load(dataset, device)` returned None; "
                             "return the model object.")
    elif (obj := _attr(module, "model", None, where=where)) is not None:
        pass
    else:
        raise ModelError(f"{source.path.name} defines neither `load(dataset, device)` nor a "
                         "module-level `model`. Add one, e.g. `model = MyModel()` with "
                         "`sample(n)` and/or `log_prob(x)` methods.")
    if callable(loader):
        refuse_class(obj, what=f"{where}: what `load(dataset, device)` returned",
                     fix="return an instance, `{name}(...)`")
    refuse_class(obj, what=f"{where}: `model`", fix="set `model = {name}()`, an instance")
    if isinstance(obj, torch.nn.Module):
        try:
            with model_code(_folder_of(source.path)):
                if loader is None or not callable(loader):
                    obj.to(device)
                obj.eval()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            raise ModelError(f"{where}: moving the module-level `model` to {device!r} and "
                             f"switching it to eval mode (`.to`, `.eval`) "
                             f"{_what_happened(exc)}{_line_in(exc, source.path)}.") from None
    module_weights = _attr(module, "WEIGHTS", None, where=where)
    try:
        with model_code(_folder_of(source.path)):
            identity = weights_identity(obj, model_file=source.path,
                                        module_weights=module_weights)
    except (ModelError, KeyboardInterrupt):
        raise
    except BaseException as exc:
        raise ModelError(f"{where}: hashing the model's weights for the record "
                         f"{_what_happened(exc)}: the model's `state_dict()` or its tensor "
                         "attributes failed. Declare the weight files with `WEIGHTS = "
                         "\"weights.safetensors\"` in the model file instead.") from None
    return Model(obj, source=replace(source, weights=identity), info=info, device=device)
