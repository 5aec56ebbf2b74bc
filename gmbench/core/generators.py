"""Thread-private stand-ins for the global random generators.

The global generators of ``random``, NumPy (``np.random.*``) and torch (CPU and CUDA) belong to
the whole process: a training loop drawing from them in another thread shares them with
everything else. Seeding them for model code and restoring them afterwards would hand that
thread the seeded numbers while the model runs and rewind it afterwards, so its draws would
repeat. Code inside :func:`private_generators` therefore draws from generators of its own, in
the calling thread only, and the process's generators are never seeded, rewound or advanced:

* **torch**: every random operator called without a ``generator`` (``torch.randn``,
  ``Tensor.normal_``, dropout, the initial weights of ``nn.Linear``, ``torch.distributions``)
  gets the section's generator for its device, through a dispatch mode (a per-thread hook);
  ``torch.manual_seed``, ``torch.get_rng_state``/``set_rng_state``, ``torch.random.fork_rng``
  and their ``torch.cuda`` counterparts act on the section's generators;
* **NumPy**: the module functions (``np.random.rand``, ``np.random.seed``,
  ``np.random.get_state`` ...) and the shared ``RandomState`` that libraries reach through
  ``np.random.mtrand._rand`` (scikit-learn's ``random_state=None``) use the section's
  ``RandomState``;
* **random**: the module functions (``random.random``, ``random.seed`` ...) use the section's
  ``random.Random``.

A section's generators are seeded with its seed, which gives the numbers seeding the global
generators with it would give; without a seed they start as copies of the generators the
thread drew from until then (the enclosing section's, else the process's), so the code draws
what it would have drawn from those, and leaves them as they were. Each generator is made at
its first use.

Outside the sections' reach, and so drawing from the process's generators: threads the code
starts, generator objects it holds or captured before the section (``torch.default_generator``,
``scipy.stats.norm``'s own ``RandomState``), and torch operators that take no generator (the
fused CUDA kernels of dropout and attention in training mode, cuDNN's recurrent dropout).

The dispatch mode costs a few microseconds per torch operator run inside a section (model
calls, mostly), whatever the operator.
"""

from __future__ import annotations

import functools
import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["private_generators"]

_CPU = torch.device("cpu")
_PROCESS_PYTHON = random._inst  # the process's generators, as the modules hold them
_PROCESS_NUMPY = np.random.mtrand._rand
MAX_NUMPY_SEED = 2**32 - 1  # NumPy's legacy seeding takes 32 bits


def _device(value: Any) -> torch.device:
    """``value`` (a device, its name or a CUDA index) with the index CUDA needs."""
    device = torch.device("cuda", value) if isinstance(value, int) else torch.device(value)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return _CPU if device.type == "cpu" else device


def _process_torch(device: torch.device) -> torch.Generator:
    """The process's default generator for ``device`` (CPU or CUDA)."""
    if device.type == "cuda":
        torch.cuda.init()
        return torch.cuda.default_generators[device.index or 0]
    return torch.default_generator


class _Generators:
    """One section's generators, each made at its first use: seeded with ``seed``, or copies of
    the generators below (an enclosing section's, else the process's)."""

    def __init__(self, seed: int | None, below: _Generators | None) -> None:
        self.seed, self.below = seed, below
        self._python: random.Random | None = None
        self._numpy: np.random.RandomState | None = None
        self._torch: dict[torch.device, torch.Generator] = {}
        self.torch_seeds: dict[str, int | None] = {"cpu": seed, "cuda": seed}

    def python(self) -> random.Random:
        if self._python is None:
            gen = random.Random(0)
            if self.seed is not None:
                gen.seed(self.seed)
            else:
                gen.setstate((self.below.python() if self.below else _PROCESS_PYTHON).getstate())
            self._python = gen
        return self._python

    def numpy(self) -> np.random.RandomState:
        if self._numpy is None:
            gen = np.random.RandomState(0 if self.seed is None else self.seed)
            if self.seed is None:
                gen.set_state((self.below.numpy() if self.below else _PROCESS_NUMPY).get_state())
            self._numpy = gen
        return self._numpy

    def torch(self, device: torch.device) -> torch.Generator | None:
        """The generator for ``device``; ``None`` for a device other than CPU and CUDA (its
        operators draw from torch's own generator)."""
        gen = self._torch.get(device)
        if gen is None:
            if device.type not in self.torch_seeds:
                return None
            gen = torch.Generator(device=device)
            seed = self.torch_seeds[device.type]
            if seed is not None:
                gen.manual_seed(seed)
            else:
                source = self.below.torch(device) if self.below else _process_torch(device)
                gen.set_state(source.get_state())  # type: ignore[union-attr]
            self._torch[device] = gen
        return gen

    def reseed_torch(self, seed: int, kinds: tuple[str, ...] = ("cpu", "cuda")) -> None:
        """``torch.manual_seed(seed)`` (or ``torch.cuda.manual_seed_all``) for this section."""
        for kind in kinds:
            self.torch_seeds[kind] = seed
        self._torch = {d: g for d, g in self._torch.items() if d.type not in kinds}
        if "cpu" in kinds:
            self.torch(_CPU)  # made now: an unusable seed is refused where torch refuses it


