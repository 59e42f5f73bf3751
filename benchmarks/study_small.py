"""A new user's first study, end to end (run by hand, not in CI): 240 images, 4 classes,
224 px, the three offline encoders (pixels, handcrafted, random-vit), analyses separability,
knn, linear_probe, few_shot, geometry, similarity and 2-D views pca / tsne / umap.

    python benchmarks/study_small.py [--n 240] [--keep DIR]

Runs the study twice in fresh processes: cold (empty feature store, nothing compiled) and warm
(everything cached), and prints where the time went (targets: < 60 s cold, < 5 s warm on 2
cores). The stage split is measured from outside the library (wrapping its extraction, every
registered analysis, the 2-D reducer and the report), so the same script times older versions.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ANALYSES = ["separability", "knn", "linear_probe", "few_shot", "geometry", "similarity"]


def make_images(root: Path, n: int, size: int = 224) -> None:
    """``n`` synthetic images in 4 class folders (dermoscopy- and ultrasound-like lesions,
    benign and malignant)."""
    from medprobe.datasets import synthetic

    for kind in ("dermoscopy", "ultrasound"):
        ds = synthetic(kind, n // 2, difficulty="medium", size=size, seed=1)
        for record in ds:
            folder = root / f"{kind}-{ds.class_names[record.label]}"
            folder.mkdir(parents=True, exist_ok=True)
            ds.load_image(record).save(folder / f"{record.id}.png")


def child(study: Path, out: Path) -> None:
    """One run of the study in this process; prints the stage times as JSON."""
    start = time.perf_counter()
    from functools import wraps

    import medprobe.study.runner as runner
    from medprobe.analysis.embedding import Embedding2D
    from medprobe.report.html import write_report
    from medprobe.study.config import load_config

    stages: dict[str, float] = {"imports": time.perf_counter() - start}

    def timed(stage, fn):
        @wraps(fn)
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                stages[stage] = stages.get(stage, 0.0) + time.perf_counter() - t

        return wrapper

    runner.extract = timed("extraction", runner.extract)
    try:
        from medprobe.analysis.registry import analyses
    except ImportError:  # versions before the analysis registry: one call ran every analysis
        runner.analyse = timed("analyses (all)", runner.analyse)
    else:
        for entry in analyses():
            entry.__dict__["run"] = timed(entry.name, entry.run)
    fit = Embedding2D.fit

    def fit_timed(self, fs):
        return timed(f"embedding {self.method}", fit)(self, fs)

    Embedding2D.fit = fit_timed
    config = load_config(study)
    (out / "report.html").unlink(missing_ok=True)
    t = time.perf_counter()
    outcome = runner.run_study(config, out, show_progress=False)
    stages["study"] = time.perf_counter() - t
    if not (out / "report.html").exists():  # older versions wrote the report inside the run
        timed("report", write_report)(outcome, out)
    stages["total"] = time.perf_counter() - start
    print(json.dumps(stages))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=240)
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temp one)")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    work = args.keep or Path(tempfile.mkdtemp(prefix="medprobe-small-"))
    work.mkdir(parents=True, exist_ok=True)
    images = work / "images"
    if not images.exists():
        make_images(images, args.n)
    study = work / "study.yaml"
    study.write_text(
        yaml.safe_dump(
            {
                "name": "small study",
                "models": ["pixels", "handcrafted", "random-vit"],
                "datasets": [{"name": "small", "path": str(images), "modality": "synthetic"}],
                "analyses": ANALYSES,
                "embeddings": ["pca", "tsne", "umap"],
                "cache": str(work / "cache"),
                "thumbnails": 240,
            }
        )
    )
    runs = {}
    for name in ("cold", "warm"):
        t = time.perf_counter()
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(study), str(work / "out")],
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - t
        if done.returncode != 0:
            sys.exit(f"{name} run failed:\n{done.stderr[-3000:]}")
        runs[name] = {**json.loads(done.stdout.strip().splitlines()[-1]), "process": wall}
    stages = [s for s in runs["cold"] if s not in ("study", "total", "process")]
    print(f"{'stage':22s} {'cold':>8s} {'warm':>8s}")
    for stage in stages:
        cold, warm = runs["cold"].get(stage, 0.0), runs["warm"].get(stage, 0.0)
        print(f"{stage:22s} {cold:7.1f}s {warm:7.1f}s")
    study_other = {
        name: run["study"] - sum(run.get(s, 0.0) for s in stages if s not in ("imports", "report"))
        for name, run in runs.items()
    }
    print(f"{'other (runner, I/O)':22s} {study_other['cold']:7.1f}s {study_other['warm']:7.1f}s")
    print(
        f"{'total (process)':22s} {runs['cold']['process']:7.1f}s {runs['warm']['process']:7.1f}s"
        "   (targets: < 60 s cold, < 5 s warm)"
    )
    print(f"work folder: {work}")


if __name__ == "__main__":
    main()
