"""The self-contained HTML report: one file, plotly.js inlined, no network access.

Interactive parts (view selector, hover thumbnails, sortable tables) are plain JavaScript over
JSON embedded in the page; every user-provided string reaches the page either through Jinja's
autoescaping or as JSON with ``<``, ``>`` and ``&`` escaped, so a label like ``<script>`` is
shown, never run.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from medprobe._version import __version__
from medprobe.analysis.outcome import StudyOutcome
from medprobe.atomic import atomic_write
from medprobe.report.figures import (
    interactive_metric_bars,
    interval_points_figure,
    prompt_spread_figure,
)
from medprobe.report.layers import (
    best_layer_table,
    cka_figure,
    cka_matrices,
    depth_curves,
    depth_figure,
)
from medprobe.report.paper_figures import write_figures
from medprobe.report.selection import (
    KEY_METRICS,
    displayable,
    metric_name,
    select,
    settings,
    title,
)
from medprobe.report.style import DOMAIN_LEGEND, chance_level, class_counts, model_styles

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("medprobe.report", "templates"),
    autoescape=jinja2.select_autoescape(default=True),
    undefined=jinja2.StrictUndefined,
)


#: The full results table of the report: column -> header in words.
RESULT_COLUMNS = {
    "dataset": "dataset",
    "encoder": "model",
    "domain": "domain",
    "layer": "layer",
    "analysis": "analysis",
    "metric": "metric",
    "setting": "setting",
    "split": "images",
    "value": "value",
    "ci_low": "95% CI low",
    "ci_high": "95% CI high",
    "n": "n",
    "seed": "seed",
}


def safe_json(data: Any) -> str:
    """JSON that can sit inside a <script> element: no '<', '>' or '&' left to close it."""
    text = json.dumps(data, separators=(",", ":"), default=str, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _figure_html(fig: go.Figure) -> str:
    # plotly serialises data with <, >, / escaped, so figure data cannot close the script tag.
    return pio.to_html(
        fig,
        full_html=False,
        include_plotlyjs=False,
        config={"displaylogo": False, "responsive": True},
    )


def _fmt(row) -> str:
    """``value [low, high]``; no interval is shown where there is none (or no value)."""
    if pd.isna(row.value):
        return "n/a"
    if pd.isna(row.ci_low) or pd.isna(row.ci_high):
        return f"{row.value:.3f}"
    return f"{row.value:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]"


def _summary_table(
    results: pd.DataFrame, requested: Sequence[str]
) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, rows and notes of the summary: a column per key metric; an analysis that was
    asked for but does not apply to a model (zero-shot without a text tower) says so."""
    frame = results[results.analysis != "error"]
    present = [k for k in KEY_METRICS if not select(frame, *k).empty]
    header = ["dataset", "encoder", "domain"] + [title(*k) for k in present]
    body = []
    for (dataset, encoder), group in frame.groupby(["dataset", "encoder"], sort=False):
        cells = [dataset, encoder, str(group.domain.iloc[0])]
        for key in present:
            hit = select(group, *key)
            missing = "n/a (no text tower)" if key[0] == "zero_shot" else "-"
            cells.append(_fmt(hit.iloc[0]) if not hit.empty else missing)
        body.append(cells)
    notes = []
    if "zero_shot" in requested and not (frame.analysis == "zero_shot").any():
        notes.append(
            "Zero-shot was asked for, but no model of this study has a text tower "
            "(vision-only encoders and baselines), so there is no zero-shot result."
        )
    return header, body, notes


def _heatmaps(results: pd.DataFrame) -> list[tuple[str, str]]:
    sim = select(results, "similarity", "linear_cka_unbiased")
    out = []
    for dataset, group in sim.groupby("dataset", sort=False):
        names = list(dict.fromkeys(group.encoder))
        matrix = [[1.0 if a == b else None for b in names] for a in names]
        for row in group.itertuples():
            other = row.encoder_b
            if other in names:
                matrix[names.index(row.encoder)][names.index(other)] = round(row.value, 4)
        fig = go.Figure(
            go.Heatmap(
                z=matrix,
                x=names,
                y=names,
                zmin=0,
                zmax=1,
                colorscale="Viridis",
                texttemplate="%{z:.2f}",
            )
        )
        fig.update_layout(
            height=120 + 40 * len(names),
            template="plotly_white",
            margin={"l": 20, "r": 20, "t": 30, "b": 20},
            title="linear CKA (unbiased)",
        )
        out.append((dataset, _figure_html(fig)))
    return out


