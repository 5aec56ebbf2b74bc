"""Models run in isolated worker processes (``gmbench evaluate --isolate``).

gmbench's process keeps the data, the metrics, the caches and the outputs; the model file is
imported, loaded and called only in worker processes (:mod:`gmbench.models.worker`), each
started by :class:`Worker`:

- in a fresh, empty working folder, with the model's prints on stderr;
- where bubblewrap (``bwrap``) is installed, in a sandbox of its own: a read-only view of the
  system, the Python installation, gmbench and the model's folder (and weight files declared
  by a literal ``WEIGHTS``), in which the dataset folders gmbench reads from are hidden and
  only the working folder is writable; as user ``nobody`` in a user namespace (no
  capabilities), with its own process, network, IPC and host-name namespaces (:class:`View`);
- else without network where the system allows a network namespace (``unshare -n``);
- in a process group of its own, ended (every process the model started with it) when the
  worker is closed; under a memory and process-count limit in a cgroup where gmbench may
  create one (root, or a delegated cgroup), else under ``RLIMIT_DATA`` and ``RLIMIT_NPROC``
  (the latter not enforced for root); with bounded open files and no core files;
- with a wall-clock limit on every call (``--timeout``): a call that does not answer in time
  ends its worker.

Two workers serve one evaluation: the *sampler* (``sample``, ``sample_conditional``) and, from
the first scoring call on, a fresh *scorer* (``log_prob``, ``encode``/``decode``,
``token_log_prob``, ``tokenize``). Each gets a copy of the training split (what
``get_dataset(name)`` returns there, with an empty test split); test examples reach only the
scorer, as the inputs of its calls, so no model sees the test split before or while it
samples. Results come back as raw numeric arrays (:mod:`gmbench.models.wire`), validated by
:class:`~gmbench.models.model.Model` exactly as in-process results are. A worker that dies,
exceeds a limit or answers malformed data ends the evaluation with a
:class:`~gmbench.core.errors.ModelError` naming the call and the limit. The same seed gives the
same numbers as in-process: each call carries the seed of the section gmbench runs it in.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gmbench.core.errors import ModelError
from gmbench.core.files import module_literal, sha256_file
from gmbench.core.rng import current_seed
from gmbench.datasets import Dataset
from gmbench.models.identity import WeightsIdentity
from gmbench.models.model import Model, ModelSource
from gmbench.models.wire import (
    ChannelClosed,
    ChannelError,
    ChannelTimeout,
    read_message,
    write_message,
)

__all__ = ["Limits", "View", "Worker", "bubblewrap", "isolated_model", "parse_size"]

MAX_OUTPUT = 8 << 30  # bytes of arrays one answer may carry
STARTUP_S = 300.0  # seconds a worker may take to start (Python, torch, gmbench), not the model
SAMPLER_MEMBERS = ("sample", "sample_conditional")


def parse_size(text: str) -> int:
    """``"2G"``, ``"512M"``, ``"1.5g"``, ``"1000000"`` as bytes (powers of 1024)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)[iI]?[bB]?\s*", str(text))
    if not m:
        raise ValueError(f"{text!r} is not a size such as 2G or 512M")
    scale = 1024 ** " KMGT".index(m.group(2).upper() or " ")
    return int(float(m.group(1)) * scale)


@dataclass(frozen=True)
class Limits:
    """What an isolated worker may use.

    Attributes:
        timeout: seconds each call into the model may take (import and load included);
            ``None``: no limit.
        memory: bytes of memory of the worker and every process it starts; ``None``: none.
        processes: processes and threads the worker may run at once.
        open_files: files the worker may hold open.
        network: whether the worker may use the network (default: a namespace without one,
            where the system allows it).
    """

    timeout: float | None = None
    memory: int | None = None
    processes: int = 512
    open_files: int = 1024
    network: bool = False


