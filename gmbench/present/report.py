"""The HTML report: one self-contained file (no network, no external files). It leads with
the compact metrics table (value, interval, rank, best baseline), then the captioned sample
grid and memorization neighbour pairs, the full baseline matrix in a box that scrolls on its
own, and plots; the page itself never scrolls sideways, at 1280 or at 390 pixels.

Pictures are embedded as ``data:`` URIs: the PNGs that ``gmbench evaluate`` wrote, and plots
drawn here as SVG (one dot-and-whisker chart per metric against the baselines, and the Pareto
plot of two metrics). A small inline script marks every ``<img>`` with ``data-decoded`` once
the page has loaded, so a headless browser can verify that every picture decodes.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from gmbench.core.direction import Direction
from gmbench.present.compare import Comparison, compare_with_baselines, pareto_front
from gmbench.present.format import feature_spaces, format_number, format_pm, where_measured
from gmbench.present.verdicts import memorization_line, text_scoring_line
from gmbench.storage.leaderboard import BoardRow, latest_rows, neutralise
from gmbench.storage.results import records

__all__ = ["PARETO_PAIRS", "build_report", "metric_plot_svg", "pareto_plot_svg",
           "pick_pareto_pair"]

# Pairs that trade off against each other, in order of preference for the Pareto plot.
PARETO_PAIRS = (("precision", "recall"), ("density", "coverage"), ("bits_per_dim", "fid"),
                ("nll", "fid"), ("bits_per_dim", "kid"), ("bits_per_dim", "mmd"),
                ("nll", "mmd"), ("fid", "copy_rate"), ("bits_per_dim", "copy_rate"),
                ("nll", "copy_rate"), ("bits_per_dim", "nll_train"), ("nll", "nll_train"))

HIGHLIGHT, BASE, FRONT, REFERENCE = "#c0392b", "#34495e", "#2980b9", "#95a5a6"

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;margin:0 auto;padding:1em;color:#222;max-width:1200px;
     overflow-wrap:anywhere}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td.l,th.l{text-align:left}
td.space{white-space:normal;min-width:8em;font-size:11px;text-align:left}
tr.best td.rank{font-weight:bold;color:#1e8449}
.scroll{overflow-x:auto;max-width:100%}
#provenance td{white-space:normal;word-break:break-all;text-align:left}
.plots{display:flex;flex-wrap:wrap;gap:12px}
img{max-width:100%;height:auto}
figure{margin:.5em 0}
figure img.pix{image-rendering:pixelated;border:1px solid #ccc;width:var(--w);max-width:100%}
figcaption,.note{color:#666;font-size:12px}
"""

SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) {
    var good = imgs[i].complete && imgs[i].naturalWidth > 0;
    imgs[i].setAttribute("data-decoded", good ? "true" : "false");
    if (good) ok++;
  }
  document.body.setAttribute("data-images", String(imgs.length));
  document.body.setAttribute("data-decoded", String(ok));
  document.body.setAttribute("data-tables", String(document.querySelectorAll("table").length));
  // horizontal overflow of the page itself (scroll containers may scroll inside it)
  document.body.setAttribute("data-page-width", String(document.documentElement.scrollWidth));
  document.body.setAttribute("data-view-width", String(document.documentElement.clientWidth));
  var matrix = document.getElementById("matrix");
  if (matrix) {
    document.body.setAttribute("data-matrix-width", String(matrix.scrollWidth));
    document.body.setAttribute("data-matrix-box", String(matrix.clientWidth));
  }
});
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _img(data: bytes, mime: str, alt: str, css: str = "", style: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    sty = f' style="{_e(style)}"' if style else ""
    return f'<img{cls}{sty} alt="{_e(alt)}" src="{_data_uri(data, mime)}">'


# ------------------------------------------------------------------ SVG plots
def _ticks(lo: float, hi: float) -> tuple[float, float]:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0.0, 1.0
    if hi <= lo:
        pad = abs(lo) * 0.05 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    return lo - pad, hi + pad


def metric_plot_svg(comp: Comparison, *, width: int = 340) -> str:
    """Dot-and-whisker chart: the run (red) and each baseline, value with its 95% interval."""
    rec = comp.record
    entries: list[tuple[str, float, float | None, float | None, bool]] = []
    if rec.value is not None:
        entries.append(("this model", float(rec.value), rec.ci_low, rec.ci_high, True))
    for name, row in comp.baselines.items():
        if row.value is not None:
            entries.append((name, row.value, row.ci_low, row.ci_high, False))
    row_h, left, right, top = 18, 110, 20, 24
    height = top + row_h * max(len(entries), 1) + 26
    values = [float(u) for _, v, clo, chi, _ in entries for u in (v, clo, chi) if u is not None]
    lo, hi = _ticks(min(values, default=0.0), max(values, default=1.0))

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * (width - left - right)

    direction = Direction.of(rec)
    arrow = f"{direction.arrow} {direction.describe()}"
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="4" y="14" font-weight="bold">{_e(comp.metric)} '
             f'<tspan font-weight="normal" fill="#666">({_e(rec.unit)}, '
             f'{_e(arrow)})</tspan></text>']
    for i, (name, v, clo, chi, mine) in enumerate(entries):
        y = top + row_h * i + row_h / 2
        color = HIGHLIGHT if mine else BASE
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{color}">'
                     f'{_e(name[:16])}</text>')
        if clo is not None and chi is not None:
            parts.append(f'<line x1="{x(clo):.1f}" x2="{x(chi):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                         f'stroke="{color}" stroke-width="2"/>')
        parts.append(f'<circle cx="{x(v):.1f}" cy="{y:.1f}" r="4" fill="{color}"/>')
    axis_y = top + row_h * max(len(entries), 1) + 4
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{axis_y}" y2="{axis_y}" '
                 'stroke="#999"/>')
    for v, anchor in ((lo, "start"), (hi, "end")):
        parts.append(f'<text x="{x(v):.1f}" y="{axis_y + 14}" text-anchor="{anchor}" '
                     f'fill="#666">{_e(format_number(v))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def pick_pareto_pair(metrics: Sequence[str], wanted: tuple[str, str] | None = None
                     ) -> tuple[str, str] | None:
    """``wanted`` if both are present, else the first of :data:`PARETO_PAIRS` present, else
    the first two metrics."""
    have = set(metrics)
    for pair in ([wanted] if wanted else []) + list(PARETO_PAIRS):
        if pair[0] in have and pair[1] in have:
            return pair
    return (metrics[0], metrics[1]) if len(metrics) >= 2 else None


def pareto_plot_svg(points: Mapping[str, tuple[float, float]], *, axes: tuple[str, str],
                    directions: tuple[Direction, Direction], highlight: str, size: int = 380,
                    references: Collection[str] = ()) -> str:
    """Scatter of models on two metrics; the Pareto front is joined and drawn in blue;
    ``references`` (reference models) are drawn in grey, never on the front."""
    front = pareto_front(points, directions, references=references)
    pad_l, pad_b, pad_t, pad_r = 60, 40, 24, 20
    xs = [p[0] for p in points.values()]
    ys = [p[1] for p in points.values()]
    xlo, xhi = _ticks(min(xs), max(xs))
    ylo, yhi = _ticks(min(ys), max(ys))

    def px(v: float) -> float:
        return pad_l + (v - xlo) / (xhi - xlo) * (size - pad_l - pad_r)

    def py(v: float) -> float:
        return size - pad_b - (v - ylo) / (yhi - ylo) * (size - pad_b - pad_t)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
             f'font-family="sans-serif" font-size="11">',
             f'<rect width="{size}" height="{size}" fill="white"/>',
             f'<text x="4" y="14" font-weight="bold">Pareto front: {_e(axes[0])} vs '
             f'{_e(axes[1])}</text>',
             f'<line x1="{pad_l}" y1="{size - pad_b}" x2="{size - pad_r}" y2="{size - pad_b}" '
             'stroke="#999"/>',
             f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{size - pad_b}" stroke="#999"/>',
             f'<text x="{(size + pad_l) / 2:.0f}" y="{size - 6}" text-anchor="middle">'
             f'{_e(axes[0])} {directions[0].arrow}</text>',
             f'<text x="12" y="{(size - pad_b + pad_t) / 2:.0f}" text-anchor="middle" '
             f'transform="rotate(-90 12 {(size - pad_b + pad_t) / 2:.0f})">{_e(axes[1])} '
             f'{directions[1].arrow}</text>']
    for v, anchor in ((xlo, "start"), (xhi, "end")):
        parts.append(f'<text x="{px(v):.1f}" y="{size - pad_b + 14}" text-anchor="{anchor}" '
                     f'fill="#666">{_e(format_number(v))}</text>')
    for v in (ylo, yhi):
        parts.append(f'<text x="{pad_l - 4}" y="{py(v) + 4:.1f}" text-anchor="end" '
                     f'fill="#666">{_e(format_number(v))}</text>')
    ordered = sorted((points[n] for n in front), key=lambda p: p[0])
    if len(ordered) > 1:
        path = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in ordered)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{FRONT}" '
                     'stroke-dasharray="4 3"/>')
    dots = {name: (px(a), py(b)) for name, (a, b) in points.items()}
    labels = {name: f'{name[:18]}{" *" if name in front else ""}' for name in points}
    placed = place_labels(dots, labels, size=size)
    for name, (x, y) in dots.items():
        color = (HIGHLIGHT if name == highlight else FRONT if name in front
                 else REFERENCE if name in references else BASE)
        lx, ly, anchor = placed[name]
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{color}"/>'
                     f'<text class="label" x="{lx:.1f}" y="{ly:.1f}" '
                     f'text-anchor="{anchor}" fill="{color}">{_e(labels[name])}</text>')
    parts.append("</svg>")
    return "".join(parts)