OVERLAY_METRICS = (
    "displacement",
    "linear_accuracy_drop",
    "knn_accuracy_drop",
    "attack_success",
    "zero_shot_flip_rate",
    "text_readability",
)


def _overlay_section(outcome: StudyOutcome, results: pd.DataFrame) -> dict[str, Any]:
    """The overlay table (one row per dataset x model x overlay) and displacement charts."""
    rows = results[results.analysis == "overlay"]
    if rows.empty:
        return {"header": [], "body": [], "charts": [], "examples": outcome.overlay_examples}
    table = _metric_table(
        rows.rename(columns={"param_overlay": "overlay"}),
        ["dataset", "encoder", "domain", "overlay"],
        OVERLAY_METRICS,
    )
    charts = []
    displacement = rows[rows.metric == "displacement"]
    styles = model_styles(
        (p.encoder, p.domain) for p in rows[["encoder", "domain"]].drop_duplicates().itertuples()
    )
    for (dataset, label), group in displacement.groupby(["dataset", "param_overlay"], sort=False):
        group = group.sort_values("value")
        fig = go.Figure(
            go.Bar(
                x=group.value,
                y=group.encoder,
                orientation="h",
                marker_color=[styles[e].colour for e in group.encoder],
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": group.ci_high - group.value,
                    "arrayminus": group.value - group.ci_low,
                },
            )
        )
        fig.update_layout(
            title=f"{dataset} — {label}: feature displacement (95% CI; {DOMAIN_LEGEND})",
            height=140 + 28 * len(group),
            template="plotly_white",
            margin={"l": 20, "r": 20, "t": 50, "b": 30},
            xaxis={"title": "clean-vs-overlaid distance / between-class distance"},
        )
        charts.append(_figure_html(fig))
    return {
        **table,
        "charts": charts,
        "examples": outcome.overlay_examples,
    }


RELIANCE_METRICS = (
    "displacement",
    "knn_accuracy_original",
    "knn_accuracy_masked",
    "knn_accuracy_drop",
    "knn_fraction_lost",
    "linear_accuracy_original",
    "linear_accuracy_masked",
    "linear_accuracy_drop",
    "linear_fraction_lost",
)


def _metric_table(rows: pd.DataFrame, keys: list[str], metrics: Sequence[str]):
    """One table row per ``keys`` group, one column per metric present (value [CI])."""
    present = [m for m in metrics if (rows.metric == m).any()]
    body = []
    for key, group in rows.groupby(keys, sort=False):
        cells = list(key) if isinstance(key, tuple) else [key]
        for metric in present:
            hit = group[group.metric == metric]
            cells.append(_fmt(hit.iloc[0]) if not hit.empty else "-")
        body.append(cells)
    return {"header": [*keys, *map(metric_name, present)], "body": body}