@lru_cache(maxsize=1)
def _unshare_prefix() -> tuple[str, ...]:
    """The command prefix that starts a process without network here, or ``()``: ``unshare
    -n`` (root), else ``unshare -rn`` (a user namespace), whichever runs."""
    tool = shutil.which("unshare")
    if tool is None:
        return ()
    for prefix in ((tool, "-n"), (tool, "-r", "-n")):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            if subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode == 0:
                return prefix
    return ()


@lru_cache(maxsize=1)
def bubblewrap() -> str | None:
    """The path of a working ``bwrap``, or ``None`` (not installed, or the system does not let
    it create its namespaces)."""
    tool = shutil.which("bwrap")
    if tool is None:
        return None
    probe = [tool, "--ro-bind", "/", "/", "--unshare-all", "--unshare-user", "--uid", "65534",
             "--gid", "65534", "--die-with-parent", "true"]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        if subprocess.run(probe, capture_output=True, timeout=10).returncode == 0:
            return tool
    return None


# the system's read-only part of a worker's view (those that exist)
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
NOBODY = 65534


@dataclass(frozen=True)
class View:
    """What an isolated worker sees of the file system under bubblewrap.

    Attributes:
        readable: folders and files bound read-only (the system, Python, every ``sys.path``
            entry and editable install, the model's folder, declared weight files).
        hidden: dataset folders and files inside those, replaced by empty ones.
        links: the system's top-level symbolic links (``/lib64 -> usr/lib64``), kept.
    """

    readable: tuple[str, ...]
    hidden: tuple[str, ...]
    links: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, model_file: Path, data: Dataset) -> View:
        """The view for ``model_file`` evaluated on ``data``."""
        links = tuple((os.readlink(p), p) for p in SYSTEM if os.path.islink(p))
        # sys.path but the current folder (``python -m`` puts it there; the worker's is its
        # own): the user's working folder stays out of the view
        here = os.path.realpath(os.getcwd())
        paths = [p for p in sys.path if p and os.path.realpath(p) != here]
        readable = [*SYSTEM, sys.prefix, sys.base_prefix, sys.exec_prefix,
                    str(Path(sys.executable).resolve().parent), *paths,
                    *editable_installs(), str(model_file.parent)]
        readable += [str((model_file.parent / w).resolve()) for w in declared_weights(model_file)]
        kept: list[str] = []
        for entry in sorted({os.path.realpath(p) for p in readable if p and os.path.exists(p)},
                            key=len):
            if not any(_inside(entry, k) for k in kept):
                kept.append(entry)
        hidden = {os.path.realpath(p) for p in dataset_locations(data) if os.path.exists(p)}
        return cls(tuple(kept), tuple(sorted(h for h in hidden
                                             if any(_inside(h, k) for k in kept))), links)

    def argv(self, tool: str, folder: str, *, network: bool, gpu: bool = False) -> list[str]:
        """bubblewrap's command line for a worker working in ``folder`` (``gpu``: the NVIDIA
        device files and ``/sys`` are in the view, for ``--device cuda``)."""
        args = [tool, "--unshare-all", "--unshare-user", "--uid", str(NOBODY), "--gid",
                str(NOBODY), "--die-with-parent", "--new-session", "--dev", "/dev",
                "--proc", "/proc", "--tmpfs", "/tmp"]
        if network:
            args.append("--share-net")
        if gpu:
            for dev in sorted(glob.glob("/dev/nvidia*")):
                args += ["--dev-bind", dev, dev]
            args += ["--ro-bind", "/sys", "/sys"]
        for target, link in self.links:
            args += ["--symlink", target, link]
        for path in self.readable:
            args += ["--ro-bind", path, path]
        for path in self.hidden:
            args += ["--tmpfs", path] if os.path.isdir(path) else ["--ro-bind", "/dev/null", path]
        args += ["--bind", folder, folder, "--chdir", folder, "--setenv", "HOME", folder,
                 "--setenv", "TMPDIR", folder]
        return args


