"""What people look at: the terminal table beside the baselines, and the HTML report, loaded in
a real headless Chromium that checks every image decodes and the tables are present."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from gmbench.cli import main
from gmbench.core.direction import Direction
from gmbench.present.compare import compare_with_baselines
from gmbench.present.report import build_report, pareto_plot_svg
from gmbench.present.table import render_table
from gmbench.storage.leaderboard import BoardRow, rows_from_results

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# The independent per-pixel categorical of examples/ (digits, Laplace smoothing):
# exact likelihoods with real normal CIs over the 360 test images.
INDEPENDENT = (Path(__file__).resolve().parents[1] / "examples"
               / "minimal_model.py").read_text()


def shifted(rows: list[BoardRow], name: str, factor: float, sha: str) -> list[BoardRow]:
    """Fake baseline rows: the same metrics scaled by ``factor``, under another model."""
    out = []
    for r in rows:
        scale = lambda v: None if v is None else v * factor  # noqa: E731
        out.append(BoardRow(**{**r.__dict__, "model": name, "model_sha256": sha,
                               "value": scale(r.value), "ci_low": scale(r.ci_low),
                               "ci_high": scale(r.ci_high)}))
    return out


def result(metrics: dict[str, tuple[float, bool]], name: str = "mine", sha: str = "c" * 64
           ) -> dict:
    return {
        "schema_version": 1, "seed": 0, "n_samples": 10, "skipped": {},
        "model": {"name": name, "sha256": sha, "path": "/m.py"},
        "dataset": {"name": "digits", "sha256": "d" * 64},
        "metrics": {k: {"value": v, "stderr": 0.1, "ci_low": v - 0.2, "ci_high": v + 0.2,
                        "ci_method": "normal", "n": 10, "unit": "u", "higher_is_better": hb,
                        "kind": None, "feature_space": "pixels"}
                    for k, (v, hb) in metrics.items()},
        "provenance": {"gmbench_version": "0.1.0", "started": "2026-01-01T00:00:00+00:00"},
    }


def test_rank_among_baselines_respects_direction_and_skips_itself():
    run = result({"nll": (100.0, False), "precision": (0.5, True)})
    base = rows_from_results(run)
    baselines = (shifted(base, "better", 0.9, "a" * 64) + shifted(base, "worse", 1.2, "b" * 64)
                 + shifted(base, "itself", 1.0, "c" * 64))  # same sha256 as the run: left out
    names, comps = compare_with_baselines(run, baselines)
    assert names == ["better", "worse"]
    by = {c.metric: c for c in comps}
    assert (by["nll"].rank, by["nll"].ranked) == (2, 3)          # 90 < 100 < 120
    assert (by["precision"].rank, by["precision"].ranked) == (2, 3)  # 0.6 > 0.5 > 0.45
    text = render_table(run, baselines=baselines, board="digits.csv", wide=True)
    nll_line = next(ln for ln in text.splitlines() if " nll " in ln)
    assert "2/3" in nll_line and "90.00 ±0.18" in nll_line and "120.00 ±0.24" in nll_line
    compact = render_table(run, baselines=baselines, board="digits.csv")
    nll_line = next(ln for ln in compact.splitlines() if " nll " in ln)
    assert "2/3" in nll_line and "better 90.00 ±0.18" in nll_line and "120" not in nll_line
    assert max(len(ln) for ln in compact.splitlines()) <= 120
    assert "itself" not in text and "baselines from digits.csv" in text


def test_other_feature_space_is_marked_not_ranked():
    run = result({"fid": (10.0, False)})
    other = shifted(rows_from_results(run), "b", 0.5, "a" * 64)
    other = [BoardRow(**{**r.__dict__, "feature_space": "inception (sha256 123)"}) for r in other]
    (comp,) = compare_with_baselines(run, other)[1]
    assert comp.mismatched == {"b"} and (comp.rank, comp.ranked) == (1, 1)
    assert "5.000 ±0.100 †" in render_table(run, baselines=other, wide=True)
    compact = " ".join(render_table(run, baselines=other).split())
    assert ("not ranked: fid: every baseline was measured in another feature space (this "
            "run: pixels; the board: inception (sha256 123))") in compact
    assert "--n-samples" not in compact


def test_table_without_baselines_keeps_the_old_form():
    run = result({"nll": (100.0, False)})
    assert render_table(run, wide=True).splitlines()[1].split() == ["metric", "value", "95%", "CI", "n",
                                                         "unit", "kind", "/", "space"]


def test_report_escapes_names_and_marks_the_pareto_front():
    run = result({"precision": (0.5, True), "recall": (0.5, True)},
                 name='<script>alert("x")</script>')
    base = rows_from_results(run)
    baselines = shifted(base, "dominated", 0.5, "a" * 64) + shifted(base, "best", 1.5, "b" * 64)
    page = build_report(run, baselines=baselines)
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    svg = pareto_plot_svg({"a": (1.0, 1.0), "b": (2.0, 0.5), "c": (0.5, 0.4)},
                          axes=("precision", "recall"),
                          directions=(Direction(True), Direction(True)), highlight="c")
    assert ">a *<" in svg and ">b *<" in svg and ">c<" in svg


def chromium(page: Path, *args: str) -> str:
    """Load ``page`` in headless Chromium with ``args`` (``--dump-dom``, ``--screenshot``)."""
    profile = tempfile.mkdtemp(prefix="gmbench-chromium-")
    try:
        proc = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
             "--virtual-time-budget=5000", *args, page.resolve().as_uri()],
            capture_output=True, text=True, timeout=120, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def dump_dom(page: Path) -> str:
    return chromium(page, "--window-size=1280,900", "--dump-dom")


FRAME = """<!DOCTYPE html><html><body style="margin:0"><iframe id="f" src="{src}"
style="width:{width}px;height:900px;border:0"></iframe><script>
document.getElementById("f").addEventListener("load", function () {{
  var inner = this.contentDocument.body;
  for (var i = 0; i < inner.attributes.length; i++) {{
    var a = inner.attributes[i];
    if (a.name.indexOf("data-") === 0) document.body.setAttribute(a.name, a.value);
  }}
}});
</script></body></html>"""


def at_width(page: Path, width: int, screenshot: Path) -> dict[str, str]:
    """The report in a window ``width`` pixels wide: the in-page measurements, and a
    screenshot cropped to the window. Headless Chromium's windows are at least 500 pixels
    wide, so the page is shown in an iframe of exactly ``width`` pixels."""
    frame = page.with_name(f"frame-{width}.html")
    frame.write_text(FRAME.format(src=page.name, width=width))
    window = f"--window-size={max(width, 500)},900"
    extra = "--allow-file-access-from-files"
    attrs = body_attributes(chromium(frame, window, extra, "--dump-dom"))
    chromium(frame, window, extra, f"--screenshot={screenshot}")
    return attrs


def body_attributes(dom: str) -> dict[str, str]:
    return dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', re.search(r"<body([^>]*)>", dom)[1]))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it with "
                                             "`apt-get install chromium`)")
def test_report_loads_in_chromium_with_every_image_decoded(tmp_path):
    model = tmp_path / "indep.py"
    model.write_text(INDEPENDENT)
    boards = tmp_path / "boards"
    out = tmp_path / "out"
    metrics = "nll,bits_per_dim,copy_rate"
    # a baseline board: the same model evaluated once, renamed, with shifted numbers
    assert main(["evaluate", str(model), "--metrics", metrics, "--out", str(out)]) == 0
    base = rows_from_results(json.loads((out / "results.json").read_text()))
    boards.mkdir()
    from gmbench.storage.leaderboard import write_board
    write_board(boards / "digits.csv", shifted(base, "pca", 0.9, "a" * 64)
                + shifted(base, "vae", 1.1, "b" * 64))
    assert main(["evaluate", str(model), "--metrics", metrics, "--out", str(out), "--report",
                 "--boards", str(boards)]) == 0
    assert (out / "samples.png").is_file() and (out / "neighbours.png").is_file()
    dom = dump_dom(out / "report.html")
    body = re.search(r"<body([^>]*)>", dom).group(1)
    n_images = 2 + 3 + 1  # sample grid, neighbour pairs, one plot per metric, Pareto plot
    assert f'data-images="{n_images}"' in body and f'data-decoded="{n_images}"' in body, body
    assert dom.count('data-decoded="true"') == n_images and 'data-decoded="false"' not in dom
    # the compact table, the baseline matrix, the provenance
    assert 'data-tables="3"' in body and '<table id="metrics">' in dom
    row = re.search(r"<tr[^>]*><td class=\"l\">↓</td><td class=\"l\">nll</td>(.*?)</tr>", dom)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
    assert cells[2] == "2/3"  # 0.9x (pca) beats it, 1.1x (vae) does not
    assert cells[3].startswith("pca ")  # the best baseline
    assert {"pca", "vae"} <= set(re.findall(r"<th>(\w+)</th>", dom))
    assert "Pareto plot of bits_per_dim and copy_rate" in dom


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it with "
                                             "`apt-get install chromium`)")
def test_chromium_check_catches_a_broken_image(tmp_path):
    """Negative control: the in-page check really tells a broken picture from a good one."""
    page = tmp_path / "report.html"
    page.write_text(build_report(result({"nll": (1.0, False)}), samples_png=b"not a png"))
    body = re.search(r"<body([^>]*)>", dump_dom(page)).group(1)
    assert 'data-images="2"' in body and 'data-decoded="1"' in body, body


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it with "
                                             "`apt-get install chromium`)")
def test_report_fits_the_window_at_1280_and_390_pixels(tmp_path):
    """Against the real digits board (nine baselines): the page never scrolls sideways; the
    full matrix scrolls inside its own box; the pictures are captioned and shown at twice
    their size where the window allows. Screenshots of both widths are taken and checked."""
    from PIL import Image

    model = tmp_path / "indep.py"
    model.write_text(INDEPENDENT)
    out = tmp_path / "out"
    metrics = "nll,bits_per_dim,fid,kid,precision,recall,coverage,copy_rate,nn_distance_ratio"
    assert main(["evaluate", str(model), "--metrics", metrics, "--n-samples", "300",
                 "--out", str(out), "--report", "--quiet"]) == 0
    page = out / "report.html"
    html_text = page.read_text()
    assert "64 of the 300 samples of indep on digits, seed 0" in html_text
    assert re.search(r"The \d+ samples of indep on digits, seed 0 nearest to a training "
                     "example", html_text)
    for width in (1280, 390):
        shot = tmp_path / f"report-{width}.png"
        attrs = at_width(page, width, shot)
        assert int(attrs["data-view-width"]) == width
        assert int(attrs["data-page-width"]) <= width, (width, attrs)  # no page overflow
        assert int(attrs["data-matrix-box"]) <= width
        assert attrs["data-decoded"] == attrs["data-images"]
        if width == 390:  # nine baselines do not fit: the box scrolls, the page does not
            assert int(attrs["data-matrix-width"]) > int(attrs["data-matrix-box"])
        with Image.open(shot) as img:
            grey = img.convert("L").crop((0, 0, width, 900))
            # the page's right margin is white: nothing is drawn beyond the body's edge
            right = grey.crop((width - 4, 0, width, 900))
            assert right.getextrema()[0] > 240, width
            assert grey.getextrema()[0] < 100  # and the page is not blank


def test_evaluate_survives_a_corrupt_baseline_board(tmp_path, write_model, gmbench_cli):
    boards = tmp_path / "boards"
    boards.mkdir()
    (boards / "digits.csv").write_text("dataset,model\ndigits,x")  # truncated, wrong header
    run = gmbench_cli("evaluate", write_model(INDEPENDENT), "--metrics", "nll",
                      "--boards", boards)
    assert run.code == 0, run.err
    assert "baselines not shown" in run.err and "digits.csv" in run.err
    assert run.metric("nll")["value"] == pytest.approx(108.012, abs=1e-3)


BOARDS = sorted((Path(__file__).resolve().parents[1] / "leaderboards").glob("*.csv"))


def _as_results(rows: list[BoardRow]) -> dict:
    """A results document holding the metrics of one model's board rows."""
    first = rows[0]
    return {
        "schema_version": 2, "seed": first.seed, "n_samples": first.n_samples, "skipped": {},
        "model": {"name": "yours", "sha256": "e" * 64, "path": "/yours.py"},
        "dataset": {"name": first.dataset, "sha256": first.dataset_sha256},
        "metrics": {r.metric: {"value": r.value, "stderr": r.stderr, "ci_low": r.ci_low,
                               "ci_high": r.ci_high, "ci_method": r.ci_method, "n": r.n,
                               "unit": r.unit, "higher_is_better": r.higher_is_better,
                               "ideal": r.ideal, "kind": r.kind or None,
                               "feature_space": r.feature_space, "n_samples": r.n_samples,
                               "interval_covers": "bound" if r.metric == "tv_lower_bound"
                               else "population"}
                    for r in rows},
        "provenance": {"gmbench_version": "0.3.0", "started": "2026-01-01T00:00:00+00:00"},
    }


