"""Reference points for the Parzen-window score: real digits, and real digits pulled towards their class mean.

Real training digits (1000 per class) stand in for a perfect generator; shrinking each towards its
digit's mean image stands in for what the truncation trick does to a generator's samples. Same protocol
as the GAN stages (sigma chosen on validation, mean +- s.e. over the 10k test images), so the numbers
sit beside metrics/mnist_cgan_*.json. Theis et al. (2016) make the same point with k-means centroids.

    python scripts/parzen_references.py --data data/mnist/mnist.npz
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from pipeline.mnist_cgan import Params
from tagan import config
from tagan.metrics import parzen_log_likelihood, select_parzen_sigma
from tagan.readers.mnist import load_npz


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/mnist/mnist.npz")
    ap.add_argument("--per-class", type=int, default=1000)
    ap.add_argument("--shrink", type=float, nargs="*", default=[1.0, 0.9, 0.8, 0.7])
    args = ap.parse_args()
    sigmas = np.asarray(config.load(Params, "mnist_cgan.strong").sigma_grid)  # the stage's own grid
    mnist = load_npz(args.data)
    rng = np.random.default_rng(0)
    labels = mnist["y_train"]
    idx = np.concatenate(
        [rng.choice(np.flatnonzero(labels == k), args.per_class, replace=False) for k in range(10)]
    )
    real = mnist["x_train"][idx].reshape(len(idx), -1).astype(np.float32) / 255  # (N, 784)
    y = labels[idx]
    means = np.stack([real[y == k].mean(0) for k in range(10)])  # (10, 784)
    val = mnist["x_val"].reshape(-1, 784).astype(np.float32) / 255
    test = mnist["x_test"].reshape(-1, 784).astype(np.float32) / 255
    rows = []
    for a in args.shrink:
        samples = a * real + (1 - a) * means[y]  # a = 1: the real digits themselves
        sigma, _ = select_parzen_sigma(samples, val, sigmas)
        ll, se = parzen_log_likelihood(samples, test, sigma)
        rows.append({"shrink": a, "parzen_ll": round(ll, 1), "parzen_se": round(se, 1), "sigma": sigma})
        print(json.dumps(rows[-1]), flush=True)
    print("\n| samples | Parzen LL (nats) | sigma |\n|---|---|---|")
    for r in rows:
        name = (
            "real training digits"
            if r["shrink"] == 1
            else f"real digits, {1 - r['shrink']:.0%} towards their class mean"
        )
        print(f"| {name} | {r['parzen_ll']} ± {r['parzen_se']} | {r['sigma']} |")


if __name__ == "__main__":
    main()
