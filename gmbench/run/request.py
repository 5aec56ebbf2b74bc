"""A run's request, defined once: what to evaluate, on which data, with which options and
parallelism.

Every option is one field of :class:`RunRequest`; its metadata (:class:`Option`) holds the
command-line flag, the help, the limits and the commands that offer it. ``gmbench evaluate``
and ``gmbench sweep`` build their options from the fields (:func:`add_options`,
:func:`given`), :func:`gmbench.evaluate` and :func:`gmbench.sweep` take a request (keyword
overrides for convenience), a sweep's job is a request with its seed, and
:meth:`RunRequest.check` words every refusal for both the API and the command line. A new
option is one field here plus its use.
"""

from __future__ import annotations

import argparse
import contextlib
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from typing import Any

from gmbench.core.errors import GmbenchError
from gmbench.core.rng import MAX_SEED

__all__ = ["COMMANDS", "MAX_DEQUANT_SAMPLES", "MIN_SAMPLES", "Option", "OptionError",
           "RunRequest", "add_options", "given", "metric_list", "request_options"]

MIN_SAMPLES = 20  # the fewest samples every sample metric can use (10 IS splits, k-NN balls)
MAX_DEQUANT_SAMPLES = 1024  # each draw is a full pass over the test split
COMMANDS = ("evaluate", "sweep")


class OptionError(GmbenchError):
    """An option of a run out of its range or of the wrong type."""


def metric_list(text: str) -> list[str]:
    """``"nll, fid"`` as ``["nll", "fid"]``."""
    return [k.strip() for k in text.split(",") if k.strip()]


@dataclass(frozen=True)
class Option:
    """A field's command-line face and limits.

    Attributes:
        help: the option's help; ``{default}`` is replaced by the field's default.
        commands: the commands that offer it (the rest take it from the API only).
        low, high: inclusive limits of a whole-number option.
        parse: the command line's conversion of the text (``int``, ``float``, ...).
        metavar: the value's name in ``--help``.
        recorded: written to ``results.json``'s ``config`` and compared when a sweep resumes.
        nonempty: a text that may not be blank (a path, a name).
        switch: a flag without a value (``--isolate``): ``True`` when given.
    """

    help: str
    commands: tuple[str, ...] = COMMANDS
    low: int | None = None
    high: int | None = None
    parse: Callable[[str], Any] | None = None
    metavar: str | None = None
    recorded: bool = False
    nonempty: bool = False
    switch: bool = False

    def flag(self, name: str) -> str:
        return "--" + name.replace("_", "-")


def _option(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"option": Option(help, **kw)})