CHAR_W, LINE_H = 6.2, 11.0  # an 11-px sans-serif label: width per character, height


def label_box(x: float, y: float, anchor: str, text: str) -> tuple[float, float, float, float]:
    """``(left, top, right, bottom)`` of a label drawn at ``(x, y)`` (its baseline)."""
    width = CHAR_W * len(text)
    left = x - width if anchor == "end" else x
    return left, y - LINE_H + 2, left + width, y + 2


def place_labels(dots: Mapping[str, tuple[float, float]], labels: Mapping[str, str], *,
                 size: int) -> dict[str, tuple[float, float, str]]:
    """Each dot's label position ``(x, y, text-anchor)``: the first of eight spots around the
    dot (right above, right below, left above, left below, then further out) whose box
    overlaps no label placed before it and no dot, inside the picture; else the first spot."""
    spots = [(7, -6, "start"), (7, 14, "start"), (-7, -6, "end"), (-7, 14, "end"),
             (7, -18, "start"), (7, 26, "start"), (-7, -18, "end"), (-7, 26, "end")]
    boxes: list[tuple[float, float, float, float]] = []
    dot_boxes = [(x - 5, y - 5, x + 5, y + 5) for x, y in dots.values()]

    def clear(box: tuple[float, float, float, float]) -> bool:
        inside = box[0] >= 0 and box[1] >= 16 and box[2] <= size and box[3] <= size
        return inside and not any(box[0] < o[2] and o[0] < box[2] and box[1] < o[3]
                                  and o[1] < box[3] for o in boxes + dot_boxes)

    out = {}
    for name, (x, y) in sorted(dots.items(), key=lambda item: (item[1][1], item[1][0])):
        choice = spots[0]
        for dx, dy, anchor in spots:
            if clear(label_box(x + dx, y + dy, anchor, labels[name])):
                choice = (dx, dy, anchor)
                break
        out[name] = (x + choice[0], y + choice[1], choice[2])
        boxes.append(label_box(*out[name], labels[name]))
    return out


# ------------------------------------------------------------------ the page
def _head(cells: Sequence[str], left: int = 2) -> str:
    return "<thead><tr>" + "".join(
        f'<th class="l">{_e(h)}</th>' if i < left else f"<th>{_e(h)}</th>"
        for i, h in enumerate(cells)) + "</tr></thead>"


def _own_cells(comp: Comparison) -> list[str]:
    rec = comp.record
    value = "not estimable" if rec.not_estimable else format_number(rec.value)
    return [f'<td class="l">{_e(Direction.of(rec).arrow)}</td>',
            f'<td class="l">{_e(comp.metric)}</td>', f"<td>{_e(value)}</td>",
            f"<td>[{_e(format_number(rec.ci_low))}, {_e(format_number(rec.ci_high))}]</td>"]


def _rank(comp: Comparison) -> str:
    text = "" if comp.rank is None or comp.ranked < 2 else f"{comp.rank}/{comp.ranked}"
    return f'<td class="rank">{_e(text)}</td>'


def _row(comp: Comparison, cells: Sequence[str]) -> str:
    best = ' class="best"' if comp.rank == 1 and comp.ranked > 1 else ""
    return f"<tr{best}>" + "".join(cells) + "</tr>"


