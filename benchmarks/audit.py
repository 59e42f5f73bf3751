"""Text-audit benchmark (run by hand, not in CI), on the real images in ../shared/data.

    python benchmarks/audit.py [--data ../shared/data/medsamples]

For each dataset, side by side in one run: images/s of medprobe's detector (text lines
localised, one Tesseract call per image) and of plain whole-image Tesseract (``--psm 11``, both
polarities, the naive approach), with the ratio, and how many images each finds text in; then
the leakage fit (cross-validation + 100 permutations) time.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytesseract
from PIL import ImageOps

from medprobe.audit import TextDetector, TextLeakage, detect_text
from medprobe.datasets import open_dataset

DATASETS = ("covid19_radiography_224", "lc25000_lung_histopathology_224", "busi_256")


def naive(image) -> bool:
    """Whole-image Tesseract, both polarities: any confident word of 2+ letters/digits?"""
    grey = image.convert("L")
    for page in (grey, ImageOps.invert(grey)):
        data = pytesseract.image_to_data(
            page, config="--psm 11", output_type=pytesseract.Output.DICT
        )
        for text, conf in zip(data["text"], data["conf"], strict=True):
            if float(conf) >= 85 and sum(ch.isalnum() for ch in text) >= 2:
                return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="../shared/data/medsamples")
    args = parser.parse_args()
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    workers = os.cpu_count() or 1
    print(
        f"{'dataset':34s} {'medprobe img/s':>15s} {'naive img/s':>12s} {'ratio':>6s} "
        f"{'text (medprobe)':>16s} {'text (naive)':>13s} {'leakage s':>10s}"
    )
    for name in DATASETS:
        dataset = open_dataset(Path(args.data) / name)
        images = [dataset.load_image(r) for r in dataset.records]
        start = time.perf_counter()
        found = detect_text(dataset, TextDetector(), workers=workers)  # no cache: timed
        ours = time.perf_counter() - start
        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            plain = list(pool.map(naive, images))
        theirs = time.perf_counter() - start
        start = time.perf_counter()
        TextLeakage().fit(found)
        leak = time.perf_counter() - start
        n = len(images)
        print(
            f"{name:34s} {n / ours:15.1f} {n / theirs:12.1f} {theirs / ours:6.2f} "
            f"{int(found.has_text.sum()):>9d}/{n:<6d} {sum(plain):>6d}/{n:<6d} {leak:10.1f}"
        )


if __name__ == "__main__":
    main()
