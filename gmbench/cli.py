"""The ``gmbench`` command line (SPEC section 7)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gmbench.errors import GmbenchError

__all__ = ["main"]


def _metric_list(text: str) -> list[str]:
    return [k.strip() for k in text.split(",") if k.strip()]


def cmd_evaluate(args: argparse.Namespace) -> int:
    from gmbench.datasets import get_dataset
    from gmbench.evaluation import EvalConfig, evaluate
    from gmbench.model import build_model, import_model_file
    from gmbench.pictures import image_grid, save_png, scatter_image
    from gmbench.table import render_table

    if args.device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise GmbenchError("--device cuda was given but torch sees no CUDA device; use "
                               "--device cpu.")
    module, source = import_model_file(args.model)
    name = args.dataset or source.dataset or "digits"
    dataset = get_dataset(name, args.data_root)
    model = build_model(module, source, dataset.info, args.device)
    config = EvalConfig(seed=args.seed, n_samples=args.n_samples, batch_size=args.batch_size,
                        dequant_samples=args.dequant_samples, max_train=args.max_train,
                        device=args.device)
    run, ev = evaluate(model, dataset, config, args.metrics)
    out = Path(args.out or Path("gmbench-out") / f"{source.name}-{dataset.info.name}")
    run.write_json(out / "results.json")
    run.write_csv(out / "results.csv")
    written = ["results.json", "results.csv"]
    if "sample" in model.capabilities and (args.metrics is None or "samples" in ev._memo):
        grid = ev.samples[:64] if "samples" in ev._memo else model.sample(
            64, seed=args.seed, batch_size=64)
        if dataset.info.kind == "image":
            save_png(image_grid(grid, dataset.info), out / "samples.png")
            written.append("samples.png")
        elif dataset.info.shape == (2,):
            pts = ev.samples if "samples" in ev._memo else grid
            save_png(scatter_image(pts), out / "samples.png")
            written.append("samples.png")
    print(render_table(run.to_dict()))
    print(f"wrote {', '.join(written)} to {out}/")
    return 0


def cmd_datasets(_args: argparse.Namespace) -> int:
    from gmbench.datasets import list_datasets

    specs = list_datasets()
    width = max(len(s.name) for s in specs)
    for spec in specs:
        print(f"{spec.name.ljust(width)}  {spec.description} [{spec.source}]")
    return 0


def cmd_metrics(_args: argparse.Namespace) -> int:
    from gmbench.metrics import METRICS

    width = max(len(k) for k in METRICS)
    for key, metric in METRICS.items():
        needs = " + ".join(metric.needs) or " or ".join(metric.needs_any)
        arrow = "↑" if metric.higher_is_better else "↓"
        print(f"{arrow} {key.ljust(width)}  needs {needs:<18} [{metric.unit}] {metric.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gmbench", description="Evaluate generative models with uncertainty and provenance.")
    from gmbench import __version__
    parser.add_argument("--version", action="version", version=f"gmbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("evaluate", help="evaluate a model file on a dataset")
    ev.add_argument("model", help="path to model.py (defines load(dataset, device) or model)")
    ev.add_argument("--dataset", help="dataset name (default: the file's DATASET, else digits)")
    ev.add_argument("--metrics", type=_metric_list, default=None,
                    help="comma-separated metric keys (default: every applicable metric)")
    ev.add_argument("--n-samples", type=int, default=None,
                    help="samples for sample metrics (default: test-split size, at most 10000)")
    ev.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    ev.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ev.add_argument("--out", help="output directory (default gmbench-out/<model>-<dataset>)")
    ev.add_argument("--data-root", help="directory holding dataset files (IDX for MNIST-like)")
    ev.add_argument("--batch-size", type=int, default=500, help="examples per model call")
    ev.add_argument("--dequant-samples", type=int, default=1,
                    help="dequantization draws per test point for dequantized models; K > 1 "
                         "uses the importance-weighted log-mean-exp (default 1)")
    ev.add_argument("--max-train", type=int, default=10_000,
                    help="train examples scored for nll_train (seeded subset; default 10000)")
    ev.set_defaults(func=cmd_evaluate)

    sub.add_parser("datasets", help="list datasets").set_defaults(func=cmd_datasets)
    sub.add_parser("metrics", help="list metrics and what each needs").set_defaults(
        func=cmd_metrics)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("n_samples", "batch_size", "dequant_samples", "max_train"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    try:
        return int(args.func(args))
    except GmbenchError as exc:
        print(f"gmbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("gmbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