_LOCAL = threading.local()


def _stack() -> list[_Generators]:
    stack: list[_Generators] | None = getattr(_LOCAL, "stack", None)
    if stack is None:
        stack = _LOCAL.stack = []
    return stack


def _top() -> _Generators | None:
    stack = getattr(_LOCAL, "stack", None)
    return stack[-1] if stack else None


# ------------------------------------------------------------------ torch operators
_Plan = tuple[Any, int | None]  # the overload to call, the generator's position (None: keyword)
_PLANS: dict[Any, _Plan | None] = {}


def _plan(func: Any) -> _Plan | None:
    """How to hand ``func`` (an ATen overload) a generator: itself when it takes one, else
    its sibling overload that does (``randn`` -> ``randn.generator``); ``None`` for operators
    that draw nothing, or that take no generator at all."""
    if func in _PLANS:
        return _PLANS[func]
    plan = None
    schema = getattr(func, "_schema", None)
    if schema is not None:
        names = [a.name for a in schema.arguments if a.name != "generator"]
        candidates = [func]
        if len(names) == len(schema.arguments) \
                and torch.Tag.nondeterministic_seeded in func.tags:
            packet = func.overloadpacket
            candidates = [getattr(packet, o) for o in packet.overloads()]
        for cand in candidates:
            args = cand._schema.arguments
            theirs = [a.name for a in args]
            if "generator" in theirs and [n for n in theirs if n != "generator"] == names:
                i = theirs.index("generator")
                plan = (cand, None if args[i].kwarg_only else i)
                break
    _PLANS[func] = plan
    return plan


def _device_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.device:
    """Where an operator runs: its ``device`` argument, else its first tensor's device."""
    if kwargs.get("device") is not None:
        return _device(kwargs["device"])
    for value in (*args, *kwargs.values()):
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, torch.Tensor):
                return _device(item.device)
    return _CPU


class _Redirect(TorchDispatchMode):
    """Hands every random operator of this thread that was called without a generator the
    current section's generator for its device."""

    def __init__(self, stack: list[_Generators]) -> None:
        super().__init__()
        self.stack = stack

    @classmethod
    def ignore_compile_internals(cls) -> bool:
        return True  # `torch.compile` in other threads goes on compiling while a section runs

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        plan = _plan(func)
        if plan is None or not self.stack:
            return func(*args, **kwargs)
        target, index = plan
        at = index if index is not None and index < len(args) else None
        given = kwargs.get("generator") if at is None else args[at]
        gen = None if given is not None else self.stack[-1].torch(_device_of(args, kwargs))
        if gen is None:
            return func(*args, **kwargs)
        if at is not None:
            args = (*args[:at], gen, *args[at + 1:])
        else:
            kwargs = {**kwargs, "generator": gen}
        return target(*args, **kwargs)


# ------------------------------------------------------------------ module functions
class _SharedRandomState(np.random.RandomState):
    """``np.random.mtrand._rand`` while sections run: NumPy's global ``RandomState`` for every
    thread but one running a section, which gets that section's."""

    def __getattribute__(self, name: str) -> Any:
        top = _top()
        return getattr(_PROCESS_NUMPY if top is None else top.numpy(), name)


def _dispatching(original: Callable[..., Any], private: Callable[[_Generators], Any]
                 ) -> Callable[..., Any]:
    """``original`` for threads outside a section; ``private(section)`` inside one."""
    @functools.wraps(original)
    def call(*args: Any, **kwargs: Any) -> Any:
        top = _top()
        return original(*args, **kwargs) if top is None else private(top)(*args, **kwargs)
    return call


def _torch_functions(top: _Generators) -> dict[str, Callable[..., Any]]:
    """torch's seeding and state functions, acting on the section's generators."""

    def manual_seed(seed: int) -> torch.Generator:
        top.reseed_torch(int(seed))
        return top.torch(_CPU)  # type: ignore[return-value]

    def seed() -> int:
        value = torch.Generator().seed()  # a fresh seed, as torch.seed() draws one
        top.reseed_torch(value)
        return value

    cpu = top.torch(_CPU)
    assert cpu is not None
    return {"manual_seed": manual_seed, "seed": seed, "initial_seed": cpu.initial_seed,
            "get_rng_state": cpu.get_state, "set_rng_state": cpu.set_state}


