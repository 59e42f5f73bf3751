"""Extraction benchmark (run by hand, not in CI): ratios measured side by side in one run.

    python benchmarks/extract.py [--data ../shared/data/medsamples] [--quick]

1. pipeline efficiency = end-to-end images/s / model-only images/s (model fed pre-made tensors),
   for the full-size ViT-B/16 architecture and for a small encoder (MobileNetV3-S);
2. speedup over the naive pipeline peers use (torchvision ImageFolder + DataLoader with default
   workers, PIL transforms) on the same model and files, and the cosine agreement of features;
3. warm-cache re-run speedup;
4. peak RSS of a cached extraction of 2,000 vs 20,000 synthetic images (separate processes).

Weights are random (throughput does not depend on their values). ``--device cuda`` with
``--precision bf16 --batch-size 256`` measures (1) on a GPU.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from medprobe.datasets import manifest
from medprobe.encoders import create_encoder, get_spec
from medprobe.features import extract

HERE = Path(__file__).resolve().parent
SMALL = get_spec("random-resnet50").model_copy(
    update={
        "name": "random-mobilenetv3-small",
        "aliases": (),
        "architecture": "mobilenetv3_small_100",
        "embed_dim": 1024,
    }
)
BIG = get_spec("random-vit-b16")


def model_only_rate(encoder, n: int, batch_size: int) -> float:
    size = encoder.spec.preprocessing.image_size
    batch = torch.randn(batch_size, 3, size, size)
    encoder.encode_images(batch[:2])  # warm-up
    start, done = time.perf_counter(), 0
    while done < n:
        encoder.encode_images(batch)
        done += batch_size
    return done / (time.perf_counter() - start)


def end_to_end(encoder, dataset, batch_size: int, cache=None, workers=None):
    start = time.perf_counter()
    fs = extract(
        encoder,
        dataset,
        batch_size=batch_size,
        cache=cache,
        num_workers=workers,
        show_progress=False,
    )
    return len(fs) / (time.perf_counter() - start), fs


def naive(encoder, root: Path, batch_size: int):
    """What peers do: ImageFolder + DataLoader (default: no workers) + PIL transforms."""
    folder = ImageFolder(str(root), transform=encoder.preprocess)
    loader = DataLoader(folder, batch_size=batch_size)
    start, chunks = time.perf_counter(), []
    for images, _ in loader:
        chunks.append(encoder.encode_images(images))
    features = np.concatenate(chunks)
    paths = [Path(p).relative_to(root).as_posix() for p, _ in folder.samples]
    return len(features) / (time.perf_counter() - start), dict(zip(paths, features, strict=True))


def rss_child(n: int) -> None:
    from medprobe.datasets import synthetic

    with tempfile.TemporaryDirectory() as cache:
        extract(
            create_encoder("handcrafted"),
            synthetic("dermoscopy", n, size=64),
            cache=cache,
            batch_size=64,
            num_workers=0,
            show_progress=False,
        )
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def peak_rss_kb(n: int) -> int:
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(n)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(out.strip().splitlines()[-1])


def cosine_agreement(a: dict, fs) -> float:
    # Manifest ids carry the dataset folder ("busi_256/benign/x.png"); ImageFolder's do not.
    b = {i.split("/", 1)[1]: f for i, f in zip(fs.ids, np.asarray(fs.features), strict=True)}
    sims = [np.dot(a[k], b[k]) / (np.linalg.norm(a[k]) * np.linalg.norm(b[k])) for k in b]
    return float(np.min(sims))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared/data/medsamples")
    parser.add_argument("--subset", default="ham10000_600x450,odir_fundus_400,busi_256")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--quick", action="store_true", help="skip the 20,000-image RSS run")
    parser.add_argument("--rss-child", type=int)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return

    names = args.subset.split(",")
    print(f"torch threads: {torch.get_num_threads()}, device: {args.device}")
    for spec in (SMALL, BIG):
        encoder = create_encoder(spec, device=args.device, precision=args.precision)
        for name in names:
            ds = manifest(args.data / "MANIFEST.csv", where={"dataset": name})
            model_rate = model_only_rate(encoder, max(64, len(ds) // 2), args.batch_size)
            e2e_rate, fs = end_to_end(encoder, ds, args.batch_size)
            line = (
                f"{spec.name:26s} {name:18s} n={len(ds):4d}  model-only {model_rate:7.1f} img/s"
                f"  end-to-end {e2e_rate:7.1f} img/s  efficiency {e2e_rate / model_rate:.2f}"
            )
            if args.device == "cpu":
                naive_rate, naive_features = naive(encoder, args.data / name, args.batch_size)
                line += (
                    f"  naive {naive_rate:7.1f} img/s  speedup {e2e_rate / naive_rate:.2f}x"
                    f"  min cosine {cosine_agreement(naive_features, fs):.6f}"
                )
            print(line, flush=True)

    encoder = create_encoder(SMALL)
    ds = manifest(args.data / "MANIFEST.csv")
    with tempfile.TemporaryDirectory() as cache:
        cold = time.perf_counter()
        extract(encoder, ds, cache=cache, show_progress=False)
        cold = time.perf_counter() - cold
        warm = time.perf_counter()
        extract(encoder, ds, cache=cache, show_progress=False)
        warm = time.perf_counter() - warm
    print(
        f"warm cache ({len(ds)} images): cold {cold:.2f} s, warm {warm * 1000:.1f} ms, "
        f"speedup {cold / warm:.0f}x"
    )

    small, large = peak_rss_kb(2000), None if args.quick else peak_rss_kb(20000)
    if large:
        print(
            f"peak RSS: 2,000 images {small / 1024:.0f} MB, 20,000 images {large / 1024:.0f} MB,"
            f" growth {100 * (large - small) / small:.1f}%"
        )


if __name__ == "__main__":
    main()
