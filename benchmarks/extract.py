"""Extraction benchmark (run by hand, not in CI): ratios measured side by side in one run.

    python benchmarks/extract.py [--data ../shared/data/medsamples] [--quick]

1. pipeline efficiency = end-to-end images/s / model-only images/s (model fed pre-made tensors),
   for the full-size ViT-B/16 architecture and for a small encoder (MobileNetV3-S), on every
   shared set;
2. speedup over the pipeline peers use (torchvision ImageFolder + DataLoader + the encoder's PIL
   preprocess + the plain timm model in NCHW under no_grad), with 0 and with 2 workers, on the
   same weights and files, the peer's model-only rate (the share of the speedup that is our
   channels-last forward), and the minimum cosine between our features and theirs (the
   reference PIL preprocess);
3. warm-cache re-run speedup;
4. peak RSS of a cached extraction of 2,000 vs 20,000 synthetic images for each baseline
   encoder, and of a 20,000-image WebDataset stream (separate processes).

Weights are random (throughput does not depend on their values). On a GPU:
``--device cuda --precision bf16 --batch-size 256`` (then ViT-L/14 is measured too).
"""

from __future__ import annotations

import argparse
import io
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from medprobe.datasets import manifest, synthetic
from medprobe.encoders import create_encoder, get_spec
from medprobe.encoders.timm_loader import build_timm_module
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
LARGE = BIG.model_copy(
    update={"name": "random-vit-l14", "aliases": (), "architecture": "vit_large_patch14_224"}
)
SETS = (
    "ham10000_600x450",
    "odir_fundus_400",
    "busi_256",
    "ham10000_224",
    "kermany_pediatric_cxr_224",
    "covid19_radiography_224",
    "lc25000_lung_histopathology_224",
)


def build(spec, args):
    return create_encoder(spec, device=args.device, precision=args.precision)


def model_only_rate(encoder, n: int, batch_size: int, forward=None) -> float:
    """Images/s of ``forward`` (default: the encoder's own) on pre-made normalised batches."""
    forward = forward or encoder.encode_images
    size = encoder.spec.preprocessing.image_size
    batch = torch.randint(0, 255, (batch_size, 3, size, size), dtype=torch.uint8)
    forward(encoder.normalize(batch))  # warm-up: oneDNN builds its kernels per input shape
    start, done = time.perf_counter(), 0
    while done < n:
        forward(encoder.normalize(batch))
        done += batch_size
    if getattr(encoder, "device", torch.device("cpu")).type == "cuda":
        torch.cuda.synchronize()
    return done / (time.perf_counter() - start)


def end_to_end(encoder, dataset, batch_size: int, cache=None):
    start = time.perf_counter()
    fs = extract(encoder, dataset, batch_size=batch_size, cache=cache, show_progress=False)
    return len(fs) / (time.perf_counter() - start), fs


