"""``cifar10``: CIFAR-10 from the official *binary* distribution (no pickle).

The official archive ``cifar-10-binary.tar.gz`` holds ``cifar-10-batches-bin/`` with
``data_batch_1.bin`` .. ``data_batch_5.bin`` (the 50,000 training images) and
``test_batch.bin`` (10,000): records of one label byte and 3,072 pixel bytes (the red, green
and blue 32x32 planes, row-major). Lookup, for each folder of
:func:`gmbench.datasets.idx.search_dirs` (``--data-root``, ``$GMBENCH_DATA``, the user cache,
``/usr/share/datasets/cifar10``): the archive itself (read in memory, verified against its
published sha256), or the six ``.bin`` files (in the folder or its ``cifar-10-batches-bin/``).
Local files are used as they are: the dataset's content hash is recorded as always, and the
source says when the files are not (or cannot be checked to be) the official ones. Offline
and without files, a :class:`DatasetError` names the files and where to put them; online,
the archive is downloaded into the user cache (resumed where a partial download was left,
verified, then moved into place atomically).
"""

from __future__ import annotations

import os
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from gmbench.core.errors import DatasetError
from gmbench.core.files import sha256_file
from gmbench.datasets.base import Dataset, DatasetInfo, Split
from gmbench.datasets.idx import search_dirs, user_cache

__all__ = ["ARCHIVE", "ARCHIVE_SHA256", "URLS", "download_archive", "make_cifar10",
           "read_cifar_binary"]

NAME = "cifar10"
ARCHIVE = "cifar-10-binary.tar.gz"
ARCHIVE_SHA256 = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"
URLS = ("https://www.cs.toronto.edu/~kriz/",)
FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
RECORD = 1 + 3 * 32 * 32
CLASSES = 10
OFFICIAL_SIZES = (50000, 10000)
WHERE = (f"Put the official archive {ARCHIVE} (from {URLS[0]}{ARCHIVE}), or the files of its "
         f"{FOLDER}/ folder ({', '.join(TRAIN_FILES)}, {TEST_FILE}), in a folder and pass "
         "--data-root FOLDER or set GMBENCH_DATA=FOLDER")


def read_cifar_binary(raw: bytes, *, path: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 3, 32, 32)`` uint8 and labels ``(n,)`` int64 of one ``.bin`` file."""
    if len(raw) == 0 or len(raw) % RECORD:
        raise DatasetError(
            f"{path} is not a CIFAR-10 binary batch: {len(raw)} bytes is not a whole number of "
            f"{RECORD}-byte records (1 label byte + 3,072 pixels); the file is truncated or of "
            f"another format. {WHERE}.")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    if int(labels.max()) >= CLASSES:
        raise DatasetError(f"{path}: label {int(labels.max())} is not one of CIFAR-10's 10 "
                           "classes (0-9); the file is not a CIFAR-10 binary batch.")
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), labels


def _from_archive(path: Path) -> tuple[dict[str, bytes], str]:
    official = sha256_file(path) == ARCHIVE_SHA256
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            missing = [f for f in (*TRAIN_FILES, TEST_FILE) if f not in members]
            if missing:  # a truncated download lists the members before its end only
                raise DatasetError(
                    f"{path} holds no {', '.join(missing)}: it is damaged or incomplete (its "
                    f"sha256 is not the official archive's), or another archive; delete it "
                    f"and download {ARCHIVE} again. {WHERE}.")
            files = {}
            for name in (*TRAIN_FILES, TEST_FILE):
                handle = tar.extractfile(members[name])
                assert handle is not None
                files[name] = handle.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetError(f"Cannot read {path}: {exc}. The archive is damaged or "
                           f"incomplete; delete it and download {ARCHIVE} again. {WHERE}."
                           ) from None
    note = ("the official archive (sha256 verified)" if official else
            f"NOT the official archive: its sha256 differs from {ARCHIVE_SHA256[:16]}..; "
            "used as it is")
    return files, f"{path} ({note})"


def _find(dirs: list[Path]) -> tuple[dict[str, bytes], str] | None:
    for d in dirs:
        if (d / ARCHIVE).is_file():
            return _from_archive(d / ARCHIVE)
        for folder in (d / FOLDER, d):
            paths = [folder / f for f in (*TRAIN_FILES, TEST_FILE)]
            if all(p.is_file() for p in paths):
                try:
                    files = {p.name: p.read_bytes() for p in paths}
                except OSError as exc:
                    raise DatasetError(f"Cannot read {folder}: {exc}. {WHERE}.") from None
                return files, (f"{folder} (extracted .bin files, used as they are: only the "
                               "archive's published checksum can be verified)")
    return None


def download_archive(dest: Path, *, urls: tuple[str, ...] = URLS, timeout: float = 60.0
                     ) -> Path:
    """Fetch :data:`ARCHIVE` into ``dest``: into a ``.part`` file, continued with an HTTP
    range request where an earlier attempt left one, verified against
    :data:`ARCHIVE_SHA256`, then renamed into place (never a half-written archive)."""
    dest.mkdir(parents=True, exist_ok=True)
    target, part = dest / ARCHIVE, dest / f"{ARCHIVE}.part"
    if part.is_file() and sha256_file(part) == ARCHIVE_SHA256:  # complete, not yet moved
        os.replace(part, target)
        return target
    errors = []
    for base in urls:
        url = base.rstrip("/") + "/" + ARCHIVE
        have = part.stat().st_size if part.is_file() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                resumed = have and getattr(response, "status", None) == 206
                with open(part, "ab" if resumed else "wb") as fh:
                    while block := response.read(1 << 20):
                        fh.write(block)
            if sha256_file(part) != ARCHIVE_SHA256:
                part.unlink()
                raise DatasetError(f"the download from {url} does not match the published "
                                   f"sha256 {ARCHIVE_SHA256}")
            os.replace(part, target)
            return target
        except (urllib.error.URLError, OSError, DatasetError) as exc:
            errors.append(f"{url}: {exc}")
    raise DatasetError(f"Dataset 'cifar10' is not on this machine and could not be downloaded "
                       f"({'; '.join(errors)}). {WHERE}.")


def make_cifar10(data_root: str | os.PathLike[str] | None = None, *,
                 allow_download: bool = True) -> Dataset:
    """CIFAR-10 ``(3, 32, 32)``, 256 levels, 10 classes, the official 50k/10k split."""
    dirs = search_dirs(NAME, data_root)
    found = _find(dirs)
    if found is None:
        offline = os.environ.get("GMBENCH_OFFLINE", "") not in ("", "0")
        if not allow_download or offline:
            raise DatasetError(
                f"Dataset 'cifar10' not found in {', '.join(map(str, dirs))}"
                + (" (downloads are off: GMBENCH_OFFLINE is set)" if offline else "")
                + f". {WHERE}.")
        found = _from_archive(download_archive(user_cache() / NAME))
    files, source = found
    parts = [read_cifar_binary(files[f], path=f) for f in TRAIN_FILES]
    train = Split(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    test = Split(*read_cifar_binary(files[TEST_FILE], path=TEST_FILE))
    if (len(train), len(test)) != OFFICIAL_SIZES:
        source += (f"; {len(train)}/{len(test)} images, not the official "
                   f"{OFFICIAL_SIZES[0]}/{OFFICIAL_SIZES[1]}")
    info = DatasetInfo(name=NAME, kind="image", shape=(3, 32, 32), levels=256,
                       num_classes=CLASSES)
    return Dataset(info=info, train=train, test=test, source=source,
                   description="CIFAR-10 32x32 colour, 10 classes, official 50k/10k split "
                               "(binary version)")