def editable_installs() -> list[str]:
    """The source folders of packages installed in editable mode (setuptools' finders map
    them outside ``sys.path``): gmbench itself when installed with ``pip install -e``."""
    folders: list[str] = []
    for entry in sys.path:
        for finder in Path(entry or ".").glob("__editable__*_finder.py"):
            mapping = module_literal(finder, "MAPPING")
            if isinstance(mapping, dict):
                folders += [str(v) for v in mapping.values() if isinstance(v, str)]
    return folders


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def dataset_locations(data: Dataset) -> list[str]:
    """Where gmbench reads datasets and keeps its caches: hidden from isolated workers."""
    from gmbench.datasets.idx import search_dirs, user_cache

    places = [str(d) for d in search_dirs(data.info.name, None)]
    # the user cache holds the downloaded datasets and the feature cache (its features/)
    places += [str(user_cache()), "/usr/share/datasets"]
    with contextlib.suppress(ImportError):
        import sklearn.datasets  # the embedded digits' source

        places.append(str(Path(sklearn.datasets.__file__).parent / "data"))
    source = data.source.removeprefix("text folder ")
    if source.startswith("/"):
        places.append(source)
    return places


class _Cgroup:
    """A cgroup (v2, else v1's memory and pids hierarchies) holding one worker, where gmbench
    may create one; else nothing is limited this way."""

    def __init__(self, limits: Limits) -> None:
        self.dirs: list[Path] = []
        self.kind = ""
        name = f"gmbench-worker-{os.getpid()}-{time.monotonic_ns()}"
        unified = _v2_root()
        try:
            if unified is not None:
                d = unified / name
                d.mkdir()
                self.dirs = [d]
                if limits.memory is not None:
                    (d / "memory.max").write_text(str(limits.memory))
                    with contextlib.suppress(OSError):
                        (d / "memory.swap.max").write_text("0")
                (d / "pids.max").write_text(str(limits.processes))
                self.kind = "cgroup v2"
            else:
                mem, pids = Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup/pids")
                if not (os.access(mem, os.W_OK) and os.access(pids, os.W_OK)):
                    return
                for root in (mem, pids):
                    (root / name).mkdir()
                    self.dirs.append(root / name)
                if limits.memory is not None:
                    (mem / name / "memory.limit_in_bytes").write_text(str(limits.memory))
                    with contextlib.suppress(OSError):
                        (mem / name / "memory.memsw.limit_in_bytes").write_text(
                            str(limits.memory))
                (pids / name / "pids.max").write_text(str(limits.processes))
                self.kind = "cgroup v1"
        except OSError:
            self.remove()
            self.dirs, self.kind = [], ""

    def join(self) -> None:
        """Move the calling process into the cgroup (run in the worker before ``exec``)."""
        for d in self.dirs:
            (d / "cgroup.procs").write_text(str(os.getpid()))

    def out_of_memory(self) -> bool:
        for d in self.dirs:
            for name, key in (("memory.events", "oom_kill"), ("memory.oom_control", "oom_kill"),
                              ("memory.failcnt", None)):
                with contextlib.suppress(OSError, ValueError):
                    text = (d / name).read_text()
                    if key is None and int(text.strip()) > 0:
                        return True
                    for line in text.splitlines():
                        k, _, v = line.partition(" ")
                        if k == key and int(v) > 0:
                            return True
        return False

    def kill_all(self) -> None:
        """End every process still in the cgroup (those that left the process group too)."""
        for _ in range(50):
            pids = set()
            for d in self.dirs:
                with contextlib.suppress(OSError, ValueError):
                    pids |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def remove(self) -> None:
        for d in self.dirs:
            with contextlib.suppress(OSError):
                d.rmdir()


def _v2_root() -> Path | None:
    """The cgroup v2 folder gmbench may create children in, with the memory and pids
    controllers, or ``None``."""
    for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        with contextlib.suppress(OSError):
            controllers = (root / "cgroup.subtree_control").read_text().split()
            if {"memory", "pids"} <= set(controllers) and os.access(root, os.W_OK):
                return root
    return None


