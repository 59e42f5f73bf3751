"""Analysis benchmark (run by hand, not in CI): N = 50,000 x D = 768 features, 10 classes.

    python benchmarks/analyses.py [--n 50000] [--dim 768]

Prints the wall time of the full separability + kNN + linear-probe suite (target < 90 s on 2
cores), the faiss-vs-scikit-learn kNN speed ratio at equal results, and t-SNE time for 20,000
points.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from medprobe.analysis import Embedding2D, KNNProbe, LinearProbe, Separability
from medprobe.features import FeatureSet


def features(n: int, dim: int, classes: int, seed: int = 0) -> FeatureSet:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    centres = rng.standard_normal((classes, dim)) * 0.35
    x = (rng.standard_normal((n, dim)) + centres[labels]).astype(np.float32)
    splits = np.where(rng.random(n) < 0.3, "test", "train")
    return FeatureSet(
        x,
        labels,
        np.array([str(i) for i in range(n)]),
        splits,
        [f"c{i}" for i in range(classes)],
        "synthetic",
        "bench",
    )


def timed(label: str, fn):
    start = time.perf_counter()
    out = fn()
    took = time.perf_counter() - start
    print(f"{label:44s} {took:7.1f} s", flush=True)
    return out, took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--tsne-points", type=int, default=20_000)
    args = parser.parse_args()
    fs = features(args.n, args.dim, args.classes)
    print(f"N={args.n} D={args.dim} classes={args.classes}")

    _, t_sep = timed("separability (silhouette on 10k, CIs)", lambda: Separability().fit(fs))
    fast, t_knn = timed("kNN k=10 (faiss exact)", lambda: KNNProbe(k=10).fit(fs))
    _, t_lin = timed("linear probe (C on a hold-out, CIs)", lambda: LinearProbe().fit(fs))
    print(f"{'full suite':44s} {t_sep + t_knn + t_lin:7.1f} s  (target < 90 s)")

    slow, t_sk = timed(
        "kNN k=10 (scikit-learn brute force)",
        lambda: KNNProbe(k=10, faiss_threshold=float("inf")).fit(fs),
    )
    same = np.array_equal(fast.y_pred_, slow.y_pred_)
    agree = np.mean(fast.y_pred_ == slow.y_pred_)
    print(
        f"faiss vs scikit-learn kNN: {t_sk / t_knn:.1f}x faster, predictions equal: {same} "
        f"({agree:.4%} agree)"
    )

    sub = features(args.tsne_points, args.dim, args.classes, seed=1)
    timed(
        f"t-SNE (openTSNE, FFT) on {args.tsne_points} points",
        lambda: Embedding2D("tsne", max_points=args.tsne_points).fit(sub),
    )


if __name__ == "__main__":
    main()
