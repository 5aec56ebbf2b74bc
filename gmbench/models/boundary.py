"""The boundary between gmbench and a user's model code.

A model file is Python that runs inside gmbench's process. Whatever it does to the process must
not leak into gmbench (or into the training loop that called gmbench), and whatever leaves the
model must not alias memory the model may still change. :func:`model_code` is the context every
call into model code runs in:

* **the global random generators** of ``random``, NumPy and torch (CPU and CUDA) are not
  touched: model code draws from generators of its own, private to the calling thread, that
  start as copies of the ones the caller draws from (:mod:`gmbench.core.generators`); so the
  model changes nothing there, and another thread drawing from the global generators
  meanwhile (a training loop) is neither disturbed nor rewound;
* **process-wide state** is saved and restored: the default torch dtype and device, torch's
  thread count, grad mode and deterministic-algorithms setting, NumPy's floating-point error
  handling, the warning filters, the environment variables, the recursion limit, the working
  directory (also when the model deleted the one it moved to), ``sys.stdout``/``sys.stderr``
  (a stream the model closed is reopened on its file descriptor), the entries of ``sys.path``
  (entries the model adds are kept) and the SIGINT/SIGTERM handlers;
* **gmbench's own code and the builtins** are watched: model code that replaces a function or
  class of a ``gmbench`` module or a builtin (``print``, ``open``) is refused with a
  :class:`~gmbench.core.errors.ModelError`, since the numbers could no longer be trusted;
* **exits** become errors: ``sys.exit`` and every other ``BaseException`` that is not a
  ``KeyboardInterrupt`` (``GeneratorExit`` included) is turned into a :class:`ModelError` naming the
  member, and ``os._exit``/``posix._exit`` (which skip every handler) are replaced, for the
  duration of the call, by a function that raises (the command line also runs the exit
  handlers model code registered with ``atexit`` under this rule, so none can replace the
  exit status);
* what model code prints (``print``, ``sys.stdout``) goes to stderr;
* ``KeyboardInterrupt`` passes through untouched (exit 130 on the command line);
* background estimator work (:mod:`gmbench.core.background`) is finished before model code runs.

:func:`owned` copies an array that crossed the boundary, so neither side can change the
other's data afterwards.
"""

from __future__ import annotations

import builtins
import contextlib
import contextvars
import io
import os
import signal
import sys
import threading
import types
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TextIO

import numpy as np
import torch

from gmbench.core.background import before_model_code
from gmbench.core.generators import private_generators

try:
    import posix as _posix
except ImportError:  # Windows
    _posix = None  # type: ignore[assignment]

__all__ = ["CallTimeout", "ModelExit", "ProcessState", "call_limit", "exits_refused", "model_code",
           "owned", "process_state"]


class ModelExit(BaseException):
    """Raised in place of ``os._exit`` while model code runs."""

    def __init__(self, status: int) -> None:
        super().__init__(f"os._exit({status})")
        self.status = status