@dataclass(frozen=True)
class RunRequest:
    """One evaluation, as asked for: ``model`` (a model file's path or a model object),
    ``samples`` (stored samples instead), ``name`` (the model's name in the results) and
    ``cpus_per_worker``/``gpus_per_worker`` (each Ray worker's resources) come from the API;
    every other field is also an option of the commands its :class:`Option` names, whose help
    says what it means."""

    model: Any = None
    samples: Any = None
    dataset: Any = _option(None, "dataset name, or the path of your own (.npz or a folder of "
                                 "images; default: the file's DATASET, else digits)",
                           commands=("evaluate",), nonempty=True)
    metrics: Sequence[str] | None = _option(
        None, "comma-separated metric keys (default: every applicable metric)",
        parse=metric_list)
    name: str | None = None
    seed: int = _option(0, "run seed (default {default})", commands=("evaluate",), low=0,
                        high=MAX_SEED, parse=int, recorded=True)
    n_samples: int | None = _option(
        None, "samples for sample metrics (default: test-split size, at least 2000, at most "
              "10000; stored samples: all of them)", low=1, parse=int, recorded=True)
    batch_size: int = _option(500, "examples per log_prob call (default {default})", low=1,
                              parse=int, recorded=True)
    dequant_samples: int = _option(
        1, "dequantization draws per test point for dequantized models; K > 1 uses the "
           "importance-weighted log-mean-exp (default {default})", low=1,
        high=MAX_DEQUANT_SAMPLES, parse=int, recorded=True)
    max_train: int = _option(10_000, "train examples scored for nll_train (seeded subset; "
                                     "default {default})", low=1, parse=int, recorded=True)
    context: int | None = _option(
        None, "text: the fewest tokens of context each scored token has where the document "
              "has them (default: half the model's context_length; recorded in each text metric)", low=0,
        parse=int)
    stride: int | None = _option(
        None, "text: tokens scored per window, the window being context + stride tokens "
              "(default: the model's context_length minus the context)", low=1, parse=int)
    device: str = _option("cpu", "cpu, cuda or cuda:N (default cpu; a sweep with "
                                 "--gpus-per-eval: cuda)", recorded=True)
    feature_extractor: str = _option(
        "auto", "feature space of sample metrics: auto (the dataset's bundled classifier, "
                "else pixels), classifier, pixels, or inception-v3-compat (torch-fidelity's "
                "InceptionV3; needs its weights)", recorded=True)
    inception_weights: str | None = _option(
        None, "torch-fidelity's InceptionV3 weights file "
              "(weights-inception-2015-12-05-6726825d.pth), for --feature-extractor "
              "inception-v3-compat offline (default: $GMBENCH_INCEPTION_WEIGHTS, else "
              "torch's hub cache)", metavar="PATH", recorded=True, nonempty=True)
    data_root: str | None = _option(None, "directory holding dataset files (IDX for "
                                          "MNIST-like)", nonempty=True)
    workers: int = _option(1, "split each evaluation's sampling and feature extraction over N "
                              "Ray workers (needs pip install \"gmbench[ray]\"; default 1: "
                              "the evaluation's own process)", low=1, parse=int)
    address: str | None = _option(None, "join a Ray cluster: auto, or ray://host:port "
                                        "(default: start Ray on this machine)")
    cpus_per_worker: float = 1
    gpus_per_worker: float = 0
    isolate: bool = _option(
        False, "run the model (import, load and every call) in isolated worker processes: "
               "a fresh empty folder, no network where the system allows it, limits on "
               "memory, processes and open files, every process it starts ended with it "
               "(docs/safety.md)", switch=True)
    timeout: float | None = _option(
        None, "seconds each call into the model may take (import and load included); a call "
              "that takes longer ends the evaluation with exit 2", parse=float, metavar="S")
    memory: int | None = _option(
        None, "with --isolate: the memory the model's worker and its processes may use, "
              "such as 2G or 512M (the API: bytes)", low=1, parse=lambda text: _size(text),
        metavar="SIZE")
    threads: int | None = _option(
        None, "an evaluation's whole CPU thread budget: torch, BLAS and gmbench's background "
              "worker (default: torch's count, the cores; a Ray sweep: --cpus-per-eval); "
              "values do not depend on it", low=1, parse=int)

    def __post_init__(self) -> None:
        # NumPy integers as ints, a metric iterator read once into a tuple (hashable, and not
        # used up by the checks); wrong types are left for check() to refuse
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, numbers.Integral) and not isinstance(value, (bool, int)):
                object.__setattr__(self, f.name, int(value))
        if self.metrics is not None and not isinstance(self.metrics, (str, bytes, tuple)):
            with contextlib.suppress(TypeError):
                object.__setattr__(self, "metrics", tuple(self.metrics))

    # ------------------------------------------------------------------ checks
    def check(self, *, cli: bool = False) -> RunRequest:
        """Refuse an option out of range or of the wrong type (:class:`OptionError`, naming
        the option as the caller spelled it: ``--n-samples`` or ``n_samples``); the request.
        """
        for f in fields(self):
            option = f.metadata.get("option")
            if option is not None:
                _check_field(f.name, getattr(self, f.name), option, f.default, cli)
        metrics = self.metrics
        if metrics is not None and (isinstance(metrics, (str, bytes)) or not metrics
                                    or not all(isinstance(k, str) for k in metrics)):
            if cli:
                raise OptionError("--metrics is empty; name at least one metric (see `gmbench "
                                  "metrics`), or leave --metrics out to run every applicable "
                                  "metric.")
            raise OptionError(f"metrics must be a non-empty list of metric keys such as "
                              f"[\"fid\"] (see gmbench.list_metrics()), got {metrics!r}; pass "
                              "None for every applicable metric.")
        from gmbench.datasets import Dataset

        if self.dataset is not None and not isinstance(self.dataset, (str, Dataset)):
            raise OptionError(f"dataset must be a dataset name such as \"digits\" (see "
                              f"gmbench.list_datasets()), got {type(self.dataset).__name__}.")
        if not isinstance(self.cpus_per_worker, (int, float)) or self.cpus_per_worker <= 0 \
                or not isinstance(self.gpus_per_worker, (int, float)) \
                or self.gpus_per_worker < 0:
            raise OptionError("CPUs per worker must be positive and GPUs per worker at least "
                              f"0, got {self.cpus_per_worker!r} and {self.gpus_per_worker!r}.")
        return self

    # ------------------------------------------------------------------ views
    def config(self) -> dict[str, Any]:
        """The recorded options (``results.json``'s ``config``), in their order."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.metadata.get("option", Option("")).recorded}

    def settings(self) -> dict[str, Any]:
        """Every field that differs from its default (what a sweep writes to
        ``sweep.json``)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name not in ("model", "samples") and value != f.default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def with_options(self, **overrides: Any) -> RunRequest:
        """A copy with ``overrides`` applied (unknown names refused)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise OptionError(f"unknown option(s) {', '.join(unknown)}; the options are "
                              f"{', '.join(sorted(known))}.")
        return replace(self, **overrides)


def _size(text: str) -> int:
    from gmbench.models.isolated import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _check_field(name: str, value: Any, option: Option, default: Any, cli: bool) -> None:
    label = option.flag(name) if cli else name
    if value is None and default is None:
        return
    if option.switch:
        if not isinstance(value, bool):
            raise OptionError(f"{label} must be True or False, got {value!r}.")
        return
    if option.parse is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
                or value == float("inf"):
            raise OptionError(f"{label} must be a positive number of seconds, got {value!r}.")
        return
    if option.nonempty and isinstance(value, str) and not value.strip():
        raise OptionError(f"{label} is empty; pass a value, or leave it out for the default.")
    if option.parse is int or option.low is not None:
        if isinstance(value, bool) or not isinstance(value, int) or (
                option.low is not None and value < option.low):
            raise OptionError(f"{label} must be a whole number of at least {option.low}, got "
                              f"{value!r}.")
        if option.high is not None and value > option.high:
            raise OptionError(f"{label} must be at most {option.high}, got {value}"
                              + (" (each draw scores the whole test split once more)."
                                 if name == "dequant_samples" else "."))
    elif isinstance(default, str) and not isinstance(value, str):
        raise OptionError(f"{label} must be a string such as \"{default}\", got {value!r}.")


# ------------------------------------------------------------------ the command line
def request_options(command: str) -> list[Field[Any]]:
    """The fields ``command`` offers as options."""
    return [f for f in fields(RunRequest)
            if "option" in f.metadata and command in f.metadata["option"].commands]


def add_options(parser: argparse.ArgumentParser, command: str) -> None:
    """Add the request's options of ``command`` to ``parser``; an option not given is absent
    from the parsed namespace, so the request built from :func:`given` keeps its field's
    default."""
    for f in request_options(command):
        option: Option = f.metadata["option"]
        default = "" if f.default is MISSING else f.default
        if option.switch:
            parser.add_argument(option.flag(f.name), dest=f.name, action="store_true",
                                default=argparse.SUPPRESS, help=option.help)
            continue
        parser.add_argument(option.flag(f.name), dest=f.name, type=option.parse or str,
                            default=argparse.SUPPRESS,
                            metavar=option.metavar or ("N" if option.parse is int else None),
                            help=option.help.format(default=default))


def given(args: argparse.Namespace | Mapping[str, Any], command: str) -> dict[str, Any]:
    """The request options given on ``command``'s command line."""
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    return {f.name: values[f.name] for f in request_options(command) if f.name in values}