def _cuda_functions(top: _Generators) -> dict[str, Callable[..., Any]]:
    """``torch.cuda``'s seeding and state functions, acting on the section's generators."""

    def gen(device: Any = "cuda") -> torch.Generator:
        out = top.torch(_device(device))
        assert out is not None
        return out

    def manual_seed(seed: int) -> None:
        gen().manual_seed(int(seed))

    def manual_seed_all(seed: int) -> None:
        top.reseed_torch(int(seed), ("cuda",))

    def seed() -> None:
        gen().seed()

    def seed_all() -> None:
        top.reseed_torch(torch.Generator().seed(), ("cuda",))

    def get_rng_state(device: Any = "cuda") -> torch.Tensor:
        return gen(device).get_state()

    def set_rng_state(new_state: torch.Tensor, device: Any = "cuda") -> None:
        gen(device).set_state(new_state)

    def get_rng_state_all() -> list[torch.Tensor]:
        return [gen(i).get_state() for i in range(torch.cuda.device_count())]

    def set_rng_state_all(new_states: list[torch.Tensor]) -> None:
        for i, state in enumerate(new_states):
            gen(i).set_state(state)

    return {"manual_seed": manual_seed, "manual_seed_all": manual_seed_all, "seed": seed,
            "seed_all": seed_all, "initial_seed": lambda: gen().initial_seed(),
            "get_rng_state": get_rng_state, "set_rng_state": set_rng_state,
            "get_rng_state_all": get_rng_state_all, "set_rng_state_all": set_rng_state_all}


def _private_python(name: str) -> Callable[[_Generators], Any]:
    return lambda top: getattr(top.python(), name)


def _private_numpy(name: str) -> Callable[[_Generators], Any]:
    return lambda top: getattr(top.numpy(), name)


def _private_torch(name: str) -> Callable[[_Generators], Any]:
    return lambda top: _torch_functions(top)[name]


def _private_cuda(name: str) -> Callable[[_Generators], Any]:
    def pick(top: _Generators) -> Any:
        if not torch.cuda.is_available():  # as torch does without CUDA (nothing, mostly)
            return _ORIGINAL_CUDA[name]
        return _cuda_functions(top)[name]
    return pick


_TORCH_NAMES = ("manual_seed", "seed", "initial_seed", "get_rng_state", "set_rng_state")
_CUDA_NAMES = ("manual_seed", "manual_seed_all", "seed", "seed_all", "initial_seed",
               "get_rng_state", "set_rng_state", "get_rng_state_all", "set_rng_state_all")
_ORIGINAL_CUDA = {name: getattr(torch.cuda, name) for name in _CUDA_NAMES}


def _replacements() -> list[tuple[ModuleType, str, Any]]:
    """``(module, name, replacement)`` for every module-level name a section takes over."""
    out: list[tuple[ModuleType, str, Any]] = []
    for name, value in list(vars(random).items()):
        if getattr(value, "__self__", None) is _PROCESS_PYTHON:
            out.append((random, name, _dispatching(value, _private_python(name))))
    for module in (np.random, np.random.mtrand):
        for name, value in list(vars(module).items()):
            if getattr(value, "__self__", None) is _PROCESS_NUMPY:
                out.append((module, name, _dispatching(value, _private_numpy(name))))
    # np.random.seed, get_bit_generator ... and libraries read this name at call time
    out.append((np.random.mtrand, "_rand", _SHARED_NUMPY))
    for module in (torch, torch.random):
        out += [(module, n, _dispatching(getattr(module, n), _private_torch(n)))
                for n in _TORCH_NAMES]
    for module in (torch.cuda, torch.cuda.random):
        out += [(module, n, _dispatching(getattr(module, n), _private_cuda(n)))
                for n in _CUDA_NAMES if hasattr(module, n)]
    return out


_SHARED_NUMPY = _SharedRandomState(0)
_INSTALL = threading.Lock()
_SECTIONS = [0]  # sections open in the whole process
_REPLACED: list[tuple[ModuleType, str, Any, Any]] = []  # module, name, before, replacement


def _enter() -> None:
    with _INSTALL:
        _SECTIONS[0] += 1
        if _SECTIONS[0] == 1:
            for module, name, replacement in _replacements():
                _REPLACED.append((module, name, getattr(module, name), replacement))
                setattr(module, name, replacement)


def _leave() -> None:
    with _INSTALL:
        _SECTIONS[0] -= 1
        if _SECTIONS[0] == 0:
            for module, name, before, replacement in reversed(_REPLACED):
                # a name replaced again meanwhile keeps its value: the model boundary's code
                # watch reports the replacement and puts back what it saw
                if vars(module).get(name) is replacement:
                    setattr(module, name, before)
            _REPLACED.clear()


@contextmanager
def private_generators(seed: int | None = None) -> Iterator[None]:
    """Inside, this thread's draws from the global generators of ``random``, NumPy and torch
    come from generators of its own: seeded with ``seed`` (in ``[0, 2**32 - 1]``), or, with
    ``None``, copies of the ones it drew from so far. The process's generators are not
    touched, so other threads drawing from them meanwhile are not disturbed."""
    if seed is not None and not 0 <= seed <= MAX_NUMPY_SEED:
        raise ValueError(f"a generator seed must lie in [0, 2**32 - 1], got {seed}")
    stack = _stack()
    entry = _Generators(seed, stack[-1] if stack else None)
    _enter()
    stack.append(entry)
    mode = None
    if len(stack) == 1:
        mode = _Redirect(stack)
        mode.__enter__()
    try:
        yield
    finally:
        if mode is not None:
            mode.__exit__(None, None, None)
        stack.remove(entry)
        _leave()