class CallTimeout(BaseException):
    """Raised in model code that ran past :func:`call_limit`'s seconds."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"did not finish within the time limit (--timeout {seconds:g} s)")
        self.seconds = seconds


_LIMIT: contextvars.ContextVar[float | None] = contextvars.ContextVar("call_limit",
                                                                     default=None)
_ARMED = [False]


@contextmanager
def call_limit(seconds: float | None) -> Iterator[None]:
    """Every call into model code inside this context may take ``seconds`` of wall time
    (``None``: no limit): past it, :class:`CallTimeout` is raised in the model's code by
    ``SIGALRM``. A signal reaches Python code and interrupts sleeps and most blocking calls,
    not a long computation inside one C call; ``--isolate`` ends the worker instead."""
    token = _LIMIT.set(seconds)
    try:
        yield
    finally:
        _LIMIT.reset(token)


@contextmanager
def _time_limited() -> Iterator[None]:
    seconds = _LIMIT.get()
    if seconds is None or _ARMED[0] or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(_signum: int, _frame: Any) -> None:
        raise CallTimeout(seconds)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    _ARMED[0] = True
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        _ARMED[0] = False


_REAL_EXIT = os._exit
_PID = os.getpid()


def _refuse_exit(status: int = 0) -> NoReturn:
    if os.getpid() != _PID:  # a forked child (a process pool's worker) ends as it asks
        _REAL_EXIT(status)
    raise ModelExit(status)


def _saved_descriptors() -> dict[int, int]:
    """Copies of the standard output and error descriptors (those open now)."""
    saved = {}
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            saved[fd] = os.dup(fd)
    return saved


def _restore_descriptors(saved: dict[int, int]) -> None:
    """Put back a standard descriptor the model closed or pointed elsewhere; close the
    copies."""
    for fd, copy in saved.items():
        try:
            now, before = os.fstat(fd), os.fstat(copy)
            moved = (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino)
        except OSError:  # closed
            moved = True
        if moved:
            with contextlib.suppress(OSError):
                os.dup2(copy, fd)
        os.close(copy)


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # the working directory was removed
        return None


def _usable(stream: TextIO, fd: int) -> TextIO:
    """``stream``, or a new text stream on ``fd`` when model code closed it."""
    if not getattr(stream, "closed", False):
        return stream
    try:
        return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), line_buffering=True)
    except OSError:  # the descriptor itself is gone: write nowhere rather than fail
        return open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process


class ProcessState:
    """A snapshot of the process-wide state model code can change."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.dtype = torch.get_default_dtype()
        self.device = torch.get_default_device()
        self.cwd = _cwd()
        self.streams = (sys.stdout, sys.stderr)
        self.descriptors = _saved_descriptors()
        self.path = list(sys.path)
        self.handlers = ({s: signal.getsignal(s) for s in self.SIGNALS}
                         if threading.current_thread() is threading.main_thread() else {})
        self.threads = torch.get_num_threads()
        self.grad = torch.is_grad_enabled()
        self.deterministic = (torch.are_deterministic_algorithms_enabled(),
                              torch.is_deterministic_algorithms_warn_only_enabled())
        self.np_err = np.geterr()
        self.warning_filters = list(warnings.filters)
        self.environ = dict(os.environ)
        self.recursion = sys.getrecursionlimit()
        self.umask = os.umask(0o022)  # read by setting: put back at once
        os.umask(self.umask)

    def restore(self) -> None:
        sys.setrecursionlimit(max(self.recursion, 100))
        os.umask(self.umask)  # a model's os.umask(0o777) would leave gmbench's files mode 0
        torch.set_default_dtype(self.dtype)
        if torch.get_default_device() != self.device:
            torch.set_default_device(self.device)
        if self.cwd is not None and _cwd() != self.cwd:
            with contextlib.suppress(OSError):  # gone too: stay where the model left us
                os.chdir(self.cwd)
        _restore_descriptors(self.descriptors)  # os.close(2), os.dup2 onto 1 or 2
        sys.stdout, sys.stderr = _usable(self.streams[0], 1), _usable(self.streams[1], 2)
        if not set(self.path) <= set(sys.path):  # entries removed: put them back
            sys.path[:] = self.path + [p for p in sys.path if p not in self.path]
        for sig, handler in self.handlers.items():
            if handler is not None and signal.getsignal(sig) is not handler:
                signal.signal(sig, handler)
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        torch.set_grad_enabled(self.grad)
        if (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled()) != self.deterministic:
            torch.use_deterministic_algorithms(self.deterministic[0],
                                               warn_only=self.deterministic[1])
        np.seterr(**self.np_err)
        if warnings.filters != self.warning_filters:
            warnings.filters[:] = self.warning_filters  # type: ignore[index]
            warnings._filters_mutated()  # type: ignore[attr-defined]
        if os.environ != self.environ:
            for key in set(os.environ) - set(self.environ):
                del os.environ[key]
            os.environ.update(self.environ)


def _code_of(module: types.ModuleType) -> dict[str, Any]:
    """Everything callable a module holds (functions, classes, NumPy's ufuncs and dispatched
    functions), by name; not its submodules."""
    return {name: value for name, value in list(vars(module).items())
            if callable(value) and not isinstance(value, types.ModuleType)}


# the numerical libraries gmbench's estimators call, watched like gmbench itself: a model that
# replaces `np.median` would change a metric's value (about 1 ms per call into model code)
NUMERICAL = ("numpy", "numpy.linalg", "numpy.fft", "scipy.linalg", "scipy.special",
             "scipy.stats", "scipy.spatial", "scipy.optimize", "torch", "torch.linalg",
             "torch.nn.functional", "sklearn.neighbors", "sklearn.linear_model")


