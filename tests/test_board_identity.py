"""Every committed board row of a bundled baseline is the baseline as it is now: the row's
``model_sha256`` is its file's and its ``weights_sha256`` the weights that file loads. A
baseline changed after recording must be re-recorded
(``python -m gmbench_baselines.training.record --dataset NAME --families FAMILY``), else a
user re-evaluating it would be compared with its own stale row as with another model."""

from __future__ import annotations

from pathlib import Path

import pytest

from gmbench.api import load_model
from gmbench.core.background import thread_budget
from gmbench.core.device import platform_id
from gmbench.datasets import get_dataset
from gmbench.storage.leaderboard import read_board

ROOT = Path(__file__).resolve().parents[1]
BOARDS = sorted((ROOT / "leaderboards").glob("*.csv"))


def _cases() -> list[tuple[str, str]]:
    out = []
    for board in BOARDS:
        for model in sorted({r.model for r in read_board(board)}):
            if (ROOT / "baselines" / f"{model}.py").is_file():
                out.append((board.stem, model))
    return out


@pytest.mark.parametrize(("board", "model"), _cases())
def test_committed_board_rows_are_the_current_baseline(board, model):
    rows = [r for r in read_board(ROOT / "leaderboards" / f"{board}.csv") if r.model == model]
    data = get_dataset(rows[0].dataset)
    # on one thread, as boards are recorded: PPCA's closed-form fit at load (and so the
    # memorizer's back-off) moves in its last bits with the BLAS thread count
    with thread_budget(1):
        built = load_model(ROOT / "baselines" / f"{model}.py", dataset=data)
        here = platform_id("cpu")[1]
    identity = built.source.weights
    weights = identity.sha256 if identity is not None else ""
    # weights hashed from arrays computed at load (a closed-form fit) are the recorded ones
    # in every bit only on the recording platform: elsewhere BLAS rounds them differently
    exact = identity is None or identity.source != "state_dict" or all(
        r.platform == here for r in rows)
    stale = sorted({r.metric for r in rows if r.model_sha256 != built.source.sha256
                    or (exact and (r.weights_sha256 or "") != weights)})
    assert not stale, (f"{board}.csv: the rows of {model} ({', '.join(stale)}) were recorded "
                       f"from another baselines/{model}.py or other weights; re-record them: "
                       f"python -m gmbench_baselines.training.record --dataset "
                       f"{rows[0].dataset} --families {model}")
