"""The boundary between gmbench and a user's model code.

A model file is Python that runs inside gmbench's process. Whatever it does to the process must
not leak into gmbench (or into the training loop that called gmbench), and whatever leaves the
model must not alias memory the model may still change. :func:`model_code` is the context every
call into model code runs in:

* **process-wide state** is saved and restored: the default torch dtype and device, the global
  RNG states of ``random``, NumPy and torch (CPU and CUDA), torch's thread count and grad mode,
  the working directory, ``sys.stdout``/``sys.stderr``, the entries of ``sys.path`` (entries
  the model adds are kept) and the SIGINT/SIGTERM handlers;
* **exits** become errors: ``sys.exit`` and every other ``BaseException`` that is not a
  ``KeyboardInterrupt`` (``GeneratorExit`` included) is turned into a :class:`ModelError` naming the
  member, and ``os._exit``/``posix._exit`` (which skip every handler) are replaced, for the
  duration of the call, by a function that raises;
* what model code prints (``print``, ``sys.stdout``) goes to stderr;
* ``KeyboardInterrupt`` passes through untouched (exit 130 on the command line).

:func:`owned` copies an array that crossed the boundary, so neither side can change the
other's data afterwards.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import numpy as np
import torch

try:
    import posix as _posix
except ImportError:  # Windows
    _posix = None  # type: ignore[assignment]

__all__ = ["ModelExit", "ProcessState", "model_code", "owned", "process_state"]


class ModelExit(BaseException):
    """Raised in place of ``os._exit`` while model code runs."""

    def __init__(self, status: int) -> None:
        super().__init__(f"os._exit({status})")
        self.status = status


def _refuse_exit(status: int = 0) -> NoReturn:
    raise ModelExit(status)


class ProcessState:
    """A snapshot of the process-wide state model code can change."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.dtype = torch.get_default_dtype()
        self.device = torch.get_default_device()
        try:
            self.cwd: str | None = os.getcwd()
        except OSError:  # the working directory was removed
            self.cwd = None
        self.streams = (sys.stdout, sys.stderr)
        self.path = list(sys.path)
        self.handlers = ({s: signal.getsignal(s) for s in self.SIGNALS}
                         if threading.current_thread() is threading.main_thread() else {})
        self.threads = torch.get_num_threads()
        self.grad = torch.is_grad_enabled()
        self.py_rng = random.getstate()
        self.np_rng = np.random.get_state()
        self.torch_rng = torch.random.get_rng_state()
        self.cuda_rng = (torch.cuda.get_rng_state_all()
                         if torch.cuda.is_available() and torch.cuda.is_initialized() else None)

    def restore(self) -> None:
        torch.set_default_dtype(self.dtype)
        if torch.get_default_device() != self.device:
            torch.set_default_device(self.device)
        if self.cwd is not None and os.getcwd() != self.cwd:
            os.chdir(self.cwd)
        sys.stdout, sys.stderr = self.streams
        if not set(self.path) <= set(sys.path):  # entries removed: put them back
            sys.path[:] = self.path + [p for p in sys.path if p not in self.path]
        for sig, handler in self.handlers.items():
            if handler is not None and signal.getsignal(sig) is not handler:
                signal.signal(sig, handler)
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        torch.set_grad_enabled(self.grad)
        random.setstate(self.py_rng)
        np.random.set_state(self.np_rng)
        torch.random.set_rng_state(self.torch_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)


@contextmanager
def process_state() -> Iterator[ProcessState]:
    """Restore the process-wide state (dtype, RNGs, threads, grad mode) on the way out."""
    state = ProcessState()
    try:
        yield state
    finally:
        state.restore()


@contextmanager
def model_code() -> Iterator[None]:
    """Run model code: process-wide state restored afterwards, ``os._exit`` refused."""
    real_exit = os._exit
    os._exit = _refuse_exit
    if _posix is not None:
        _posix._exit = _refuse_exit
    try:
        # what model code prints goes to stderr: stdout carries gmbench's own output only
        # (`gmbench evaluate --json` is a JSON document there and nothing else)
        with process_state(), contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        os._exit = real_exit
        if _posix is not None:
            _posix._exit = real_exit


def owned(value: Any) -> np.ndarray:
    """A NumPy array that shares no memory with ``value`` (a tensor or an array from model
    code), on the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True).numpy()
    return np.array(value, copy=True)