class CodeWatch:
    """The functions and classes of gmbench's loaded modules, of ``builtins`` and of the
    numerical libraries gmbench calls (:data:`NUMERICAL`, where loaded), to tell whether model
    code replaced any of them (and to put them back)."""

    def __init__(self) -> None:
        self.code = {name: _code_of(mod) for name, mod in self._watched()}

    @staticmethod
    def _watched() -> list[tuple[str, types.ModuleType]]:
        mods = [(n, m) for n, m in list(sys.modules.items())
                if (n == "gmbench" or n.startswith("gmbench.")) and isinstance(m, types.ModuleType)]
        numerical = [(n, sys.modules[n]) for n in NUMERICAL
                     if isinstance(sys.modules.get(n), types.ModuleType)]
        return [*mods, *numerical, ("builtins", builtins)]

    def restore_replaced(self) -> list[str]:
        """Put back each function or class that is not the one seen before; their
        ``module.name``."""
        out = []
        for name, mod in self._watched():
            before = self.code.get(name)
            if before is None:  # imported during the call
                continue
            now = vars(mod)
            for attr, value in before.items():
                if now.get(attr) is not value:
                    setattr(mod, attr, value)
                    out.append(f"{name}.{attr}")
        return out


@contextmanager
def process_state() -> Iterator[ProcessState]:
    """Restore the process-wide state (dtype, threads, grad mode, ...) on the way out (the
    global random generators are never changed: see :func:`model_code`)."""
    state = ProcessState()
    try:
        yield state
    finally:
        state.restore()


@contextmanager
def exits_refused() -> Iterator[None]:
    """``os._exit``/``posix._exit`` raise :class:`ModelExit` instead of ending the process."""
    global _PID
    real_exit = os._exit
    _PID = os.getpid()
    os._exit = _refuse_exit
    if _posix is not None:
        _posix._exit = _refuse_exit
    try:
        yield
    finally:
        os._exit = real_exit
        if _posix is not None:
            _posix._exit = real_exit


class _ToStderr(io.TextIOBase):
    """Model code's ``sys.stdout``: writes go to the current ``sys.stderr``; ``close()`` closes
    nothing. One instance for the whole process (:data:`_MODEL_STDOUT`): a thread the model
    started may print while gmbench enters or leaves model code, and ``print`` holds a
    borrowed reference to the stream it found, so that stream must never be freed."""

    @staticmethod
    def _target() -> TextIO:
        err = sys.stderr
        return sys.__stderr__ if err is _MODEL_STDOUT or err is None else err  # type: ignore[return-value]

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            self._target().flush()

    def close(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._target().isatty()

    def fileno(self) -> int:
        return self._target().fileno()


_MODEL_STDOUT = _ToStderr()


@contextmanager
def _stdout_descriptor_to_stderr() -> Iterator[None]:
    """Point file descriptor 1 at stderr's for the duration (output of subprocesses and C
    code the model runs goes to stderr too); a no-op where the descriptors are unusable."""
    for stream in (sys.stdout, sys.__stdout__):
        with contextlib.suppress(Exception):
            stream.flush()  # type: ignore[union-attr]
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@contextmanager
def _on_path(folder: str | None) -> Iterator[None]:
    """``folder`` first on ``sys.path`` meanwhile (a model importing its sibling modules
    lazily, or unpickling a class defined beside it), removed afterwards if it was not
    there before."""
    if folder is None or folder in sys.path:
        yield
        return
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)


@contextmanager
def model_code(folder: str | None = None) -> Iterator[None]:
    """Run model code: its draws from the global random generators coming from private
    copies, process-wide state restored afterwards, ``os._exit`` refused, what it prints sent
    to stderr, ``folder`` (the model file's) importable, and a
    :class:`~gmbench.core.errors.ModelError` when it replaced gmbench's code or a builtin.
    Background estimator work (:mod:`gmbench.core.background`) finishes first: model code may
    change the process-wide state that work relies on."""
    before_model_code()
    # the generators first: the code watch then sees the same torch seeding functions
    # (the sections' stand-ins, gmbench.core.generators) before and after the call
    with private_generators():
        watch = CodeWatch()
        # what model code prints goes to stderr: stdout carries gmbench's own output only
        # (`gmbench evaluate --json` is a JSON document there and nothing else)
        try:
            with _on_path(folder), exits_refused(), process_state(), \
                    _stdout_descriptor_to_stderr(), contextlib.redirect_stdout(_MODEL_STDOUT), \
                    _time_limited():
                yield
        except BaseException:
            watch.restore_replaced()  # put back what was patched; the model's error goes on
            raise
        replaced = watch.restore_replaced()
    if replaced:
        from gmbench.core.errors import ModelError

        shown = ", ".join(replaced[:5]) + (f" and {len(replaced) - 5} more"
                                             if len(replaced) > 5 else "")
        raise ModelError(f"model code replaced {shown}: a model may not patch gmbench or "
                         "Python's builtins, since the numbers could then no longer be "
                         "trusted; remove the assignment from the model file")


def owned(value: Any) -> np.ndarray:
    """A NumPy array that shares no memory with ``value`` (a tensor or an array from model
    code), on the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True).numpy()
    return np.array(value, copy=True)
