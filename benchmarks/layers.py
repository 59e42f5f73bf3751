"""Layer-wise extraction benchmark (run by hand, not in CI): all taps vs final only, side by
side in one run.

    python benchmarks/layers.py [--n 256] [--model random-vit-b16] [--batch-size 32]

For the same model and images, each measured in its own process (so peak RSS is its own):
1. ``final`` only (today's ``extract``) into a fresh store;
2. every tap (12 blocks + final of ViT-B/16) in one pass (``extract_layers``, blocks in
   float16) into a fresh store;
3. the layer-wise pass into a store that already holds ``final`` (what a study that adds
   ``layers:`` pays: final is reused, the blocks computed).
Printed: seconds, images/s, store size on disk, peak RSS, and the ratios all-taps / final.
Weights are random (cost does not depend on their values).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _worker(args: argparse.Namespace) -> None:
    from medprobe.datasets import synthetic
    from medprobe.encoders import create_encoder
    from medprobe.features import extract
    from medprobe.features.layers import extract_layers

    dataset = synthetic("dermoscopy", n=args.n, size=224)
    encoder = create_encoder(args.model)
    store = Path(args.store)
    if args.mode == "reuse":  # final first (not timed), then the layer-wise pass
        extract(encoder, dataset, cache=store, batch_size=args.batch_size, show_progress=False)
    before = _size(store) if store.exists() else 0
    start = time.perf_counter()
    if args.mode == "final":
        extract(encoder, dataset, cache=store, batch_size=args.batch_size, show_progress=False)
        taps = 1
    else:
        found = extract_layers(
            encoder, dataset, "all", cache=store, batch_size=args.batch_size, show_progress=False
        )
        taps = len(found)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {"seconds": seconds, "disk": _size(store) - before, "peak_rss": peak, "taps": taps}
        )
    )


def _measure(mode: str, args: argparse.Namespace, store: Path) -> dict:
    command = [
        sys.executable,
        __file__,
        "--worker",
        mode,
        "--store",
        str(store),
        "--n",
        str(args.n),
        "--model",
        args.model,
        "--batch-size",
        str(args.batch_size),
    ]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--model", default="random-vit-b16")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--worker", choices=("final", "all", "reuse"))
    parser.add_argument("--store")
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.mode = args.worker
        _worker(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        results = {m: _measure(m, args, Path(tmp) / m) for m in ("final", "all", "reuse")}
    print(f"{args.model}, {args.n} synthetic 224 px images, batch {args.batch_size}, CPU threads")
    print(f"{'run':<28}{'taps':>5}{'seconds':>9}{'img/s':>8}{'disk MB':>9}{'peak RSS MB':>13}")
    names = {
        "final": "final only (extract)",
        "all": "all taps, one pass",
        "reuse": "all taps, final reused",
    }
    for mode, r in results.items():
        print(
            f"{names[mode]:<28}{r['taps']:>5}{r['seconds']:>9.1f}{args.n / r['seconds']:>8.1f}"
            f"{r['disk'] / 1e6:>9.2f}{r['peak_rss'] / 1e6:>13.0f}"
        )
    final, every = results["final"], results["all"]
    print(
        f"all taps / final only: time x{every['seconds'] / final['seconds']:.2f}, "
        f"disk x{every['disk'] / final['disk']:.1f}, "
        f"peak RSS x{every['peak_rss'] / final['peak_rss']:.2f}"
    )


if __name__ == "__main__":
    main()
