"""The HTML report: one self-contained file (no network, no external files) with the metrics
table beside the baselines, the sample grid, the memorization neighbour pairs and plots.

Pictures are embedded as ``data:`` URIs: the PNGs that ``gmbench evaluate`` wrote, and plots
drawn here as SVG (one dot-and-whisker chart per metric against the baselines, and the Pareto
plot of two metrics). A small inline script marks every ``<img>`` with ``data-decoded`` once
the page has loaded, so a headless browser can verify that every picture decodes.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gmbench.direction import Direction
from gmbench.files import atomic_write
from gmbench.present.compare import Comparison, compare_with_baselines, pareto_front
from gmbench.present.format import format_number, format_pm
from gmbench.present.verdicts import memorization_line
from gmbench.storage.leaderboard import BoardRow, latest_rows, neutralise

__all__ = ["PARETO_PAIRS", "build_report", "metric_plot_svg", "pareto_plot_svg",
           "pick_pareto_pair", "write_report"]

# Pairs that trade off against each other, in order of preference for the Pareto plot.
PARETO_PAIRS = (("precision", "recall"), ("density", "coverage"), ("bits_per_dim", "fid"),
                ("nll", "fid"), ("bits_per_dim", "kid"), ("bits_per_dim", "mmd"),
                ("nll", "mmd"), ("fid", "copy_rate"), ("bits_per_dim", "copy_rate"),
                ("nll", "copy_rate"), ("bits_per_dim", "nll_train"), ("nll", "nll_train"))

HIGHLIGHT, BASE, FRONT = "#c0392b", "#34495e", "#2980b9"

CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
table{border-collapse:collapse;font-size:13px;margin:1em 0}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td.l,th.l{text-align:left}
td.space{white-space:normal;max-width:14em;font-size:11px;text-align:left}
tr.best td.rank{font-weight:bold;color:#1e8449}
.plots{display:flex;flex-wrap:wrap;gap:12px}
img.pix{image-rendering:pixelated;border:1px solid #ccc}
.note{color:#666;font-size:12px}
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
});
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _img(data: bytes, mime: str, alt: str, css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    return f'<img{cls} alt="{_e(alt)}" src="{_data_uri(data, mime)}">'


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
    if rec.get("value") is not None:
        entries.append(("this model", float(rec["value"]), rec.get("ci_low"), rec.get("ci_high"),
                        True))
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
             f'<tspan font-weight="normal" fill="#666">({_e(rec.get("unit", ""))}, '
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
                    directions: tuple[Direction, Direction], highlight: str, size: int = 380
                    ) -> str:
    """Scatter of models on two metrics; the Pareto front is joined and drawn in blue."""
    front = pareto_front(points, directions)
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
    for name, (a, b) in points.items():
        color = HIGHLIGHT if name == highlight else FRONT if name in front else BASE
        parts.append(f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="5" fill="{color}"/>'
                     f'<text x="{px(a) + 7:.1f}" y="{py(b) - 6:.1f}" fill="{color}">'
                     f'{_e(name[:18])}{" *" if name in front else ""}</text>')
    parts.append("</svg>")
    return "".join(parts)


# ------------------------------------------------------------------ the page
def _metrics_table(names: list[str], comparisons: list[Comparison]) -> str:
    head = ["", "metric", "value", "95% CI", "n", "unit", "kind / space"]
    if names:
        head += ["rank", *names]
    rows = ["<table id=\"metrics\"><thead><tr>"
            + "".join(f'<th class="l">{_e(h)}</th>' if i < 2 else f"<th>{_e(h)}</th>"
                      for i, h in enumerate(head)) + "</tr></thead><tbody>"]
    for comp in comparisons:
        rec = comp.record
        best = ' class="best"' if comp.rank == 1 and comp.ranked > 1 else ""
        cells = [Direction.of(rec).arrow, comp.metric]
        cells += [format_number(rec.get("value")),
                  f"[{format_number(rec.get('ci_low'))}, {format_number(rec.get('ci_high'))}]",
                  str(rec.get("n")), rec.get("unit") or "",
                  rec.get("kind") or rec.get("feature_space") or ""]
        tds = [f'<td class="l">{_e(c)}</td>' if i < 2 else
               f'<td class="space">{_e(c)}</td>' if i == 6 else f"<td>{_e(c)}</td>"
               for i, c in enumerate(cells)]
        if names:
            rank = "" if comp.rank is None or comp.ranked < 2 else f"{comp.rank}/{comp.ranked}"
            tds.append(f'<td class="rank">{_e(rank)}</td>')
            for name in names:
                r = comp.baselines.get(name)
                text = "" if r is None else format_pm(r.value, r.halfwidth)
                if name in comp.mismatched:
                    text += " †"
                tds.append(f"<td>{_e(text)}</td>")
        rows.append(f"<tr{best}>" + "".join(tds) + "</tr>")
    rows.append("</tbody></table>")
    return "".join(rows)


def _kv_table(items: Sequence[tuple[str, Any]], table_id: str) -> str:
    body = "".join(f'<tr><th class="l">{_e(k)}</th><td class="l">{_e(v)}</td></tr>'
                   for k, v in items)
    return f'<table id="{table_id}">{body}</table>'


def build_report(result: Mapping[str, Any], *, baselines: Sequence[BoardRow] = (),
                 board: str | Path | None = None, samples_png: bytes | None = None,
                 neighbours_png: bytes | None = None,
                 pareto: tuple[str, str] | None = None) -> str:
    """Pure: the report's HTML text.

    Args:
        result: a ``results.json`` dictionary.
        baselines: board rows of the bundled baselines on the same dataset.
        board: where the baselines came from (shown).
        samples_png, neighbours_png: PNG bytes of the sample grid and the nearest-training-
            neighbour pairs, or ``None`` when not written.
        pareto: the two metrics of the Pareto plot (default: the first of
            :data:`PARETO_PAIRS` that the run has).
    """
    model, data, prov = result["model"], result["dataset"], result.get("provenance", {})
    names, comparisons = compare_with_baselines(result, baselines)
    title = f"gmbench: {model['name']} on {data['name']}"
    out = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
           f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
           f"<h1>{_e(title)}</h1>",
           "<h2>Metrics</h2>", _metrics_table(names, comparisons),
           '<p class="note">↑ higher is better, ↓ lower is better, ◎ closest to the ideal is '
           'best; intervals are 95% (see '
           "ci_method in results.json); baselines show value ± 95% half-width"
           + (f", from {_e(board)}" if board else "")
           + "; rank among this model and the baselines (1 = best); † another feature space, "
             "not ranked.</p>"]
    memo = memorization_line(dict(result["metrics"]))
    if memo:
        out.append(f"<p><b>{_e(memo)}</b></p>")
    if not names:
        out.append(f'<p class="note">No baselines for {_e(data["name"])}'
                   + (f" (looked for {_e(board)})" if board else "") + ".</p>")
    if result.get("skipped"):
        out.append('<p class="note">Skipped: ' + "; ".join(
            f"{_e(k)} ({_e(v)})" for k, v in result["skipped"].items()) + "</p>")

    out.append("<h2>Samples</h2>")
    out.append(_img(samples_png, "image/png", "sample grid", "pix") if samples_png else
               '<p class="note">No sample grid (the model does not sample, or samples were '
               "not drawn).</p>")
    out.append("<h2>Nearest training neighbours</h2>")
    out.append(_img(neighbours_png, "image/png", "samples beside their nearest training "
                    "examples", "pix") + '<p class="note">Each sample beside its nearest '
               "training example (memorization check).</p>" if neighbours_png else
               '<p class="note">No neighbour pairs (neighbours.png was not written: the '
               "memorization metrics did not run).</p>")

    out.append("<h2>Against the baselines</h2><div class=\"plots\">")
    for comp in comparisons:
        out.append(_img(metric_plot_svg(comp).encode(), "image/svg+xml",
                        f"{comp.metric} against the baselines"))
    out.append("</div>")

    pair = pick_pareto_pair([c.metric for c in comparisons], pareto)
    if pair is not None:
        own = {c.metric: c.record for c in comparisons}
        points: dict[str, tuple[float, float]] = {}
        if own[pair[0]].get("value") is not None and own[pair[1]].get("value") is not None:
            points["this model"] = (float(own[pair[0]]["value"]), float(own[pair[1]]["value"]))
        chosen = latest_rows(baselines)
        ds = neutralise(str(data["name"]))
        for name in names:
            a, b = chosen.get((ds, name, pair[0])), chosen.get((ds, name, pair[1]))
            if a is not None and b is not None and a.value is not None and b.value is not None:
                points[name] = (a.value, b.value)
        if len(points) >= 1:
            directions = (Direction.of(own[pair[0]]), Direction.of(own[pair[1]]))
            plot = pareto_plot_svg(points, axes=pair, directions=directions,
                                   highlight="this model")
            out.append("<h2>Pareto front</h2>" + _img(plot.encode(), "image/svg+xml",
                                                      f"Pareto plot of {pair[0]} and {pair[1]}"))
            out.append('<p class="note">Blue: not dominated on both metrics (marked *); red: '
                       "this model.</p>")

    out.append("<h2>Provenance</h2>")
    out.append(_kv_table([
        ("model", model.get("name")), ("model file", model.get("path")),
        ("model sha256", model.get("sha256")), ("dataset", data.get("name")),
        ("dataset sha256", data.get("sha256")), ("seed", result.get("seed")),
        ("n_samples", result.get("n_samples")), *sorted(prov.items())], "provenance"))
    out.append(f"<script>{SCRIPT}</script></body></html>\n")
    return "\n".join(out)


def write_report(out_dir: str | Path, result: Mapping[str, Any], *,
                 baselines: Sequence[BoardRow] = (), board: str | Path | None = None) -> Path:
    """Write ``report.html`` into ``out_dir``, embedding its ``samples.png`` and
    ``neighbours.png`` when present; returns the path."""
    out = Path(out_dir)

    def read(name: str) -> bytes | None:
        p = out / name
        return p.read_bytes() if p.is_file() else None

    text = build_report(result, baselines=baselines, board=board,
                        samples_png=read("samples.png"), neighbours_png=read("neighbours.png"))
    path = out / "report.html"
    with atomic_write(path) as handle:
        handle.write(text)
    return path