def _metrics_table(names: list[str], comparisons: list[Comparison]) -> str:
    """The compact table: each metric, its interval, its rank and the best baseline."""
    head = ["", "metric", "value", "95% CI"] + (["rank", "best baseline"] if names else [])
    rows = []
    for comp in comparisons:
        cells = _own_cells(comp)
        if names:
            best = comp.best()
            text = "" if best is None else \
                f"{best[0]} {format_pm(best[1].value, best[1].halfwidth)}"
            cells += [_rank(comp), f'<td class="l">{_e(text)}</td>']
        where = f'<td class="space">{_e(where_measured(comp.record))}</td>'
        rows.append(_row(comp, [*cells, where]))
    return (f'<div class="scroll"><table id="metrics">{_head([*head, "kind / space"])}<tbody>'
            + "".join(rows) + "</tbody></table></div>")


def _matrix_table(names: list[str], comparisons: list[Comparison]) -> str:
    """Every baseline in its own column; it scrolls inside its own box."""
    head = ["", "metric", "value", "95% CI", "n", "unit", "rank", *names]
    rows = []
    for comp in comparisons:
        rec = comp.record
        cells = [*_own_cells(comp), f"<td>{_e(rec.n)}</td>", f"<td>{_e(rec.unit)}</td>",
                 _rank(comp)]
        for name in names:
            r = comp.baselines.get(name)
            text = "" if r is None else format_pm(r.value, r.halfwidth)
            cells.append(f"<td>{_e(text + (' †' if name in comp.mismatched else ''))}</td>")
        rows.append(_row(comp, cells))
    return (f'<div class="scroll" id="matrix"><table id="matrix-table">{_head(head)}<tbody>'
            + "".join(rows) + "</tbody></table></div>")