def peer_forward(spec):
    """What peers run: the plain timm model (the same seeded weights) in torch's default NCHW
    layout under ``torch.no_grad``."""
    model = build_timm_module(spec).eval()

    def forward(images: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return model(images).numpy()

    return forward


def peer(encoder, forward, root: Path, batch_size: int, workers: int):
    """What peers do: ImageFolder + DataLoader + the encoder's PIL preprocess per image."""
    folder = ImageFolder(str(root), transform=encoder.preprocess)
    loader = DataLoader(folder, batch_size=batch_size, num_workers=workers)
    start, chunks = time.perf_counter(), []
    for images, _ in loader:
        chunks.append(forward(images))
    features = np.concatenate(chunks)
    paths = [Path(p).relative_to(root).as_posix() for p, _ in folder.samples]
    return len(features) / (time.perf_counter() - start), dict(zip(paths, features, strict=True))


def min_cosine(reference: dict, fs) -> float:
    # Manifest ids carry the dataset folder ("busi_256/benign/x.png"); ImageFolder's do not.
    ours = {i.split("/", 1)[1]: f for i, f in zip(fs.ids, np.asarray(fs.features), strict=True)}
    sims = [
        np.dot(reference[k], v) / (np.linalg.norm(reference[k]) * np.linalg.norm(v))
        for k, v in ours.items()
    ]
    return float(np.min(sims))


def _shards(n: int, folder: Path) -> str:
    """``n`` small synthetic JPEGs in WebDataset shards of 1,000."""
    data = synthetic("dermoscopy", n, size=64)
    for start in range(0, n, 1000):
        with tarfile.open(folder / f"{start // 1000:04d}.tar", "w") as tar:
            for record in data.records[start : start + 1000]:
                buffer = io.BytesIO()
                data.load_image(record).save(buffer, "JPEG", quality=90)
                for ext, payload in (
                    ("jpg", buffer.getvalue()),
                    ("cls", str(record.label).encode()),
                ):
                    info = tarfile.TarInfo(f"{record.id}.{ext}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    return str(folder / f"{{0000..{(n - 1) // 1000:04d}}}.tar")


def rss_child(kind: str, n: int) -> None:
    from medprobe.datasets import open_source

    with tempfile.TemporaryDirectory() as tmp:
        if kind == "webdataset":
            dataset, model = open_source("webdataset", _shards(n, Path(tmp))), "handcrafted"
        else:
            dataset, model = synthetic("dermoscopy", n, size=64), kind
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        extract(
            create_encoder(model),
            dataset,
            cache=Path(tmp) / "cache",
            batch_size=64,
            num_workers=0,
            show_progress=False,
        )
    print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def peak_rss_kb(kind: str, n: int) -> int:
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", kind, str(n)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(out.strip().splitlines()[-1].split()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared/data/medsamples")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--big-images", type=int, default=96, help="images per set for ViT")
    parser.add_argument("--quick", action="store_true", help="skip the 20,000-image RSS runs")
    parser.add_argument("--rss-only", action="store_true", help="only the RSS runs (part 4)")
    parser.add_argument("--rss-child", nargs=2)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child[0], int(args.rss_child[1]))
        return
    if args.rss_only:
        rss_table()
        return

    names = args.sets.split(",")
    print(f"torch threads: {torch.get_num_threads()}, device: {args.device} {args.precision}")
    print("1-2. efficiency (end-to-end / model-only) and speedup vs the peer pipeline")
    specs = (SMALL, BIG, LARGE) if args.device != "cpu" else (SMALL, BIG)
    for spec in specs:
        encoder = build(spec, args)
        for name in names:
            ds = manifest(args.data / "MANIFEST.csv", where={"dataset": name})
            if spec is not SMALL:  # the big models: fewer images, efficiency only
                ds.records = ds.records[: args.big_images]
            model_rate = model_only_rate(encoder, max(64, len(ds) // 2), args.batch_size)
            rate, fs = end_to_end(encoder, ds, args.batch_size)
            line = (
                f"  {spec.name:26s} {name:32s} n={len(ds):4d} model-only {model_rate:7.1f}/s "
                f"end-to-end {rate:7.1f}/s efficiency {rate / model_rate:.2f}"
            )
            if spec is SMALL and args.device == "cpu":
                theirs = peer_forward(spec)
                theirs_rate = model_only_rate(
                    encoder, max(64, len(ds) // 2), args.batch_size, theirs
                )
                line += f" | peer model-only {theirs_rate:7.1f}/s"
                for workers in (0, 2):
                    peer_rate, reference = peer(
                        encoder, theirs, args.data / name, args.batch_size, workers
                    )
                    line += f" | peer w={workers} {peer_rate:6.1f}/s x{rate / peer_rate:.2f}"
                line += f" | min cosine {min_cosine(reference, fs):.6f}"
            print(line, flush=True)

    encoder = build(SMALL, args)
    ds = manifest(args.data / "MANIFEST.csv", where={"dataset": "ham10000_224"})
    with tempfile.TemporaryDirectory() as cache:
        cold = time.perf_counter()
        extract(encoder, ds, cache=cache, show_progress=False)
        cold = time.perf_counter() - cold
        warm = time.perf_counter()
        extract(encoder, ds, cache=cache, show_progress=False)
        warm = time.perf_counter() - warm
    print(
        f"3. warm cache ({len(ds)} images): cold {cold:.2f} s, warm {warm * 1000:.1f} ms, "
        f"speedup {cold / warm:.0f}x"
    )

    if not args.quick:
        rss_table()


def rss_table() -> None:
    print("4. peak RSS of a cached extraction (separate processes)")
    for kind in ("pixels", "handcrafted", "webdataset"):
        small, large = peak_rss_kb(kind, 2000), peak_rss_kb(kind, 20000)
        print(
            f"  {kind:12s} 2,000 images {small / 1024:6.0f} MB   20,000 images "
            f"{large / 1024:6.0f} MB   growth {100 * (large - small) / small:+.1f}%",
            flush=True,
        )


if __name__ == "__main__":
    main()