@pytest.mark.parametrize("board", BOARDS, ids=lambda p: p.stem)
def test_the_table_fits_120_columns_against_every_committed_board(board):
    from gmbench.storage.leaderboard import read_board

    rows = read_board(board)
    for model in sorted({r.model for r in rows}):
        doc = _as_results([r for r in rows if r.model == model])
        text = render_table(doc, baselines=rows, board=str(board))
        assert max(len(line) for line in text.splitlines()) <= 120, (board.stem, model)
        assert "…" not in text  # no cell cut
        best = [ln.split()[-3] for ln in text.splitlines()[3:] if ln[:1] in "↑↓◎"
                and len(ln.split()) >= 7]
        assert "memorizer" not in best and "truth" not in best  # never the best baseline


def test_no_comparable_baseline_is_said_in_plain_words():
    run = result({"fid": (10.0, False)})
    run["n_samples"] = 500
    run["metrics"]["fid"]["n_samples"] = 500
    board = shifted(rows_from_results(result({"fid": (12.0, False)})), "b", 1.0, "a" * 64)
    board = [BoardRow(**{**r.__dict__, "n_samples": 2000}) for r in board]
    text = " ".join(render_table(run, baselines=board, board="b.csv").split())
    assert ("not ranked: fid: every baseline was measured on another number of samples (this "
            "run 500, the board 2000). Re-run with --n-samples 2000 to compare.") in text