def _png_width(data: bytes) -> int | None:
    """Width in pixels from a PNG's header, or ``None`` when it is not a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24:
        return None
    return int.from_bytes(data[16:20], "big")


def _figure(data: bytes, alt: str, caption: str) -> str:
    """A pixel picture shown at twice its size (at most 640 px, at most the page's width)."""
    natural = _png_width(data)
    style = f"--w:{min(2 * natural, 640)}px" if natural else ""
    return (f"<figure>{_img(data, 'image/png', alt, 'pix', style)}"
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _kv_table(items: Sequence[tuple[str, Any]], table_id: str) -> str:
    body = "".join(f'<tr><th class="l">{_e(k)}</th><td class="l">{_e(v)}</td></tr>'
                   for k, v in items)
    return f'<table id="{table_id}">{body}</table>'


def build_report(result: Mapping[str, Any], *, baselines: Sequence[BoardRow] = (),
                 board: str | Path | None = None, samples_png: bytes | None = None,
                 neighbours_png: bytes | None = None, samples_shown: int | None = None,
                 pairs_shown: int | None = None,
                 pareto: tuple[str, str] | None = None, passages: Sequence[str] = ()) -> str:
    """Pure: the report's HTML text.

    Args:
        result: a ``results.json`` dictionary.
        baselines: board rows of the bundled baselines on the same dataset.
        board: where the baselines came from (shown).
        samples_png, neighbours_png: PNG bytes of the sample grid and the nearest-training-
            neighbour pairs, or ``None`` when not written.
        samples_shown, pairs_shown: how many samples and pairs the pictures show (captions).
        pareto: the two metrics of the Pareto plot (default: the first of
            :data:`PARETO_PAIRS` that the run has).
        passages: a few generated text passages (decoded; shown escaped, as text).
    """
    model, data, prov = result["model"], result["dataset"], result.get("provenance", {})
    names, comparisons = compare_with_baselines(result, baselines)
    measured = records(result)
    title = f"gmbench: {model['name']} on {data['name']}"
    out = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
           f"<h1>{_e(title)}</h1>",
           f'<p class="note">seed {_e(result.get("seed"))}, {_e(result.get("n_samples"))} '
           f'samples; dataset sha256 {_e(str(data.get("sha256"))[:12])}, model sha256 '
           f'{_e(str(model.get("sha256"))[:12])}</p>',
           "<h2>Metrics</h2>", _metrics_table(names, comparisons),
           '<p class="note">↑ higher is better, ↓ lower is better, ◎ closest to the ideal is '
           'best; intervals are 95% (see ci_method in results.json)'
           + ("; best baseline: value ± 95% half-width" + (f", from {_e(board)}" if board
                                                            else "")
              + "; rank among this model and the baselines (1 = best)" if names else "")
           + "".join(f"; feature space {_e(space)}" for space in feature_spaces(
               measured)) + ".</p>"]
    scoring = text_scoring_line(measured)
    if scoring:
        out.append(f'<p class="note">{_e(scoring)}</p>')
    memo = memorization_line(measured)
    if memo:
        out.append(f"<p><b>{_e(memo)}</b></p>")
    if not names:
        out.append(f'<p class="note">No baselines for {_e(data["name"])}'
                   + (f" (looked for {_e(board)})" if board else "") + ".</p>")
    if result.get("skipped"):
        out.append('<p class="note">Skipped: ' + "; ".join(
            f"{_e(k)} ({_e(v)})" for k, v in result["skipped"].items()) + "</p>")

    where = f"{model['name']} on {data['name']}, seed {result.get('seed')}"
    out.append("<h2>Samples</h2>")
    if passages:
        out.append(f'<p class="note">The first {len(passages)} generated passages of {_e(where)} '
                   "(UTF-8; undecodable bytes shown as \ufffd).</p>")
        out += [f'<pre class="passage">{_e(text)}</pre>' for text in passages]
    elif samples_png:
        if data.get("kind") == "image":  # not a metric: the dataset's kind
            shown = f"{samples_shown} of the {result.get('n_samples')} samples" \
                if samples_shown else "Samples"
            caption = f"{shown} of {where} (in the order drawn)."
        else:
            caption = (f"Density of the {result.get('n_samples')} samples of {where} "
                       "(2-D histogram, darker = more).")
        out.append(_figure(samples_png, "sample grid", caption))
    else:
        out.append('<p class="note">No sample grid (the model does not sample, or samples '
                   "were not drawn).</p>")
    out.append("<h2>Nearest training neighbours</h2>")
    if neighbours_png:
        count = f"The {pairs_shown} samples" if pairs_shown else "The samples"
        out.append(_figure(neighbours_png, "samples beside their nearest training examples",
                           f"{count} of {where} nearest to a training example (left of each "
                           "pair) beside that example (right): the memorization check's "
                           "closest pairs."))
    else:
        out.append('<p class="note">No neighbour pairs (neighbours.png was not written: the '
                   "memorization metrics did not run).</p>")
    if names:
        out.append("<h2>Every baseline</h2>" + _matrix_table(names, comparisons)
                   + '<p class="note">Value ± 95% half-width of each baseline\'s most recent '
                   "evaluation; † measured in another feature space, on another number of "
                   "samples or under another protocol version of the metric, not ranked. "
                   "The table "
                   "scrolls sideways.</p>")

    out.append("<h2>Against the baselines</h2><div class=\"plots\">")
    for comp in comparisons:
        out.append(_img(metric_plot_svg(comp).encode(), "image/svg+xml",
                        f"{comp.metric} against the baselines"))
    out.append("</div>")

    pair = pick_pareto_pair([c.metric for c in comparisons], pareto)
    if pair is not None:
        own = {c.metric: c.record for c in comparisons}
        points: dict[str, tuple[float, float]] = {}
        x, y = own[pair[0]].value, own[pair[1]].value
        if x is not None and y is not None:
            points["this model"] = (float(x), float(y))
        chosen = latest_rows(baselines)
        ds = neutralise(str(data["name"]))
        by_metric = {c.metric: c for c in comparisons}
        for name in names:
            # the rows the table compares with; one of another protocol is not comparable
            if any(name in by_metric[m].other_protocol for m in pair):
                continue
            a, b = (by_metric[m].baselines.get(name) for m in pair)
            if a is not None and b is not None and a.value is not None and b.value is not None:
                points[name] = (a.value, b.value)
        if len(points) >= 1:
            directions = (Direction.of(own[pair[0]]), Direction.of(own[pair[1]]))
            refs = {r.model for r in chosen.values() if r.dataset == ds and r.reference}
            plot = pareto_plot_svg(points, axes=pair, directions=directions,
                                   highlight="this model", references=refs)
            out.append("<h2>Pareto front</h2>" + _img(plot.encode(), "image/svg+xml",
                                                      f"Pareto plot of {pair[0]} and {pair[1]}"))
            out.append('<p class="note">Blue: not dominated on both metrics (marked *); red: '
                       "this model; grey: reference models (the memorizer, the ground "
                       "truth), shown for orientation, never on the front.</p>")

    out.append("<h2>Provenance</h2>")
    out.append(_kv_table([
        ("model", model.get("name")), ("model file", model.get("path")),
        ("model sha256", model.get("sha256")), ("dataset", data.get("name")),
        ("dataset sha256", data.get("sha256")), ("seed", result.get("seed")),
        ("n_samples", result.get("n_samples")), *sorted(prov.items())], "provenance"))
    out.append(f"<script>{SCRIPT}</script></body></html>\n")
    return "\n".join(out)