def _audit_section(outcome: StudyOutcome, results: pd.DataFrame) -> dict[str, Any]:
    """Burned-in text and marks: per-class prevalence and counts, leakage from the detections
    alone, per-model reliance, examples with the boxes drawn."""
    audit = results[results.analysis == "text_audit"]
    per_class = audit.param_class.fillna("") != ""  # missing text is "" once displayable
    counted, leakage = audit[per_class], audit[~per_class]
    prevalence_rows = []
    for (dataset, group), rows in counted.groupby(["dataset", "param_class"], sort=False):
        value = {r.metric: r for r in rows.itertuples()}
        cells = [dataset, group, str(next(iter(value.values())).n)]
        for metric in ("text_prevalence", "mark_prevalence"):
            cells.append(_fmt(value[metric]) if metric in value else "-")
        for metric in ("words", "marks"):
            cells.append(f"{value[metric].value:.0f}" if metric in value else "-")
        prevalence_rows.append(cells)
    leak_rows = []
    for dataset, group in leakage.groupby("dataset", sort=False):
        value = dict(zip(group.metric, group.to_dict("records"), strict=True))
        if "leakage_balanced_accuracy" not in value:
            continue
        flagged = value.get("leakage_flagged", {}).get("value", 0) == 1
        leak_rows.append(
            [
                dataset,
                _fmt(pd.Series(value["leakage_balanced_accuracy"])),
                f"{value['leakage_chance']['value']:.3f}",
                f"{value.get('leakage_p_value', {}).get('value', float('nan')):.3f}",
                "LEAKS the label" if flagged else "no leakage detected",
            ]
        )
    detectors = sorted(set(audit.encoder_revision.dropna()) - {""})
    return {
        "detectors": ", ".join(detectors),
        "prevalence": {
            "header": [
                "dataset",
                "class",
                "images",
                "images with words [95% CI]",
                "images with marks [95% CI]",
                "words",
                "marks",
            ],
            "body": prevalence_rows,
        },
        "leakage": {
            "header": [
                "dataset",
                "balanced accuracy (detections only)",
                "chance",
                "permutation p",
                "",
            ],
            "body": leak_rows,
        },
        "reliance": _metric_table(
            results[results.analysis == "text_reliance"].rename(columns={"param_mask": "mask"}),
            ["dataset", "encoder", "domain", "mask"],
            RELIANCE_METRICS,
        ),
        "examples": outcome.audit_examples,
    }


TEXT_ANALYSES = ("prompt_sensitivity", "terminology", "text_share")
#: metrics of rows that say why a text-side analysis does not apply
TEXT_SKIPS = ("no_text_tower", "no_terms")
SHARE_METRICS = (
    "text_share",
    "zero_shot_above_chance",
    "linear_probe_above_chance",
    "min_class_text_distance",
    "cosine_margin",
)


def _text_side_section(results: pd.DataFrame, n_classes: dict[str, int]) -> dict[str, Any]:
    """Prompt sensitivity (spread per model), expert vs lay names (paired differences) and the
    text-addressable share, each with 95% CIs; the models they do not apply to, and why."""
    rows = results[results.analysis.isin(TEXT_ANALYSES)]
    skips = rows[rows.metric.isin(TEXT_SKIPS)]
    rows = rows[~rows.metric.isin(TEXT_SKIPS)]
    prompts = rows[rows.analysis == "prompt_sensitivity"]
    cells = prompts[
        (prompts.metric == "balanced_accuracy") & (prompts.param_template != "ensemble")
    ]
    given = prompts[
        (prompts.metric == "balanced_accuracy")
        & (prompts.param_template == "ensemble")
        & (prompts.param_class_names == "given")
    ]
    spread_charts = [
        _figure_html(
            prompt_spread_figure(
                group,
                given[given.dataset == dataset],
                f"{dataset}: zero-shot balanced accuracy per template and class names "
                f"(95% CI of the ensemble; dashed: chance; {DOMAIN_LEGEND})",
                chance_level("balanced_accuracy", n_classes.get(dataset)),
            )
        )
        for dataset, group in cells[cells.value.notna()].groupby("dataset", sort=False)
    ]
    spread = prompts[prompts.param_spread == "templates"].rename(
        columns={"param_class_names": "class names"}
    )
    terms = rows[rows.analysis == "terminology"]
    terms = terms.assign(
        metric=terms.param_terms.where(terms.metric != "p_value", "paired bootstrap p")
    )
    differences = terms[terms.metric == "expert - lay"]
    term_charts = [
        _figure_html(
            interval_points_figure(
                group,
                f"{dataset}: expert minus lay class names (paired, 95% CI)",
                "zero-shot balanced accuracy difference",
            )
        )
        for dataset, group in differences[differences.value.notna()].groupby("dataset", sort=False)
    ]
    share = rows[(rows.analysis == "text_share") & (rows.param_class == "")]
    share_charts = [
        _figure_html(
            interval_points_figure(
                group,
                f"{dataset}: text-addressable share (95% CI; 0 = none, 1 = all the probe reads)",
                "(zero-shot - chance) / (linear probe - chance)",
                references=(0.0, 1.0),
            )
        )
        for dataset, group in share[(share.metric == "text_share") & share.value.notna()].groupby(
            "dataset", sort=False
        )
    ]
    per_class = rows[(rows.analysis == "text_share") & (rows.param_class != "")]
    return {
        "spread": _metric_table(
            spread,
            ["dataset", "encoder", "domain", "class names"],
            [
                "balanced_accuracy_mean",
                "balanced_accuracy_sd",
                "balanced_accuracy_min",
                "balanced_accuracy_max",
            ],
        ),
        "spread_charts": spread_charts,
        "terminology": _metric_table(
            terms,
            ["dataset", "encoder", "domain"],
            ["expert", "lay", "expert - lay", "paired bootstrap p"],
        ),
        "terminology_charts": term_charts,
        "share": _metric_table(
            share.rename(columns={"param_class_names": "class names"}),
            ["dataset", "encoder", "domain", "class names"],
            SHARE_METRICS,
        ),
        "share_charts": share_charts,
        "margins": _metric_table(
            per_class.rename(columns={"param_class": "class"}),
            ["dataset", "encoder", "domain", "class"],
            ["cosine_margin"],
        ),
        "skipped": skips[["encoder", "dataset", "analysis", "error"]].to_dict("records"),
    }


