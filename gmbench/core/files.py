"""Files on disk: atomic writes and content hashes."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["NotARegularFile", "TooLarge", "atomic_write", "module_literal", "read_bounded", "sha256_bytes",
           "sha256_file"]


class NotARegularFile(OSError):
    """A path that names a FIFO, a device or a socket: reading it could block or never end."""


class TooLarge(OSError):
    """A file larger than the reader's limit."""


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of the regular file ``path``, refusing FIFOs, devices and sockets (which can
    block or never end: ``/dev/zero``) and files over ``limit`` bytes.

    Raises:
        FileNotFoundError, IsADirectoryError, PermissionError: as ``open``.
        NotARegularFile, TooLarge: see above.
    """
    p = Path(path)
    if p.exists() and not p.is_dir() and not p.is_file():
        raise NotARegularFile(f"{path} is not a regular file (a pipe, device or socket)")
    with open(p, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"{path} is larger than {limit // (1 << 20)} MiB")
    return data


@contextmanager
def atomic_write(path: str | os.PathLike[str], *, mode: str = "w",
                 like: os.stat_result | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    A crash or an exception leaves ``path`` as it was: never half-written. With ``like`` (the
    stat of the file being replaced) the new file keeps its permission bits and, where the
    process may set them, its owner and group; otherwise it gets the usual ``0666 & ~umask``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        newline = None if "b" in mode else ""  # csv wants newline=""; binary takes none
        with os.fdopen(fd, mode, newline=newline) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if like is not None:
            os.chmod(tmp, like.st_mode & 0o7777)
            if (like.st_uid, like.st_gid) != (os.getuid(), os.getgid()):
                # not ours to give away without privileges; the content is still the file's
                with contextlib.suppress(PermissionError):
                    os.chown(tmp, like.st_uid, like.st_gid)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def npz_overclaim(path: str | os.PathLike[str]) -> str | None:
    """The first member of a ``.npz`` whose header declares more bytes than the member
    stores, described (``None``: none does, or the file is not a readable zip, which
    ``np.load`` then reports). Checked before ``np.load`` allocates what a damaged or hostile
    header claims (10^12 values)."""
    import zipfile


    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                with zf.open(info) as fh:
                    claim = npy_claim(fh)
                if claim is None:
                    continue
                shape, dtype, declared, offset = claim
                if declared > info.file_size - offset:
                    return (f"its member {info.filename} declares {declared:,} bytes "
                            f"({dtype}, shape {tuple(shape)}) but stores "
                            f"{info.file_size - offset:,}")
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None
    return None


def npy_claim(fh: Any) -> tuple[tuple[int, ...], Any, int, int] | None:
    """What the ``.npy`` header at ``fh``'s position declares: ``(shape, dtype, bytes of
    data, offset of the data)``; ``None`` for an object array (``np.load`` refuses it).
    Raises ``ValueError`` for a header that is not one."""
    import numpy as np

    version = np.lib.format.read_magic(fh)
    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
            else np.lib.format.read_array_header_2_0)
    shape, _, dtype = read(fh)
    if dtype.hasobject:
        return None
    return tuple(shape), dtype, math.prod(shape) * dtype.itemsize, fh.tell()


def module_literal(path: Path, name: str) -> Any:
    """A Python file's last top-level ``name = <literal>`` (or ``name: T = <literal>``), read
    without running the file; ``None`` where there is none, it is not a literal, or the file
    cannot be parsed."""
    import ast

    found = None
    with contextlib.suppress(OSError, SyntaxError, ValueError, UnicodeDecodeError):
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                targets, value = [node.target], node.value
            else:
                continue
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                found = None  # the last assignment counts; a computed one is unknown
                with contextlib.suppress(ValueError, TypeError, SyntaxError, MemoryError,
                                         RecursionError):
                    found = ast.literal_eval(value)
    return found
