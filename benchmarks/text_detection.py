"""Text-detection benchmark (run by hand, not in CI): every registered detector side by side.

    python benchmarks/text_detection.py [--data ../shared/data/medsamples] [--detector NAME ...]
        [--misses]

- **real**: the hand-annotated images of ``benchmarks/data/text_annotations.json`` (202 with
  burned-in words, 202 without). Image-level precision and recall of "has a word", box recall
  (an annotated word line counts as found when one detected word, or the union of the detected
  words that touch it, overlaps it with IoU >= 0.3), and the same image-level numbers for
  non-word marks. Words read inside ``ignore`` regions (too faint to tell) or inside a caliper
  (its numbers) are not scored.
- **synthetic**: the overlay renderer's text (medprobe.overlay) at heights 1-15% of the image,
  8 colours, 0/90/180/270-degree rotations, mirrored or not, on a text-free real image of each
  modality (224 px); the box is known. Placements where the text would not stand out from the
  image (luminance contrast < 60) are moved, so every word is legible to a person. Box recall
  per height, and over text taller than 2% of the image.
- **speed**: images/s of the synthetic set (224 px) with as many threads as cores (2 here).

``--misses`` lists, for each detector, the real images it gets wrong, with what it read.
``--every N`` scores every N-th image of both sets only (for a slow detector: easyocr-craft
reads one crop at a time); its numbers are then not comparable with a full run's.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from medprobe.audit import create_detector, detector_names
from medprobe.audit.boxes import rect_iou
from medprobe.datasets.pixels import to_rgb
from medprobe.overlay import OverlaySpec, TextOverlay

ANNOTATIONS = Path(__file__).parent / "data" / "text_annotations.json"
HEIGHTS = (0.01, 0.015, 0.02, 0.03, 0.05, 0.08, 0.12, 0.15)
COLOURS = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "grey": (150, 150, 150),
    "yellow": (255, 230, 0),
    "green": (0, 220, 60),
    "cyan": (0, 220, 255),
    "red": (230, 30, 30),
    "magenta": (230, 0, 230),
}
#: turn (degrees counter-clockwise) and mirror of the text
ORIENTATIONS = [(turn, mirror) for turn in (0, 90, 180, 270) for mirror in (False, True)]
WORDS = ("L", "R", "AP", "LT", "RT AXILLA", "PORTABLE", "SUPINE", "DAY 6", "2019-04-12",
         "ID 582941", "LEFT BREAST", "ERECT")  # fmt: skip
SHORT = ("L", "R", "AP", "LT", "D", "RT2", "DAY 6", "ERECT")  # fit at 8-15% of the height
#: a text-free image of each modality (from the annotated text-free set)
BACKGROUNDS = {
    "dermoscopy": "ham10000_224/bcc/ISIC_0031539.jpg",
    "histopathology": "lc25000_lung_histopathology_224/lung_n/lungn3251.jpeg",
    "fundus": "odir_fundus_400/glaucoma/1266_left.jpg",
    "breast ultrasound": "busi_256/normal/normal (12).png",
    "chest x-ray": "kermany_pediatric_cxr_224/NORMAL/IM-0006-0001.jpeg",
}
IOU = 0.3


def _rects(entries) -> list[list[float]]:
    return [e[:4] for e in entries]


def box_found(truth: list[float], found: list[tuple[int, int, int, int]]) -> bool:
    """One detection, or the union of those touching ``truth``, overlaps it by IoU >= 0.3."""
    if any(rect_iou(truth, f) >= IOU for f in found):
        return True
    touching = [f for f in found if rect_iou(truth, f) > 0]
    if not touching:
        return False
    union = [min(f[0] for f in touching), min(f[1] for f in touching)]
    union += [max(f[2] for f in touching), max(f[3] for f in touching)]
    return rect_iou(truth, union) >= IOU


def _outside(rect, ignore) -> bool:
    """Not mostly inside an ignored region."""
    area = max(1, (rect[2] - rect[0]) * (rect[3] - rect[1]))
    for g in ignore:
        w = min(rect[2], g[2]) - max(rect[0], g[0])
        h = min(rect[3], g[3]) - max(rect[1], g[1])
        if max(0, w) * max(0, h) > 0.5 * area:
            return False
    return True


def real_set(root: Path) -> list[tuple[str, Image.Image, dict]]:
    data = json.loads(ANNOTATIONS.read_text())["images"]
    return [
        (f"{folder}/{name}", Image.open(root / folder / name).copy(), entry)
        for folder, images in data.items()
        for name, entry in images.items()
    ]


def _rotate(image: Image.Image, turn: int) -> Image.Image:
    return image.rotate(turn, expand=True) if turn else image


def synthetic_set(root: Path) -> list[tuple[str, Image.Image, list[float], float]]:
    """(name, image, true box, height) for every modality x height x orientation; colours and
    words cycle."""
    out = []
    k = 0
    for modality, path in BACKGROUNDS.items():
        background = to_rgb(Image.open(root / path)).resize((224, 224), Image.LANCZOS)
        for height in HEIGHTS:
            for turn, mirror in ORIENTATIONS:
                word = (WORDS if height < 0.08 else SHORT)[k % 8]
                # the k-th colour, or the next one that stands out from this image
                for step in range(len(COLOURS)):
                    colour_name = list(COLOURS)[(k + step) % len(COLOURS)]
                    rendered = _render(
                        background, word, height, COLOURS[colour_name], turn, mirror, k
                    )
                    if rendered is not None:
                        break
                k += 1
                image, box = rendered
                name = f"{modality} h={height:.3f} {colour_name} turn={turn} mirror={mirror} {word}"
                out.append((name, image, box, height))
    return out


def _render(background, word, height, colour, turn, mirror, seed):
    """Draw ``word`` upright on the background turned back, then turn (and mirror) it all."""
    canvas = _rotate(background, -turn)
    if mirror:
        canvas = ImageOps.mirror(canvas)
    grey = np.asarray(canvas.convert("L"), float)
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    for attempt in range(20):  # a placement where the word stands out from the image
        spec = OverlaySpec(
            source="fixed", text=word, size=height, position="random", colour=colour,
            outline=None, margin=0.02, seed=seed * 100 + attempt,
        )  # fmt: skip
        overlay = TextOverlay(spec, ["x"])
        drawn, (x0, y0, x1, y1) = overlay.draw(canvas, word, 0)
        under = grey[max(0, y0) : y1, max(0, x0) : x1]
        if under.size and abs(np.median(under) - luminance) >= 60:
            break
    else:
        return None
    if mirror:
        drawn = ImageOps.mirror(drawn)
        x0, x1 = canvas.width - x1, canvas.width - x0
    drawn = _rotate(drawn, turn)
    corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)
    corners = _turn_points(corners, turn, canvas.size)
    box = [*corners.min(axis=0), *corners.max(axis=0)]
    return drawn, box


def _turn_points(points: np.ndarray, turn: int, size: tuple[int, int]) -> np.ndarray:
    """Where points of an image of ``size`` go when it is turned ``turn`` degrees
    counter-clockwise with ``expand=True``."""
    w, h = size
    x, y = points[:, 0], points[:, 1]
    return {
        0: np.stack([x, y], 1),
        90: np.stack([y, w - x], 1),
        180: np.stack([w - x, h - y], 1),
        270: np.stack([h - y, x], 1),
    }[turn]


def run(detector, images: list[Image.Image]) -> tuple[list, float]:
    workers = os.cpu_count() or 1
    detector.detect(images[0])  # load the model before timing
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        found = list(pool.map(detector.detect, images))
    return found, len(images) / (time.perf_counter() - start)


def score_real(items, found) -> dict:
    tp = fp = fn = 0
    mtp = mfp = mfn = 0
    boxes = hit = 0
    wrong = []
    for (name, _, entry), boxes_found in zip(items, found, strict=True):
        # a caliper's numbers ("1", "2") are digits drawn with the mark: reading them is
        # neither right nor wrong
        ignore = entry.get("ignore", []) + [
            m[:4] for m in entry.get("marks", []) if m[4] == "caliper"
        ]
        words = [b for b in boxes_found if b.kind == "word" and _outside(b.rect, ignore)]
        marks = [b for b in boxes_found if b.kind == "mark"]
        truth, truth_marks = entry.get("words", []), entry.get("marks", [])
        if truth and words:
            tp += 1
        elif words:
            fp += 1
            wrong.append(
                (name, "false positive", [(b.text, round(b.confidence, 2)) for b in words])
            )
        elif truth:
            fn += 1
            wrong.append((name, "missed", [t[4] for t in truth]))
        mtp += bool(truth_marks) and bool(marks)
        mfp += not truth_marks and bool(marks)
        mfn += bool(truth_marks) and not marks
        rects = [b.rect for b in words]
        for t in _rects(truth):
            boxes += 1
            hit += box_found(t, rects)
    return {
        "precision": tp / max(1, tp + fp),
        "recall": tp / max(1, tp + fn),
        "box recall": hit / max(1, boxes),
        "mark precision": mtp / max(1, mtp + mfp),
        "mark recall": mtp / max(1, mtp + mfn),
        "wrong": wrong,
    }


def score_synthetic(items, found) -> dict:
    hits = {h: [] for h in HEIGHTS}
    misses = []
    for (name, _, box, height), boxes_found in zip(items, found, strict=True):
        ok = box_found(box, [b.rect for b in boxes_found if b.kind == "word"])
        hits[height].append(ok)
        if not ok:
            misses.append(name)
    tall = [ok for h in HEIGHTS if h > 0.02 for ok in hits[h]]
    return {
        "by height": {h: float(np.mean(v)) for h, v in hits.items()},
        "recall > 2%": float(np.mean(tall)),
        "recall": float(np.mean([ok for v in hits.values() for ok in v])),
        "misses": misses,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="../shared/data/medsamples")
    parser.add_argument("--detector", action="append", choices=detector_names())
    parser.add_argument("--misses", action="store_true")
    parser.add_argument("--every", type=int, default=1, help="score every N-th image only")
    args = parser.parse_args()
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    root = Path(args.data)
    real, synthetic = real_set(root)[:: args.every], synthetic_set(root)[:: args.every]
    print(f"real: {len(real)} images ({sum('words' in e for _, _, e in real)} with words); "
          f"synthetic: {len(synthetic)} images at 224 px; {os.cpu_count()} cores")  # fmt: skip
    results = {}
    for name in args.detector or detector_names():
        detector = create_detector(name)
        found_real, _ = run(detector, [im for _, im, _ in real])
        found_synth, speed = run(detector, [im for _, im, _, _ in synthetic])
        results[name] = (
            score_real(real, found_real),
            score_synthetic(synthetic, found_synth),
            speed,
        )
        print(f"  {name}: done", flush=True)
    names = list(results)
    rows = [
        ("real: image precision", lambda r: r[0]["precision"]),
        ("real: image recall", lambda r: r[0]["recall"]),
        ("real: box recall (IoU >= 0.3)", lambda r: r[0]["box recall"]),
        ("real: mark image precision", lambda r: r[0]["mark precision"]),
        ("real: mark image recall", lambda r: r[0]["mark recall"]),
        ("synthetic: box recall, all", lambda r: r[1]["recall"]),
        ("synthetic: box recall, > 2% tall", lambda r: r[1]["recall > 2%"]),
        *[
            (f"synthetic: box recall, {h:.1%} tall", lambda r, h=h: r[1]["by height"][h])
            for h in HEIGHTS
        ],
        ("images/s (224 px)", lambda r: r[2]),
    ]
    print(f"\n| {'':34s} | " + " | ".join(f"{n:>13s}" for n in names) + " |")
    print(f"|{'-' * 36}|" + "|".join("-" * 15 for _ in names) + "|")
    for label, get in rows:
        cells = " | ".join(f"{get(results[n]):13.3f}" for n in names)
        print(f"| {label:34s} | {cells} |")
    if args.misses:
        for name in names:
            print(f"\n{name}: real images it gets wrong")
            for image, why, what in results[name][0]["wrong"]:
                print(f"  {why:15s} {image}: {what}")
            print(f"{name}: synthetic words it misses")
            for miss in results[name][1]["misses"]:
                print(f"  {miss}")


if __name__ == "__main__":
    main()