def _layers_section(results: pd.DataFrame) -> dict[str, Any]:
    """Accuracy vs depth per dataset, CKA heatmaps per model pair, best layer vs final."""
    curves = depth_curves(results)
    return {
        "curves": [
            (dataset, _figure_html(depth_figure(curves, dataset)))
            for dataset in dict.fromkeys(curves.dataset)
        ],
        "heatmaps": [
            (f"{dataset}: {a} x {b}", _figure_html(cka_figure(matrix, a, b)))
            for dataset, a, b, matrix in cka_matrices(results)
        ],
        "best": best_layer_table(results),
    }


def render_report(outcome: StudyOutcome, provenance: dict[str, Any] | None = None) -> str:
    """The report as one HTML string."""
    results = displayable(outcome.results)
    provenance = provenance or {}
    requested = provenance.get("config", {}).get("analyses", [])
    header, body, notes = _summary_table(results, requested)
    bars = [
        _figure_html(
            interactive_metric_bars(
                select(results, *key),
                f"{title(*key)} (95% CI; dashed: chance)",
                key[1],
                class_counts(outcome.datasets),
            )
        )
        for key in KEY_METRICS
        if not select(results, *key).empty
    ]
    errors = results[results.analysis == "error"][["encoder", "dataset", "error"]]
    warnings = results[results.analysis == "warning"].drop_duplicates(["dataset", "error"])
    shown = results[results.analysis != "error"].assign(setting=settings(results))
    table = shown.round(4).astype(object).fillna("")
    return _ENV.get_template("report.html.j2").render(
        title=outcome.title,
        version=__version__,
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        plotlyjs=get_plotlyjs(),
        encoders=outcome.encoders,
        datasets=outcome.datasets,
        summary_header=header,
        summary_body=body,
        summary_notes=notes,
        results_columns=list(RESULT_COLUMNS.items()),
        results=table.to_dict("records"),
        bars=bars,
        heatmaps=_heatmaps(results),
        skipped=outcome.skipped,
        errors=errors.to_dict("records"),
        warnings=warnings[["dataset", "error"]].to_dict("records"),
        views_json=safe_json([asdict(v) for v in outcome.views]),
        thumbnails_json=safe_json(outcome.thumbnails),
        provenance=provenance,
        overlay=_overlay_section(outcome, results),
        audit=_audit_section(outcome, results),
        text_side=_text_side_section(results, class_counts(outcome.datasets)),
        layers=_layers_section(results),
    )


def write_report(outcome: StudyOutcome, out: Path) -> dict[str, Path]:
    """``out/report.html`` (atomic) and the paper figures in ``out/figures/``."""
    out.mkdir(parents=True, exist_ok=True)
    run = out / "run.json"
    provenance = json.loads(run.read_text()) if run.is_file() else {}
    path = out / "report.html"
    html = render_report(outcome, provenance).encode("utf-8")
    atomic_write(path, lambda h: h.write(html))
    write_figures(outcome, out / "figures")
    return {"report.html": path, "figures": out / "figures"}