def test_pareto_labels_do_not_overlap_on_the_committed_boards():
    """The report's Pareto plot of every committed board (precision and recall of each
    baseline): no label box overlaps another, and a reference model is never on the front."""
    import re as _re

    from gmbench.present.report import CHAR_W, LINE_H
    from gmbench.storage.leaderboard import latest_rows, read_board

    for board in BOARDS:
        rows = latest_rows(read_board(board))
        points = {m: (rows[(d, m, "precision")].value, rows[(d, m, "recall")].value)
                  for (d, m, k) in rows if k == "precision" and (d, m, "recall") in rows}
        if len(points) < 2:
            continue
        refs = {m for (_, m, _), r in rows.items() if r.reference}
        svg = pareto_plot_svg(points, axes=("precision", "recall"),
                              directions=(Direction(True), Direction(True)),
                              highlight="", references=refs)
        boxes = []
        for x, y, anchor, text in _re.findall(
                r'<text class="label" x="([\d.-]+)" y="([\d.-]+)" text-anchor="(\w+)" '
                r'fill="#\w+">([^<]*)<',
                svg):
            if text.removesuffix(" *")[:18] not in {m[:18] for m in points}:
                continue  # an axis tick
            width = CHAR_W * len(text.replace("&amp;", "&"))
            left = float(x) - width if anchor == "end" else float(x)
            boxes.append((left, float(y) - LINE_H + 2, left + width, float(y) + 2, text))
        assert len(boxes) == len(points)
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                overlap = a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
                assert not overlap, (board.stem, a[4], b[4])
        assert not any(f">{m} *<" in svg for m in refs), board.stem


