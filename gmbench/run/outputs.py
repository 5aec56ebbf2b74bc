"""A run's output folder, written all or nothing.

``gmbench evaluate --out DIR`` writes ``results.json``, ``results.csv`` and pictures. They are
written into a fresh temporary folder beside ``DIR`` and swapped into place at the end, so
``DIR`` holds either the previous run's complete files or the new run's, never a mix (a
``results.json`` of one run beside the ``results.csv`` of another) and never a half-written
file. On Linux the swap is one atomic ``renameat2(RENAME_EXCHANGE)``; elsewhere it is two
renames, and a crash between them leaves both complete folders under hidden names, which the
next run into ``DIR`` puts back before anything else.

``DIR`` is only ever replaced when it holds nothing but files gmbench writes: a folder with
anything else in it (``--out .`` in a project) is refused, never deleted.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gmbench.core.errors import GmbenchError
from gmbench.datasets import DatasetInfo

if TYPE_CHECKING:
    from gmbench.storage.leaderboard import BoardRow

__all__ = ["RUN_FILES", "Artifacts", "OutputError", "check_out", "check_parent", "fuller_run",
           "run_files", "write_run"]

PASSAGES_SHOWN = 5  # generated text passages shown in the report

RUN_FILES = frozenset({"results.json", "results.csv", "samples.png", "neighbours.png",
                       "report.html", "per_example.npz"})


class OutputError(GmbenchError):
    """The output folder cannot be written (a file in the way, no permission, foreign files)."""


@dataclass(frozen=True)
class Artifacts:
    """What a run leaves besides its numbers, for pictures.

    Attributes:
        samples: the samples the metrics used (or 64 drawn for the picture when no metric
            needed samples), ``None`` for a model without ``sample``.
        neighbours: the samples nearest to a training example and those training examples,
            ``(16, *shape)`` each, when a memorization metric ran.
    """

    samples: np.ndarray | None = None
    neighbours: tuple[np.ndarray, np.ndarray] | None = None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2`` with ``RENAME_EXCHANGE``); ``False``
    where the call is unavailable."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if result != 0:
        err = ctypes.get_errno()
        if err in (38, 22, 95):  # ENOSYS, EINVAL, EOPNOTSUPP: not supported here
            return False
        raise OSError(err, os.strerror(err), str(a))
    return True


def _hidden(out: Path, tag: str) -> Path:
    return out.parent / f".{out.name}.gmbench-{tag}"


def recover(out: Path) -> None:
    """Finish a swap a crash interrupted: if ``out`` is missing but a complete new or old
    folder waits under its hidden name, move it back."""
    new, old = _hidden(out, "new"), _hidden(out, "old")
    if not out.exists():
        for candidate in (new, old):
            if candidate.is_dir():
                os.rename(candidate, out)
                break
    for leftover in (new, old):
        if leftover.exists():
            shutil.rmtree(leftover, ignore_errors=True)


def _check_target(out: Path) -> None:
    try:
        here = Path.cwd().resolve()
    except OSError:  # the working directory was removed
        here = None
    if here is not None and here.is_relative_to(out.resolve()):  # out is here or above
        raise OutputError(f"--out {out} is the current folder or one holding it; gmbench "
                          "replaces its output folder as a whole, which would pull the folder "
                          "away from under your shell. Pass a subfolder, e.g. --out "
                          "gmbench-out/run1.")
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a folder; pass a folder to write the "
                          "results into (it is created if needed).")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir()
                         if p.name not in RUN_FILES or p.is_symlink() or not p.is_file())
        if foreign:
            shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise OutputError(f"--out {out} already holds files gmbench did not write "
                              f"({shown}); gmbench replaces its output folder as a whole, so "
                              "choose a new or empty folder, e.g. --out gmbench-out/run1.")


def check_out(out: str | os.PathLike[str]) -> None:
    """Whether ``write_run(out, ...)`` could replace ``out`` (checked before an evaluation,
    so that a conflict is not found only after it).

    Raises:
        OutputError: ``out`` is the current folder or above it, a file, a link to no folder,
            or holds files gmbench did not write.
    """
    _check_target(_followed(Path(out)))


def check_parent(folder: Path) -> None:
    """Whether run folders can be created inside ``folder`` (``gmbench-out``, where runs go
    by default): it is a folder, or can be made one.

    Raises:
        OutputError: ``folder`` is a file (or a link to one), or cannot be created.
    """
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file, not a folder; without --out, gmbench writes each "
                          f"run into {folder.name}/<model>-<dataset>/. Move the file away, or "
                          "pass --out a folder to write the results into.")
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot create the results folder {folder}: {existing} is not "
                          "writable. Pass --out a folder you can write to.")


def _followed(target: Path) -> Path:
    """``target``, or the folder a symbolic link there names (the link stays)."""
    if target.is_symlink():
        real = target.resolve()
        if not real.is_dir():
            raise OutputError(f"--out {target} is a symbolic link to {real}, which is not an "
                              "existing folder; create that folder or pass another --out.")
        target = real
    return target


def fuller_run(out: str | os.PathLike[str], metrics: Sequence[str] | None) -> list[str]:
    """The metrics of the run already in ``out`` that a run of ``metrics`` (``None``: every
    applicable one) would not compute, so writing it there would lose them; ``[]`` when
    there is no readable run."""
    if metrics is None:
        return []
    import json

    try:
        doc = json.loads((Path(out) / "results.json").read_text(encoding="utf-8"))
        held = [str(k) for k in doc["metrics"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    wanted = {m.strip() for m in metrics}
    return [k for k in held if k not in wanted]


def write_run(out: str | os.PathLike[str], files: Mapping[str, bytes]) -> Path:
    """Write ``files`` (name -> bytes) as the folder ``out``, replacing a previous run's
    folder all at once.

    Raises:
        OutputError: ``out`` is a file, holds files gmbench did not write, or its parent
            cannot be written.
    """
    assert set(files) <= RUN_FILES, set(files) - RUN_FILES
    target = _followed(Path(out))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        recover(target)
        _check_target(target)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp",
                                        dir=target.parent))
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write the results to {target}: {exc.strerror or exc} "
                          f"({exc.filename or target.parent}). Pass --out a folder you can "
                          "write to.") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)
        for name, data in files.items():
            path = staging / name
            with open(path, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(path, 0o666 & ~umask)
        if not target.exists():
            os.rename(staging, target)
        elif _exchange(staging, target):
            shutil.rmtree(staging)  # now holds the previous run
        else:
            old, new = _hidden(target, "old"), _hidden(target, "new")
            os.rename(staging, new)
            os.rename(target, old)
            os.rename(new, target)
            shutil.rmtree(old)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        recover(target)  # an interrupted two-step swap: put a complete folder back
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write the results to {target}: {exc.strerror or exc}. "
                              "Nothing was changed there.") from None
        raise
    return target


SHOWN = 64  # samples in the picture of a run's image samples


def run_files(result: Mapping[str, Any], json_bytes: bytes, csv_bytes: bytes,
              artifacts: Artifacts, info: DatasetInfo, *, report: bool = False,
              baselines: Sequence[BoardRow] = (), board: str | os.PathLike[str] | None = None,
              per_example: bytes | None = None) -> dict[str, bytes]:
    """Every file of a run's folder, as bytes: the results, the per-example values
    (:mod:`gmbench.storage.per_example`), the sample picture (a grid of 64 images, or a
    density picture of 2-D samples), the nearest-training-neighbour pairs, and the HTML
    report on request."""
    from gmbench.present.pictures import image_grid, pairs_grid, png_bytes, scatter_image

    files = {"results.json": json_bytes, "results.csv": csv_bytes}
    if per_example is not None:
        files["per_example.npz"] = per_example
    if artifacts.samples is not None:
        if info.kind == "image":
            files["samples.png"] = png_bytes(image_grid(artifacts.samples[:SHOWN], info))
        elif info.shape == (2,):
            files["samples.png"] = png_bytes(scatter_image(artifacts.samples))
    if artifacts.neighbours is not None and info.kind == "image":
        files["neighbours.png"] = png_bytes(pairs_grid(*artifacts.neighbours, info))
    if report:
        from gmbench.present.report import build_report

        shown = None if artifacts.samples is None else min(len(artifacts.samples), SHOWN)
        pairs = None if artifacts.neighbours is None else len(artifacts.neighbours[0])
        passages = [] if artifacts.samples is None or info.kind != "text" else [
            np.asarray(row, np.uint8).tobytes().decode("utf-8", errors="replace")
            for row in artifacts.samples[:PASSAGES_SHOWN]]
        files["report.html"] = build_report(
            result, baselines=baselines, board=None if board is None else Path(board),
            samples_png=files.get("samples.png"), neighbours_png=files.get("neighbours.png"),
            samples_shown=shown, pairs_shown=pairs, passages=passages).encode()
    return files
