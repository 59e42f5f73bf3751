"""``medprobe demo``: the bundled ``demo`` study, offline, in minutes."""

from __future__ import annotations

from pathlib import Path

from medprobe.analysis.outcome import StudyOutcome
from medprobe.progress import collected_warnings
from medprobe.report.html import write_report
from medprobe.study.config import load_config
from medprobe.study.runner import run_study


def run_demo(
    out: Path,
    *,
    n: int | None = None,
    size: int | None = None,
    seed: int = 0,
    layers: bool = True,
    show_progress: bool = True,
) -> tuple[StudyOutcome, dict[str, Path]]:
    """Run the bundled demo study (optionally with ``n`` images of ``size`` px per dataset) and
    write results.csv, results.parquet, report.html, figures/ and run.json to ``out``.
    ``layers=False`` leaves out the layer-wise section (its per-layer analyses about double
    the analysis time of a quick run)."""
    config = load_config("demo")
    if not layers:
        models = [m.model_copy(update={"layers": None}) for m in config.models]
        config = config.model_copy(update={"models": models, "layers": None})
    overrides = {k: v for k, v in (("n", n), ("size", size)) if v is not None}
    datasets = [
        d.model_copy(update={"synthetic": {**d.synthetic, **overrides}}) for d in config.datasets
    ]
    config = config.model_copy(
        update={"datasets": datasets, "seed": seed, "cache": str(out / "cache")}
    )
    outcome = run_study(config, out, show_progress=show_progress)
    with collected_warnings():
        files = write_report(outcome, out)
    return outcome, files