LABELS_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{svgs}<script>
var labels = document.querySelectorAll("text.label"), boxes = [], overlaps = 0;
for (var i = 0; i < labels.length; i++) {{
  var r = labels[i].getBoundingClientRect();
  for (var j = 0; j < boxes.length; j++) {{
    var o = boxes[j];
    if (labels[i].ownerSVGElement === o.svg && r.left < o.r.right && o.r.left < r.right
        && r.top < o.r.bottom && o.r.top < r.bottom) overlaps++;
  }}
  boxes.push({{r: r, svg: labels[i].ownerSVGElement}});
}}
document.body.setAttribute("data-labels", labels.length);
document.body.setAttribute("data-overlaps", overlaps);
</script></body></html>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it with "
                                             "`apt-get install chromium`)")
def test_pareto_labels_do_not_overlap_in_the_browser(tmp_path):
    """The Pareto plots of every committed board (precision and recall), drawn by Chromium:
    no two labels of one plot overlap as rendered."""
    from gmbench.storage.leaderboard import latest_rows, read_board

    svgs, n_labels = [], 0
    for board in BOARDS:
        rows = latest_rows(read_board(board))
        points = {m: (rows[(d, m, "precision")].value, rows[(d, m, "recall")].value)
                  for (d, m, k) in rows if k == "precision" and (d, m, "recall") in rows}
        if len(points) >= 2:
            svgs.append(pareto_plot_svg(points, axes=("precision", "recall"),
                                        directions=(Direction(True), Direction(True)),
                                        highlight=""))
            n_labels += len(points)
    page = tmp_path / "labels.html"
    page.write_text(LABELS_PAGE.format(svgs="".join(svgs)))
    attrs = body_attributes(dump_dom(page))
    assert attrs["data-labels"] == str(n_labels) and attrs["data-overlaps"] == "0", attrs