def _describe_signal(code: int | None, *, sandboxed: bool = False) -> str:
    if code is None:
        return "did not exit"
    if sandboxed and code > 128:  # bubblewrap exits with 128 + the signal that ended its child
        code = 128 - code
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with status {code}"


@dataclass
class Worker:
    """One isolated worker process and its channel."""

    role: str
    limits: Limits
    file: str
    view: View | None = None
    gpu: bool = False  # --device cuda: the GPU's device files in the sandbox
    proc: subprocess.Popen[bytes] | None = None
    rfd: int = -1
    wfd: int = -1
    folder: str = ""
    cgroup: _Cgroup | None = None
    containment: dict[str, Any] = field(default_factory=dict)
    out_of_memory: bool = False  # seen in its cgroup when it was closed
    sandboxed: bool = False  # started by bubblewrap

    def start(self) -> None:
        child_r, parent_w = os.pipe()
        parent_r, child_w = os.pipe()
        self.folder = tempfile.mkdtemp(prefix=f"gmbench-{self.role}-")
        self.cgroup = _Cgroup(self.limits)
        tool = bubblewrap() if self.view is not None else None
        self.sandboxed = tool is not None
        if tool is not None and self.view is not None:
            prefix: tuple[str, ...] = tuple(self.view.argv(
                tool, self.folder, network=self.limits.network, gpu=self.gpu))
        else:
            prefix = () if self.limits.network else _unshare_prefix()
        cmd = [*prefix, sys.executable, "-m", "gmbench.models.worker", str(child_r),
               str(child_w)]
        limits, cgroup = self.limits, self.cgroup

        def confine() -> None:  # in the worker, before exec
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
            if cgroup.kind:
                cgroup.join()
            else:
                if limits.memory is not None:
                    resource.setrlimit(resource.RLIMIT_DATA, (limits.memory, limits.memory))
                with contextlib.suppress(ValueError, OSError):
                    resource.setrlimit(resource.RLIMIT_NPROC,
                                       (limits.processes, limits.processes))

        env = {k: v for k, v in os.environ.items() if not k.startswith("GMBENCH_")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # gmbench importable
        try:
            self.proc = subprocess.Popen(cmd, pass_fds=(child_r, child_w), cwd=self.folder,
                                         env=env, stdin=subprocess.DEVNULL,
                                         start_new_session=True, preexec_fn=confine)
        except OSError as exc:
            self.close()
            raise ModelError(f"the isolated worker for {self.file} could not be started "
                             f"({exc}).") from None
        finally:
            os.close(child_r)
            os.close(child_w)
        self.rfd, self.wfd = parent_r, parent_w
        try:  # the worker's own start (not the model's code) is not under --timeout
            read_message(self.rfd, max_bytes=0, deadline=time.monotonic() + STARTUP_S)
        except ChannelError as exc:
            code = self._death() if isinstance(exc, ChannelClosed) else "did not start in time"
            self.close()
            raise ModelError(f"the isolated worker for {self.file} {code} before the model "
                             "was imported (see stderr above).") from None
        self.containment = {
            "sandbox": "bubblewrap (user nobody in a user namespace; read-only view, datasets "
                       "hidden)" if tool else "none (bubblewrap not installed or not usable)",
            "network": "allowed" if self.limits.network else
            ("none (network namespace)" if prefix else "not contained (no unshare)"),
            "memory": None if self.limits.memory is None else
            (self.cgroup.kind or "RLIMIT_DATA"),
            "processes": self.cgroup.kind or ("RLIMIT_NPROC" if os.geteuid() else
                                              "not limited (root without a cgroup)"),
            "timeout_s": self.limits.timeout,
        }

    def request(self, header: dict[str, Any], arrays: list[np.ndarray] | tuple = (), *,
                what: str, max_bytes: int = MAX_OUTPUT) -> tuple[dict[str, Any], list[np.ndarray]]:
        """Send one message and read the answer; any failure ends the worker and raises a
        :class:`ModelError` naming ``what`` and the limit."""
        deadline = None if self.limits.timeout is None else \
            time.monotonic() + self.limits.timeout
        try:
            write_message(self.wfd, header, arrays, deadline=deadline)
            answer, out = read_message(self.rfd, max_bytes=max_bytes, deadline=deadline)
        except ChannelTimeout:
            self.close()
            raise ModelError(f"{self.file}: {what} did not finish within the time limit "
                             f"(--timeout {self.limits.timeout:g} s); the model's worker was "
                             "stopped. Raise --timeout if the model is slow, or fix the "
                             "model.") from None
        except ChannelClosed:
            raise ModelError(f"{self.file}: the model's worker {self._death()} during {what}"
                             f"{self._why()}. Its messages, if any, are on stderr above.") \
                from None
        except ChannelError as exc:
            self.close()
            raise ModelError(f"{self.file}: the model's worker answered {what} with a "
                             f"malformed message ({exc}); the worker was stopped.") from None
        if "error" in answer:
            raise ModelError(str(answer["error"]))
        return answer, out

    def _death(self) -> str:
        assert self.proc is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        code = self.proc.returncode
        self.close()
        return _describe_signal(code, sandboxed=self.sandboxed)

    def _why(self) -> str:
        """Why the worker died, where a limit says (read before its cgroup was removed)."""
        if self.limits.memory is not None and self.out_of_memory:
            return f" (it exceeded the memory limit, --memory {self.limits.memory:,} bytes)"
        return ""

    def close(self) -> None:
        """End the worker, every process it started, and remove its folder."""
        if self.proc is not None and self.proc.poll() is None and self.wfd >= 0:
            with contextlib.suppress(ChannelError, OSError):
                write_message(self.wfd, {"op": "close"}, deadline=time.monotonic() + 1)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=2)
        if self.proc is not None:
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self.proc.wait(timeout=5)
        if self.cgroup is not None:
            self.out_of_memory = self.out_of_memory or self.cgroup.out_of_memory()
            self.cgroup.kill_all()
            self.cgroup.remove()
            self.cgroup = None
        for fd in (self.rfd, self.wfd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.rfd = self.wfd = -1
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = ""


def declared_dataset(path: Path) -> str | None:
    """The model file's ``DATASET = "..."`` (a literal top-level assignment), else ``None``."""
    value = module_literal(path, "DATASET")
    return value if isinstance(value, str) else None


def declared_weights(path: Path) -> list[str]:
    """The model file's literal ``WEIGHTS`` (a path or a list of paths), else ``[]``."""
    value = module_literal(path, "WEIGHTS")
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return [str(v) for v in items if isinstance(v, str)]


class IsolatedModel:
    """The user's model as gmbench's process sees it under ``--isolate``: its members call the
    workers; its attributes are those the model declared (read in the worker)."""

    def __init__(self, path: Path, data: Dataset, device: str, limits: Limits) -> None:
        self._path, self._data, self._device, self._limits = path, data, device, limits
        self._workers: dict[str, Worker] = {}
        self._described: dict[str, Any] = {}
        sampler = self._start("sampler")
        self._attributes = self._described["attributes"]
        self._members = set(self._described["members"])
        del sampler

    # ------------------------------------------------------------------ workers
    def _start(self, role: str) -> Worker:
        worker = Worker(role, self._limits, self._path.name, View.of(self._path, self._data),
                        gpu=self._device.startswith("cuda"))
        worker.start()
        self._workers[role] = worker
        try:
            head, _ = worker.request({"op": "import", "path": str(self._path)},
                                     what="importing the model file")
            self.module_constants = head
            train = self._data.train
            arrays = [train.x] + ([train.y] if train.y is not None else [])
            docs = train.documents
            if docs is not None:
                arrays += [docs.data, docs.starts]
            info, _ = worker.request(
                {"op": "load", "info": self._data.info.to_dict(), "device": self._device,
                 "threads": torch.get_num_threads(), "has_labels": train.y is not None,
                 "documents": None if docs is None else list(docs.names)},
                arrays, what="`load(dataset, device)`", max_bytes=0)
        except ModelError:
            worker.close()
            raise
        if not self._described:
            self._described = info
        return worker

    def _worker(self, member: str) -> Worker:
        role = "sampler" if member in SAMPLER_MEMBERS else "scorer"
        worker = self._workers.get(role)
        if worker is None or worker.rfd < 0:  # not started, or ended
            if role == "sampler" and "scorer" in self._workers:
                raise ModelError(f"{self._path.name}: the sampling worker ended; it is not "
                                 "restarted once test data has been scored.")
            worker = self._start(role)
        return worker

    def containment(self) -> dict[str, Any]:
        """What contained the workers (for the results' provenance)."""
        worker = next(iter(self._workers.values()), None)
        return {"isolated": True, **({} if worker is None else worker.containment)}

    def close(self) -> None:
        for worker in self._workers.values():
            worker.close()

    def _call(self, member: str, arrays: list[np.ndarray], **header: Any) -> list[np.ndarray]:
        seed = current_seed()
        worker = self._worker(member)
        _, out = worker.request({"op": "call", "member": member,
                                 "seed": 0 if seed is None else seed, **header},
                                arrays, what=f"`{member}`")
        return out

    # ------------------------------------------------------------------ members
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        described = self.__dict__.get("_attributes", {})
        if name in described and described[name] is not None:
            return described[name]
        if name in self.__dict__.get("_members", ()):
            return getattr(self, f"_member_{name}")
        raise AttributeError(name)

    def _member_sample(self, n: int, seed: int) -> Any:
        out = self._call("sample", [], count=int(n))
        return tuple(out) if len(out) > 1 else out[0]

    def _member_sample_conditional(self, labels: torch.Tensor) -> np.ndarray:
        return self._call("sample_conditional", [labels.cpu().numpy()])[0]

    def _member_log_prob(self, x: torch.Tensor) -> np.ndarray:
        return self._call("log_prob", [x.cpu().numpy()])[0]

    def _member_token_log_prob(self, x: torch.Tensor) -> np.ndarray:
        return self._call("token_log_prob", [x.cpu().numpy()])[0]

    def _member_tokenize(self, data: bytes) -> tuple[np.ndarray, ...]:
        return tuple(self._call("tokenize", [np.frombuffer(data, dtype=np.uint8)]))

    def _member_encode(self, x: torch.Tensor) -> int:
        return int(self._call("encode", [x.cpu().numpy()])[0][0])

    def _member_decode(self, handle: int) -> np.ndarray:
        return self._call("decode", [], handle=int(handle))[0]


def isolated_model(path: str | os.PathLike[str], data: Dataset, device: str, limits: Limits,
                   *, name: str | None = None) -> Model:
    """The model file ``path`` loaded in an isolated worker for ``data``, behind the same
    validation as an in-process model. Close it with ``model.obj.close()``."""
    file = Path(path).resolve()
    if not file.is_file():
        raise ModelError(f"Model file {path} does not exist or is not a regular file. Pass "
                         "the path of a Python file that defines `load(dataset, device)` or a "
                         "module-level `model`.")
    obj = IsolatedModel(file, data, device, limits)
    constants = obj.module_constants
    weights = obj._described.get("weights")
    source = ModelSource(
        path=file, name=name or constants["name"], sha256=sha256_file(file),
        dataset=constants.get("dataset"), reference=constants.get("reference") or "",
        weights=None if weights is None else WeightsIdentity(
            weights["sha256"], weights["source"], tuple(weights.get("files", ()))))
    try:
        model = Model(obj, source=source, info=data.info, device=device)
    except BaseException:
        obj.close()
        raise
    model.isolation = obj.containment()
    return model
