"""The layer-wise section: accuracy vs relative depth, layer x layer CKA, best layer vs final.

The tables come from the results rows alone (``layer``, ``param_depth``, ``layer_best`` and
``layer_similarity`` rows), so the report and the paper figures draw the same numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from medprobe.report.selection import select
from medprobe.report.style import DOMAIN_LEGEND, model_styles

#: what the depth curves show
DEPTH_KEY = ("linear_probe", "balanced_accuracy")


def depth_curves(results: pd.DataFrame) -> pd.DataFrame:
    """Linear-probe balanced accuracy at every layer of models read layer-wise (``final`` at
    depth 1), sorted by dataset, model and depth."""
    rows = select(results, *DEPTH_KEY, layer=None)
    layered = set(rows.loc[rows.layer != "final", "encoder"])
    rows = rows[rows.encoder.isin(layered)].copy()
    rows["depth"] = pd.to_numeric(rows.param_depth, errors="coerce").astype(float)
    rows.loc[rows.layer == "final", "depth"] = 1.0
    return rows.sort_values(["dataset", "encoder", "depth"], kind="stable")


def cka_matrices(results: pd.DataFrame) -> list[tuple[str, str, str, pd.DataFrame]]:
    """``(dataset, model a, model b, layer x layer CKA matrix)`` for every pair of models that
    has ``layer_similarity`` rows (each model with itself included) and more than one layer
    between them (final x final is the cross-model similarity map's), layers in depth order."""
    rows = select(results, "layer_similarity", "linear_cka_unbiased", layer=None)
    out = []
    for (dataset, a, b), group in rows.groupby(["dataset", "encoder", "encoder_b"], sort=False):
        layers_a = list(dict.fromkeys(group.layer))
        layers_b = list(dict.fromkeys(group.layer_b))
        matrix = pd.DataFrame(np.nan, index=layers_a, columns=layers_b)
        for row in group.itertuples():
            matrix.loc[row.layer, row.layer_b] = row.value
        if len(layers_a) == len(layers_b) == 1:  # two final embeddings: the similarity map
            continue
        if a == b:  # the upper triangle was measured; CKA is symmetric
            matrix = matrix.combine_first(matrix.T).loc[layers_a, layers_a]
        out.append((dataset, a, b, matrix))
    return out


def best_layer_table(results: pd.DataFrame) -> list[dict[str, Any]]:
    """Per dataset and model: the best layer (chosen on the training images), its and the
    final layer's test balanced accuracy, and the paired difference with its 95% CI."""
    best = select(results, "layer_best", "balanced_accuracy_minus_final", layer=None)
    accuracy = select(results, *DEPTH_KEY, layer=None).set_index(["dataset", "encoder", "layer"])

    def at(dataset: str, encoder: str, layer: str) -> str:
        if (dataset, encoder, layer) not in accuracy.index:
            return "-"
        hit = accuracy.loc[[(dataset, encoder, layer)]].iloc[0]
        return f"{hit.value:.3f} [{hit.ci_low:.3f}, {hit.ci_high:.3f}]"

    table = []
    for row in best.itertuples():
        table.append(
            {
                "dataset": row.dataset,
                "encoder": row.encoder,
                "domain": row.domain,
                "best": row.layer,
                "best_accuracy": at(row.dataset, row.encoder, row.layer),
                "final_accuracy": at(row.dataset, row.encoder, "final"),
                "difference": f"{row.value:+.3f} [{row.ci_low:+.3f}, {row.ci_high:+.3f}]",
            }
        )
    return table


def depth_figure(curves: pd.DataFrame, dataset: str) -> go.Figure:
    """Balanced accuracy vs relative depth, one line per model (domain colours), 95% CIs."""
    rows = curves[curves.dataset == dataset]
    pairs = rows[["encoder", "domain"]].drop_duplicates().itertuples(index=False)
    styles = model_styles((p.encoder, p.domain) for p in pairs)
    fig = go.Figure()
    for encoder, group in rows.groupby("encoder", sort=False):
        style = styles[encoder]
        for part, final in (
            (group[group.layer != "final"], False),
            (group[group.layer == "final"], True),
        ):
            fig.add_trace(
                go.Scatter(
                    x=part.depth,
                    y=part.value,
                    mode="markers" if final else "lines+markers",
                    name=f"{encoder} ({group.domain.iloc[0]})" + (": final" if final else ""),
                    text=part.layer,
                    marker={
                        "color": style.colour,
                        "symbol": "star" if final else style.plotly_marker,
                        "size": 12 if final else 7,
                    },
                    line={"color": style.colour},
                    error_y={
                        "type": "data",
                        "array": part.ci_high - part.value,
                        "arrayminus": part.value - part.ci_low,
                    },
                    hovertemplate="%{text}: %{y:.3f}<extra>" + encoder + "</extra>",
                )
            )
    fig.update_layout(
        template="plotly_white",
        height=360,
        margin={"l": 20, "r": 20, "t": 40, "b": 20},
        title=f"linear-probe balanced accuracy vs relative depth ({DOMAIN_LEGEND})",
        xaxis={
            "title": "relative depth (block i of N: i / N; star: the final embedding)",
            "range": [0, 1.05],
        },
        yaxis={"title": "balanced accuracy (95% CI)"},
    )
    return fig


def cka_figure(matrix: pd.DataFrame, a: str, b: str) -> go.Figure:
    fig = go.Figure(
        go.Heatmap(
            z=matrix.round(3).values,
            x=list(matrix.columns),
            y=list(matrix.index),
            zmin=0,
            zmax=1,
            colorscale="Viridis",
        )
    )
    fig.update_layout(
        template="plotly_white",
        height=160 + 18 * len(matrix),
        margin={"l": 20, "r": 20, "t": 30, "b": 20},
        title=f"linear CKA (unbiased): {a} (rows) x {b} (columns)",
    )
    return fig
