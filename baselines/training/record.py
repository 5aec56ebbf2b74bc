"""Regenerate a dataset's leaderboard from the bundled baselines.

    python -m gmbench_baselines.training.record --dataset digits [--families vae,flow] [--out DIR]

For every baseline family of the dataset this runs ``gmbench evaluate baselines/<family>.py
--dataset NAME --out DIR/<dataset>/<family>`` (the very command a user runs; all applicable
metrics, seed 0), copies its sample picture to ``docs/baselines/<dataset>-<family>.png``,
and then writes ``leaderboards/<dataset>.csv`` from the ``results.json`` files with
:func:`gmbench.leaderboard.add_results`. With every family evaluated the board is rebuilt
from scratch (rows of older weights do not linger); with ``--families`` the new rows replace
every row of those families and the rest stay.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gmbench_baselines import BASELINES, families_for

from gmbench.core.device import platform_record

__all__ = ["FASHION_MNIST_MAX_TRAIN", "FASHION_MNIST_METRICS", "PUBLISHED", "Published", "main",
           "published_table", "record", "runnable_metrics"]

ROOT = Path(__file__).resolve().parents[2]  # the source checkout
BASELINE_DIR = ROOT / "baselines"
BOARD_DIR = ROOT / "leaderboards"
PICTURE_DIR = ROOT / "docs" / "baselines"
SEED = 0
# The boards of the 60,000-image datasets (LARGE) leave out the metrics that cost most on two
# CPU cores (c2st, kl_knn, mmd on 10k x 10k samples) and score nll_train on a seeded subset of
# FASHION_MNIST_MAX_TRAIN training images; `--metrics all` records every applicable metric.
FASHION_MNIST_METRICS = ("nll,nll_train,generalization_gap,bits_per_dim,perplexity,fid,kid,"
                         "inception_score,precision,recall,density,coverage,nn_distance_ratio,"
                         "copy_rate,data_copying_ct,cas,cas_ratio,reconstruction_error")
FASHION_MNIST_MAX_TRAIN = 5000  # train images scored for nll_train (a seeded subset)
LARGE = ("fashion-mnist", "mnist", "mnist-binarized")


def runnable_metrics(family: str, dataset: str, wanted: str) -> list[str]:
    """The metrics of the comma-separated list ``wanted`` that ``family`` can run on
    ``dataset`` (``gmbench evaluate --metrics`` refuses the others)."""
    from gmbench.datasets import get_dataset
    from gmbench.metrics import get_metric
    from gmbench.models.model import build_model, import_model_file

    data = get_dataset(dataset)
    module, source = import_model_file(BASELINE_DIR / f"{family}.py")
    model = build_model(module, source, data.info, "cpu")
    keys = [k.strip() for k in wanted.split(",") if k.strip()]
    return [k for k in keys
            if not (get_metric(k).missing(model.capabilities) or get_metric(k).applies(data))]


EXACT_BOARD = "digits"  # the board the golden-row tests and the CI gate reproduce exactly


def write_platform(board_dir: Path) -> None:
    """``PLATFORM.json`` beside the boards: where the digits board was recorded (the golden-row
    tests demand exact reproduction there, and the recorded interval elsewhere). Every row
    also names its own platform (the board's ``platform`` column)."""
    import json

    (board_dir / "PLATFORM.json").write_text(json.dumps(platform_record(), indent=2) + "\n")


def record(*, dataset: str, families: Sequence[str] | None = None,
           out: Path = ROOT / "gmbench-out" / "baselines", board_dir: Path = BOARD_DIR,
           picture_dir: Path | None = PICTURE_DIR, metrics: str | None = None,
           extra_args: Sequence[str] = ()) -> Path:
    """Evaluate the baselines of ``dataset`` with ``gmbench evaluate`` and write its board.

    Args:
        dataset: dataset name.
        families: subset of :func:`baselines.families_for` (default: all of them).
        out: where each evaluation writes ``<dataset>/<family>/results.json``.
        board_dir: where ``<dataset>.csv`` is written.
        picture_dir: where the sample grids are copied (``None``: not copied).
        metrics: comma-separated metric keys; each family runs those it can (default: every
            applicable metric).
        extra_args: further ``gmbench evaluate`` options.

    Returns:
        The path of the board.
    """
    from gmbench.cli import main as gmbench_main
    from gmbench.storage.leaderboard import add_results
    from gmbench.storage.per_example import store_dir

    every = families_for(dataset)
    chosen = list(families or every)
    unknown = [f for f in chosen if f not in every]
    if unknown:
        raise SystemExit(f"no baseline {', '.join(unknown)} for {dataset}; "
                         f"choose from {', '.join(every)}")
    results = []
    for family in chosen:
        run_dir = out / dataset / family
        argv = ["evaluate", str(BASELINE_DIR / f"{family}.py"), "--dataset", dataset,
                "--seed", str(SEED), "--out", str(run_dir), "--overwrite", *extra_args]
        if metrics:
            argv += ["--metrics", ",".join(runnable_metrics(family, dataset, metrics))]
        n_samples = BASELINES[family].samples_for(dataset)
        if n_samples is not None:  # a slow sampler's rows at a smaller, stated count
            argv += ["--n-samples", str(n_samples)]
        started = time.time()
        print(f"$ gmbench {' '.join(argv)}", file=sys.stderr, flush=True)
        code = gmbench_main(argv)
        if code != 0:
            raise SystemExit(f"gmbench evaluate failed for {family} on {dataset} (exit {code})")
        print(f"[{family} {dataset}] evaluated in {time.time() - started:.1f}s", file=sys.stderr,
              flush=True)
        results.append(run_dir / "results.json")
        picture = run_dir / "samples.png"
        if picture_dir is not None and picture.is_file():
            picture_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(picture, picture_dir / f"{dataset}-{family}.png")
    board = board_dir / f"{dataset}.csv"
    board_dir.mkdir(parents=True, exist_ok=True)
    if set(chosen) == set(every):  # a full regeneration: build the board afresh, then swap
        fresh = board_dir / f".{dataset}.csv.new"
        fresh.unlink(missing_ok=True)
        shutil.rmtree(store_dir(fresh), ignore_errors=True)
        add_results(fresh, results)
        shutil.rmtree(store_dir(board), ignore_errors=True)  # the old runs' per-example files
        os.replace(store_dir(fresh), store_dir(board))
        os.replace(fresh, board)
        Path(f"{fresh}.lock").unlink(missing_ok=True)
    else:  # the families re-recorded replace every row of theirs (older weights included)
        from gmbench.storage.leaderboard import board_lock, read_board, write_board

        if board.is_file():
            with board_lock(board):
                kept = [r for r in read_board(board) if r.model not in set(chosen)]
                write_board(board, kept)
        add_results(board, results, replace=True)
        referenced = {r.per_example_sha256 for r in read_board(board)}
        for path in store_dir(board).glob("*.npz"):  # those of the rows just replaced
            if path.stem not in referenced:
                path.unlink()
    board.chmod(0o644)  # atomic_write leaves a private (0600) file; the board is shipped
    if dataset == EXACT_BOARD or not (board_dir / "PLATFORM.json").is_file():
        write_platform(board_dir)
    print(f"wrote {board} ({len(results)} baseline(s))", file=sys.stderr)
    return board


TABLE_ORDER = (("categorical", "categorical (floor)"), ("ppca", "ppca"),
               ("memorizer", "memorizer"), ("flow_mlp", "flow_mlp (MLP couplings)"),
               ("flow", "flow (multi-scale conv)"), ("pixelcnn", "pixelcnn (gated)"),
               ("vae", "vae (IWAE-32)"), ("vae_elbo", "vae_elbo (ELBO)"), ("ae", "ae"),
               ("ae_conditional", "ae_conditional"), ("gan", "gan"))


def board_table(dataset: str, board_dir: Path = BOARD_DIR) -> str:
    """The rows of the baselines table in ``docs/baselines.md`` (bits/dim with its interval,
    nll_train, FID with its interval, the sample count, copy_rate, CAS), from the board."""
    from gmbench.storage.leaderboard import latest_rows, read_board

    rows = latest_rows(read_board(board_dir / f"{dataset}.csv"))

    def get(model: str, metric: str):  # noqa: ANN202
        r = rows.get((dataset, model, metric))
        return None if r is None or r.value is None else r

    lines = []
    for model, label in TABLE_ORDER:
        if not any(key[1] == model for key in rows):  # not a baseline of this dataset
            continue
        bpd, nll, fid = get(model, "bits_per_dim"), get(model, "nll_train"), get(model, "fid")
        copy, cas = get(model, "copy_rate"), get(model, "cas")
        cells = [label,
                 "-" if bpd is None else f"{bpd.value:.3f} [{bpd.ci_low:.3f}, {bpd.ci_high:.3f}]",
                 "-" if nll is None else f"{nll.value:.1f}",
                 "-" if fid is None else f"{fid.value:.0f} [{fid.ci_low:.0f}, {fid.ci_high:.0f}]",
                 "-" if fid is None else f"{fid.n_samples:,}",
                 "-" if copy is None else f"{copy.value:.4g}",
                 "-" if cas is None else f"{cas.value:.3f}"
                 + (" (true labels)" if model == "ae_conditional" else "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


TEXT_ORDER = (("unigram", "unigram (floor)"), ("ngram_kn", "ngram_kn (6-gram)"),
              ("byte_transformer", "byte_transformer"), ("text_memorizer", "text_memorizer"))


def text_board_table(dataset: str, board_dir: Path = BOARD_DIR) -> str:
    """The rows of the text baselines table in ``docs/text.md`` (bits per byte with its
    interval, the perplexities, the sample checks and their sample count), from the board."""
    from gmbench.storage.leaderboard import latest_rows, read_board

    rows = latest_rows(read_board(board_dir / f"{dataset}.csv"))

    def cell(model: str, metric: str, fmt: str, interval: bool = False) -> str:
        r = rows.get((dataset, model, metric))
        if r is None or r.value is None:
            return "-"
        text = format(r.value, fmt)
        return f"{text} [{r.ci_low:{fmt}}, {r.ci_high:{fmt}}]" if interval else text

    lines = []
    for model, label in TEXT_ORDER:
        if not any(key[1] == model for key in rows):
            continue
        copy = rows.get((dataset, model, "verbatim_copy_rate"))
        cells = [label, cell(model, "bits_per_byte", ".3f", True),
                 cell(model, "char_perplexity", ".3f"), cell(model, "word_perplexity", ".0f"),
                 cell(model, "verbatim_copy_rate", ".4f"), cell(model, "distinct_4grams", ".3f"),
                 cell(model, "text_c2st_accuracy", ".3f"),
                 "-" if copy is None else f"{copy.n_samples:,}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Published:
    """One row of the table of MNIST numbers beside the literature's: a bundled baseline's
    number on ``dataset`` (``metric`` of the board) and the published numbers of its
    protocol, each ``(model, number, source)``."""

    protocol: str
    dataset: str
    metric: str
    family: str
    label: str
    papers: tuple[tuple[str, float, str], ...] = ()


# the papers' test numbers: bits/dim of 8-bit MNIST, uniformly dequantized; nats per image of
# binarized MNIST (the PixelCNN's on the fixed binarization of Larochelle & Murray 2011)
PUBLISHED = (
    Published("8-bit, dequantized (bits/dim)", "mnist", "bits_per_dim", "flow",
              "flow (multi-scale conv)",
              (("RealNVP", 1.06, "Dinh et al. 2017"), ("Glow", 1.05, "Kingma & Dhariwal 2018"),
               ("FFJORD", 0.99, "Grathwohl et al. 2019"),
               ("Residual Flows", 0.97, "Chen et al. 2019"))),
    Published("8-bit, dequantized (bits/dim)", "mnist", "bits_per_dim", "ppca", "ppca"),
    Published("8-bit, dequantized (bits/dim)", "mnist", "bits_per_dim", "categorical",
              "categorical (floor)"),
    Published("binarized (nats/image)", "mnist-binarized", "nll", "vae", "vae (IWAE-32)",
              (("IWAE, 2 stochastic layers, k=50", 82.90, "Burda et al. 2016"),)),
    Published("binarized (nats/image)", "mnist-binarized", "nll", "vae_elbo",
              "vae_elbo (ELBO)",
              (("VAE, 2 stochastic layers, k=1", 85.33, "Burda et al. 2016"),)),
    Published("binarized (nats/image)", "mnist-binarized", "nll", "pixelcnn",
              "pixelcnn (gated)",
              (("PixelCNN, masked convolutions", 81.30,
                "van den Oord et al. 2016, Pixel Recurrent Neural Networks; fixed binarization"),)),
    Published("binarized (nats/image)", "mnist-binarized", "nll", "categorical",
              "categorical (floor)"),
)


def _training(family: str, dataset: str) -> str:
    """A baseline's training budget from its weights' record: epochs (of those planned),
    wall time and threads; ``fitted in closed form`` where it has no learning curve."""
    import json

    weights = BASELINES[family].weights
    path = BASELINE_DIR / "weights" / f"{weights}-{dataset}.json"
    doc = json.loads(path.read_text())
    if "learning_curve" not in doc:
        return "counted / closed form"
    hours = doc["training_wall_time_s"] / 3600
    return (f"{doc['epochs_done']:.1f} of {doc['planned_epochs']} epochs, {hours:.1f} h on "
            f"{doc['threads']} CPU thread{'s' if doc['threads'] > 1 else ''}")


def published_table(board_dir: Path = BOARD_DIR) -> str:
    """The rows of ``docs/baselines.md``'s table of MNIST numbers beside the published ones,
    from the committed boards (a baseline not yet on its board is left out)."""
    from gmbench.storage.leaderboard import latest_rows, read_board

    boards: dict[str, dict] = {}
    lines = []
    for row in PUBLISHED:
        if row.dataset not in boards:
            path = board_dir / f"{row.dataset}.csv"
            boards[row.dataset] = latest_rows(read_board(path)) if path.is_file() else {}
        r = boards[row.dataset].get((row.dataset, row.family, row.metric))
        if r is None or r.value is None:
            continue
        fmt = ".3f" if row.metric == "bits_per_dim" else ".2f"
        papers = "; ".join(f"{m} **{v:.2f}** ({src})" for m, v, src in row.papers) or "-"
        detail = row.label.partition(" ")[2]  # "flow (multi-scale conv)": "(multi-scale conv)"
        cells = [row.protocol, papers, f"`{row.family}`" + (f" {detail}" if detail else ""),
                 f"**{r.value:{fmt}}** [{r.ci_low:{fmt}}, {r.ci_high:{fmt}}]",
                 _training(row.family, row.dataset)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curve_table(dataset: str, families: Sequence[str]) -> str:
    """The learning curves of ``families`` on ``dataset`` from their training records, as
    the rows of a table (epochs 1, 2, 3, 4, 6, 8, every fifth from 10, and the last point):
    epoch, the averaged weights' held-out loss (bits/dim, and nats per image on MNIST), the
    training loss (bits/dim) and the wall time so far (minutes)."""
    import json
    import math

    lines = []
    for family in families:
        weights = BASELINES[family].weights
        doc = json.loads((BASELINE_DIR / "weights" / f"{weights}-{dataset}.json").read_text())
        curve = [p for p in doc.get("learning_curve", []) if "held_out_bpd" in p]
        for i, point in enumerate(curve):
            epoch = point["epoch"]
            shown = epoch in (1, 2, 3, 4, 6, 8) or (epoch >= 10 and epoch % 5 == 0) \
                or i == len(curve) - 1
            if not shown:
                continue
            nats = point["held_out_bpd"] * 784 * math.log(2) if dataset.startswith("mnist") \
                else None
            cells = [family, f"{point['epoch']:g}", f"{point['held_out_bpd']:.4f}",
                     "-" if nats is None else f"{nats:.2f}", f"{point['train_bpd']:.4f}",
                     f"{point['wall_time_s'] / 60:.0f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gmbench_baselines.training.record", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True,
                        help="dataset name; baselines exist for "
                             + ", ".join(sorted({d for b in BASELINES.values() for d in b.datasets})))
    parser.add_argument("--families", default=None, help="comma-separated subset of families")
    parser.add_argument("--out", default=str(ROOT / "gmbench-out" / "baselines"))
    parser.add_argument("--metrics", default=None,
                        help="metric keys, each family running those it can; 'all': every "
                             "applicable metric (default: all; FASHION_MNIST_METRICS on "
                             "fashion-mnist, mnist and mnist-binarized)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--table", action="store_true",
                        help="print the rows of docs/baselines.md's table from the board, and "
                             "exit (--dataset published: the MNIST table beside the papers')")
    parser.add_argument("--curves", action="store_true",
                        help="print the learning curves of --families on the dataset from "
                             "their training records (rows of docs/baselines.md), and exit")
    args = parser.parse_args(argv)
    if args.table and args.dataset == "published":
        print(published_table())
        return 0
    if args.curves:
        print(curve_table(args.dataset, [f.strip() for f in (args.families or "").split(",")
                                         if f.strip()]))
        return 0
    if args.table:
        from gmbench_baselines import TEXT_DATASETS

        print((text_board_table if args.dataset in TEXT_DATASETS else board_table)(args.dataset))
        return 0
    import torch

    torch.set_num_threads(args.threads)
    families = [f.strip() for f in args.families.split(",")] if args.families else None
    big = args.dataset in LARGE
    metrics = args.metrics or (FASHION_MNIST_METRICS if big else None)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(args.threads):  # BLAS on as many threads as torch
        record(dataset=args.dataset, families=families, out=Path(args.out),
               metrics=None if metrics == "all" else metrics,
               extra_args=["--max-train", str(FASHION_MNIST_MAX_TRAIN)] if big else [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
