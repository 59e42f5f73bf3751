"""Static figures for papers (matplotlib): PNG (300 dpi), PDF and SVG of every key view."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from medprobe._version import __version__
from medprobe.analysis.outcome import StudyOutcome
from medprobe.atomic import atomic_write
from medprobe.fingerprint import file_sha256, fingerprint
from medprobe.names import slug as safe_name
from medprobe.report.layers import cka_matrices, depth_curves
from medprobe.report.selection import KEY_METRICS, displayable, metric_name, select, slug, title
from medprobe.report.style import DOMAIN_LEGEND, chance_level, class_counts, model_styles

FORMATS = ("png", "pdf", "svg")
#: What journals' checks accept: TrueType (Type 42) fonts in PDFs, not Type 3; text kept as
#: text (editable) in SVGs.
RC = {"pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none", "font.family": "DejaVu Sans"}


def _save(fig, folder: Path, stem: str) -> list[Path]:
    paths = []
    with plt.rc_context(RC):
        for fmt in FORMATS:
            path = folder / f"{safe_name(stem)}.{fmt}"
            fig.savefig(path, dpi=300 if fmt == "png" else None, bbox_inches="tight")
            paths.append(path)
    plt.close(fig)
    return paths


def _legend_outside(ax, **options) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, **options)


def _styles(results: pd.DataFrame):
    pairs = results[["encoder", "domain"]].drop_duplicates().itertuples(index=False)
    return model_styles((p.encoder, p.domain) for p in pairs)


def embedding_grids(outcome: StudyOutcome, folder: Path) -> list[Path]:
    """One grid per dataset and reducer: a panel per model, points coloured by class."""
    paths = []
    keys = sorted({(v.dataset, v.method) for v in outcome.views})
    for dataset, method in keys:
        views = [v for v in outcome.views if v.dataset == dataset and v.method == method]
        classes = sorted({c for v in views for c in v.labels})
        colours = plt.get_cmap("tab10")
        cols = min(4, len(views))
        rows = int(np.ceil(len(views) / cols))
        fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
        for ax, view in zip(axes.flat, views, strict=False):
            coords = np.asarray(view.coords)
            labels = np.asarray(view.labels)
            for i, cls in enumerate(classes):
                member = labels == cls
                ax.scatter(
                    coords[member, 0],
                    coords[member, 1],
                    s=4,
                    alpha=0.7,
                    color=colours(i % 10),
                    label=cls,
                    rasterized=True,
                )
            ax.set_title(view.encoder, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in list(axes.flat)[len(views) :]:
            ax.axis("off")
        handles, names = axes.flat[0].get_legend_handles_labels()
        rows_needed = int(np.ceil(len(classes) / 6))
        fig.suptitle(f"{dataset} — {method.upper()}", fontsize=11)
        fig.tight_layout(rect=(0, 0.05 + 0.04 * rows_needed, 1, 0.95))
        fig.legend(  # below the panels, never over them
            handles,
            names,
            loc="lower center",
            ncol=min(len(classes), 6),
            fontsize=8,
            markerscale=3,
            frameon=False,
        )
        paths += _save(fig, folder, f"embeddings_{dataset}_{method}")
    return paths


def paper_metric_bars(results: pd.DataFrame, folder: Path, n_classes: dict[str, int]) -> list[Path]:
    """Grouped bars (dataset x model) with 95% CI whiskers; a dashed line at chance."""
    paths = []
    styles = _styles(results)
    for key in KEY_METRICS:
        metric = key[1]
        rows = select(results, *key)
        if rows.empty:
            continue
        datasets = list(dict.fromkeys(rows.dataset))
        encoders = list(dict.fromkeys(rows.encoder))
        width = 0.8 / len(encoders)
        fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(datasets) * len(encoders) * 0.35), 3.2))
        for j, encoder in enumerate(encoders):
            sub = rows[rows.encoder == encoder].set_index("dataset").reindex(datasets)
            x = np.arange(len(datasets)) + (j - (len(encoders) - 1) / 2) * width
            err = np.vstack([sub.value - sub.ci_low, sub.ci_high - sub.value])
            style = styles[encoder]
            ax.bar(
                x,
                sub.value,
                width,
                yerr=err,
                capsize=2,
                label=encoder,
                color=style.colour,
                hatch=style.hatch,
                edgecolor="black",
                linewidth=0.3,
            )
        for i, dataset in enumerate(datasets):
            chance = chance_level(metric, n_classes.get(dataset))
            if chance is not None:
                ax.hlines(
                    chance, i - 0.45, i + 0.45, colors="black", linestyles="--", linewidth=0.8
                )
        ax.set_xticks(np.arange(len(datasets)), datasets, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(metric_name(metric))
        ax.set_title(f"{title(*key)} (95% CI; dashed: chance)", fontsize=10)
        _legend_outside(ax, fontsize=7)
        paths += _save(fig, folder, slug(*key))
    return paths


def similarity_heatmaps(results: pd.DataFrame, folder: Path) -> list[Path]:
    """Models x models unbiased linear CKA, one heatmap per dataset."""
    paths = []
    sim = select(results, "similarity", "linear_cka_unbiased")
    for dataset, group in sim.groupby("dataset", sort=False):
        names = list(dict.fromkeys(group.encoder))
        matrix = np.eye(len(names))
        for row in group.itertuples():
            other = row.encoder_b
            if other in names:
                matrix[names.index(row.encoder), names.index(other)] = row.value
        fig, ax = plt.subplots(figsize=(1 + 0.6 * len(names), 0.8 + 0.6 * len(names)))
        image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(
                    j,
                    i,
                    f"{matrix[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if matrix[i, j] < 0.6 else "black",
                )
        fig.colorbar(image, ax=ax, fraction=0.046)
        ax.set_title(f"{dataset}: linear CKA (unbiased)", fontsize=10)
        paths += _save(fig, folder, f"cka_{dataset}")
    return paths


def domain_summary(results: pd.DataFrame, folder: Path) -> list[Path]:
    """Linear-probe balanced accuracy per model, grouped by domain, one point per dataset."""
    rows = select(results, "linear_probe", "balanced_accuracy")
    if rows.empty:
        return []
    styles = _styles(results)
    fig, ax = plt.subplots(figsize=(6, 0.8 + 0.28 * rows.encoder.nunique()))
    order = rows.groupby("encoder").value.mean().sort_values().index.tolist()
    for i, encoder in enumerate(order):
        sub, style = rows[rows.encoder == encoder], styles[encoder]
        ax.scatter(sub.value, [i] * len(sub), color=style.colour, marker=style.marker, s=18)
        ax.hlines(i, sub.ci_low.min(), sub.ci_high.max(), color=style.colour, linewidth=0.8)
    ax.set_yticks(range(len(order)), order, fontsize=8)
    ax.set_xlabel("linear-probe balanced accuracy (dots: datasets; lines: range of the CIs)")
    ax.set_title(DOMAIN_LEGEND, fontsize=9)
    domains = rows[["encoder", "domain"]].drop_duplicates().set_index("encoder").domain
    present = [d for d in ("medical", "general", "baseline") if d in set(domains)]
    handles = [
        Line2D(
            [],
            [],
            color=next(styles[e] for e in order if domains[e] == d).colour,
            marker="o",
            linestyle="",
            label=d,
        )
        for d in present
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _save(fig, folder, "domain_summary")


def layer_figures(results: pd.DataFrame, folder: Path) -> list[Path]:
    """Per dataset, balanced accuracy vs relative depth (domain colours, 95% CIs); per
    dataset and model pair, the layer x layer CKA heatmap."""
    paths = []
    curves = depth_curves(results)
    styles = _styles(results)
    for dataset, rows in curves.groupby("dataset", sort=False):
        fig, ax = plt.subplots(figsize=(6, 3.4))
        for encoder, group in rows.groupby("encoder", sort=False):
            style = styles[encoder]
            for part, final in (
                (group[group.layer != "final"], False),
                (group[group.layer == "final"], True),
            ):
                err = np.vstack([part.value - part.ci_low, part.ci_high - part.value])
                ax.errorbar(
                    part.depth,
                    part.value,
                    yerr=err,
                    color=style.colour,
                    marker="*" if final else style.marker,
                    markersize=8 if final else 4,
                    capsize=2,
                    linewidth=0 if final else 1,
                    elinewidth=1,
                    label=None if final else f"{encoder} ({group.domain.iloc[0]})",
                )
        ax.set_xlim(0, 1.05)
        ax.set_xlabel("relative depth (block i of N: i / N; star: the final embedding)")
        ax.set_ylabel("linear-probe balanced accuracy")
        ax.set_title(f"{dataset}\n{DOMAIN_LEGEND}", fontsize=9)
        _legend_outside(ax, fontsize=8)
        paths += _save(fig, folder, f"layers_depth_{dataset}")
    for dataset, a, b, matrix in cka_matrices(results):
        fig, ax = plt.subplots(figsize=(1.5 + 0.3 * matrix.shape[1], 1.2 + 0.3 * matrix.shape[0]))
        image = ax.imshow(matrix.values.astype(float), vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(matrix.shape[1]), matrix.columns, rotation=90, fontsize=7)
        ax.set_yticks(range(matrix.shape[0]), matrix.index, fontsize=7)
        ax.set_xlabel(b, fontsize=8)
        ax.set_ylabel(a, fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.046)
        ax.set_title(f"{dataset}: layer CKA (unbiased)", fontsize=9)
        paths += _save(fig, folder, f"layers_cka_{dataset}_{a}_{b}")
    return paths


#: What the figures were drawn from, and a digest of each file written (``figures/``).
MANIFEST = "figures.json"
#: Columns no figure draws: they change with every run, the figures do not.
RUN_COLUMNS = ("run_id", "started_at")
#: One function of each other module whose code shapes the figures (their source is hashed).
DRAWING_HELPERS = (cka_matrices, select, model_styles)


def _drawn_from(outcome: StudyOutcome, results: pd.DataFrame) -> str:
    """Fingerprint of everything the figures depend on: the results and views drawn, the class
    counts, the drawing code and the libraries' versions."""
    drawn = results.drop(columns=[c for c in RUN_COLUMNS if c in results])
    code = sorted({__file__} | {sys.modules[f.__module__].__file__ for f in DRAWING_HELPERS})
    return fingerprint(
        drawn.to_csv(index=False).encode(),
        [asdict(v) for v in outcome.views],
        outcome.datasets,
        [__version__, matplotlib.__version__, FORMATS, RC],
        *(Path(f).read_bytes() for f in code),
    )


