"""How much the number of importance samples moves the VAE baseline's likelihood.

    python benchmarks/iwae_k.py [--dataset mnist-binarized] [--n 500] [--k 1,32,256,1024]

The bundled ``vae`` reports the IWAE-32 estimate of ``log p(x)`` (``vae_elbo``: the ELBO); the
papers report IWAE with k = 5,000 importance samples. On a seeded subset of ``--n`` test images
this scores the same images by the ELBO and by IWAE-k for each ``k`` (one draw of the samples
per image and k, seeded), and prints a Markdown table: the mean negative log-likelihood in
nats with its 95% interval, and the mean paired difference from IWAE-32 with its interval
(paired over the same images: the interval of the gap, not of either number). IWAE-k is a
lower bound of ``log p(x)`` that rises with k in expectation (Burda et al. 2016), so the
differences say how far IWAE-32 is from the larger-k numbers. The table in docs/baselines.md
is this script's output.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gmbench.datasets import get_dataset  # noqa: E402

Z95 = 1.959963984540054


def _interval(values: np.ndarray) -> tuple[float, float]:
    mean = float(values.mean())
    half = Z95 * float(values.std(ddof=1)) / math.sqrt(len(values))
    return mean - half, mean + half


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist-binarized")
    parser.add_argument("--n", type=int, default=500, help="test images (a seeded subset)")
    parser.add_argument("--k", default="1,32,256,1024", help="importance samples")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from gmbench_baselines.vae import IWAE_CHUNK, build

    data = get_dataset(args.dataset)
    model = build(data.info, "cpu")
    pick = np.sort(np.random.default_rng(0).choice(len(data.test), args.n, replace=False))
    x = torch.from_numpy(data.test.x[pick].astype(np.int64))
    ks = [int(k) for k in args.k.split(",")]
    nll: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    with torch.no_grad():
        tic = time.perf_counter()
        nll["ELBO"] = -np.concatenate([model.elbo(x[i:i + 100], torch.Generator().manual_seed(
            i)).numpy() for i in range(0, len(x), 100)])
        seconds["ELBO"] = time.perf_counter() - tic
        for k in ks:
            tic = time.perf_counter()
            rows = []
            for i in range(0, len(x), 50):
                gen = torch.Generator().manual_seed(k * 100_003 + i)
                chunks = [model._log_weights(x[i:i + 50], min(IWAE_CHUNK, k - j), gen)
                          for j in range(0, k, IWAE_CHUNK)]
                rows.append((torch.logsumexp(torch.cat(chunks), 0) - math.log(k)).numpy())
            nll[f"IWAE-{k}"] = -np.concatenate(rows)
            seconds[f"IWAE-{k}"] = time.perf_counter() - tic
    print(f"{args.dataset}: {args.n} test images (seeded subset), vae baseline "
          f"(weights sha256 {_weights_sha(data.info.name)[:12]}); nats per image\n")
    print("| estimate | -log p(x), nats [95% CI] | minus IWAE-32, paired [95% CI] | seconds |")
    print("|---|---|---|---|")
    ref = nll.get("IWAE-32")
    for name, values in nll.items():
        lo, hi = _interval(values)
        diff = "-" if ref is None or name == "IWAE-32" else \
            "{:+.2f} [{:+.2f}, {:+.2f}]".format(float((values - ref).mean()),
                                                *_interval(values - ref))
        print(f"| {name} | {values.mean():.2f} [{lo:.2f}, {hi:.2f}] | {diff} | "
              f"{seconds[name]:.0f} |")
    return 0


def _weights_sha(dataset: str) -> str:
    import json

    record = Path(__file__).resolve().parent.parent / "baselines" / "weights" / \
        f"vae-{dataset}.json"
    return json.loads(record.read_text())["weights_sha256"]


if __name__ == "__main__":
    sys.exit(main())
