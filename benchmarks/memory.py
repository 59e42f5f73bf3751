"""Memory and time benchmark of every analysis (run by hand, not in CI).

    python benchmarks/memory.py [--sizes 1000,10000,20000,100000] [--dim 768] [--only knn,...]

Each (analysis, N) runs in its own process on random class-structured float32 features
(10 classes, 30% test images), so peak RSS (``resource.getrusage``) is that analysis's alone.
Prints one table: peak RSS per N (the features themselves are N x D x 4 bytes of it, 0.29 GB
at 100k x 768, besides the interpreter and imports), its growth from 10k to 100k, the analysis's
own share (``+``: peak minus the RSS once the features exist) and its growth, CPU seconds per N
and the CPU-time exponent from 20k to 100k (``log(t100k / t20k) / log 5``; targets: < 3 GB,
growth < 2x, exponent <= 1.2).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

import numpy as np

ANALYSES = (
    "separability",
    "knn",
    "linear_probe",
    "few_shot",
    "geometry",
    "similarity",
    "zero_shot",
    "pca",
    "tsne",
    "umap",
)


def features(n: int, dim: int, seed: int = 0, classes: int = 10):
    from medprobe.features import FeatureSet

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    centres = rng.standard_normal((classes, dim), dtype=np.float32) * 0.35
    x = rng.standard_normal((n, dim), dtype=np.float32)
    for start in range(0, n, 8192):  # in place: a full-size temporary would set the peak
        x[start : start + 8192] += centres[labels[start : start + 8192]]
    splits = np.where(rng.random(n) < 0.3, "test", "train")
    return FeatureSet(
        x,
        labels,
        np.array([f"i{i}" for i in range(n)]),
        splits,
        [f"c{i}" for i in range(classes)],
        f"model{seed}",
        "bench",
    )


class _TextEncoder:
    """A stand-in text tower for zero-shot: fixed random class embeddings."""

    name, has_text = "bench", True

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def identity(self) -> str:  # what the text-embedding memo keys on
        return f"bench-text-{self.dim}"

    def encode_texts(self, texts):
        rng = np.random.default_rng(abs(hash(tuple(texts))) % 2**32)
        return rng.standard_normal((len(texts), self.dim)).astype(np.float32)


def run(analysis: str, n: int, dim: int) -> None:
    """The child: one analysis on N x D features (plus a second model for similarity)."""
    from medprobe.analysis import (
        CrossModel,
        Embedding2D,
        FewShotProbe,
        Geometry,
        KNNProbe,
        LinearProbe,
        Separability,
        ZeroShot,
    )
    from medprobe.analysis.probes import search_neighbours

    fs = features(n, dim)
    other = features(n, dim, seed=1) if analysis == "similarity" else None
    if other is not None:
        other = type(fs)(
            other.features, fs.labels, fs.ids, fs.splits, fs.class_names, "model1", "bench"
        )
    ready = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.process_time()
    if analysis == "separability":
        Separability().fit(fs)
    elif analysis == "knn":  # one search, every k of the study
        found = search_neighbours(fs, 20)
        for k in (1, 5, 10, 20):
            KNNProbe(k=k).fit(fs, found)
    elif analysis == "linear_probe":
        LinearProbe().fit(fs)
    elif analysis == "few_shot":
        FewShotProbe().fit(fs)
    elif analysis == "geometry":
        Geometry().fit(fs, np.random.default_rng(0).standard_normal((10, dim)))
    elif analysis == "similarity":
        CrossModel().fit([fs, other])
    elif analysis == "zero_shot":
        ZeroShot(_TextEncoder(dim), templates=["a photo of {}."]).fit(fs)
    else:
        Embedding2D(analysis).fit(fs)
    cpu = time.process_time() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak": peak, "extra": peak - ready, "cpu": cpu}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,20000,100000")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--only", default=",".join(ANALYSES))
    parser.add_argument("--child", nargs=2, metavar=("ANALYSIS", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run(args.child[0], int(args.child[1]), args.dim)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    gib = 1024**3
    head = " ".join(f"{f'RSS {s // 1000}k':>9s}" for s in sizes)
    extra_head = " ".join(f"{f'+{s // 1000}k':>8s}" for s in sizes)
    cpu_head = " ".join(f"{f'cpu {s // 1000}k':>9s}" for s in sizes)
    print(
        f"{'analysis':14s} {head} {'10k->100k':>9s} {extra_head} {'10k->100k':>9s} "
        f"{cpu_head} {'exp 20k-100k':>12s}",
        flush=True,
    )
    for analysis in args.only.split(","):
        peaks, extras, cpus = {}, {}, {}
        for n in sizes:
            done = subprocess.run(
                [sys.executable, __file__, "--dim", str(args.dim), "--child", analysis, str(n)],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                print(f"{analysis} at {n}: failed\n{done.stderr[-2000:]}", flush=True)
                peaks[n] = extras[n] = cpus[n] = math.nan
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            peaks[n], extras[n], cpus[n] = (
                result["peak"] / gib,
                result["extra"] / gib,
                result["cpu"],
            )
        growth = peaks.get(100_000, math.nan) / peaks.get(10_000, math.nan)
        extra_growth = extras.get(100_000, math.nan) / max(extras.get(10_000, math.nan), 1e-3)
        exponent = math.log(cpus.get(100_000, math.nan) / cpus.get(20_000, math.nan)) / math.log(5)
        rss = " ".join(f"{peaks[n]:7.2f}GB" for n in sizes)
        extra = " ".join(f"{extras[n]:6.2f}GB" for n in sizes)
        cpu = " ".join(f"{cpus[n]:8.1f}s" for n in sizes)
        print(
            f"{analysis:14s} {rss} {growth:8.2f}x {extra} {extra_growth:8.2f}x {cpu} "
            f"{exponent:12.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