def _previous(folder: Path) -> dict:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def _still_valid(manifest: dict, key: str, folder: Path) -> list[Path] | None:
    """The figures of an earlier call drawn from the same inputs, if every file is still the
    one written then."""
    files = manifest.get("files", {})
    if manifest.get("key") != key or not isinstance(files, dict):
        return None
    paths = [folder / name for name in files]
    if all(p.is_file() and file_sha256(p) == files[p.name] for p in paths):
        return paths
    return None


def write_figures(outcome: StudyOutcome, folder: Path) -> list[Path]:
    """Every paper figure of ``outcome`` in ``folder`` (PNG, PDF, SVG each).

    Drawing takes seconds per figure (300-dpi PNGs, fonts embedded in PDFs), so figures drawn
    from identical inputs are not drawn again (a rerun of a finished study); files an earlier
    call wrote that these inputs no longer produce are removed.
    """
    folder.mkdir(parents=True, exist_ok=True)
    results = displayable(outcome.results)
    key = _drawn_from(outcome, results)
    manifest = _previous(folder)
    kept = _still_valid(manifest, key, folder)
    if kept is not None:
        return kept
    paths = (
        embedding_grids(outcome, folder)
        + paper_metric_bars(results, folder, class_counts(outcome.datasets))
        + similarity_heatmaps(results, folder)
        + domain_summary(results, folder)
        + layer_figures(results, folder)
    )
    for stale in set(manifest.get("files", {})) - {p.name for p in paths}:
        (folder / Path(stale).name).unlink(missing_ok=True)
    record = {"key": key, "files": {p.name: file_sha256(p) for p in paths}}
    atomic_write(folder / MANIFEST, lambda h: h.write(json.dumps(record, indent=1).encode()))
    return paths
