"""Plotly figures of a study: feature-distribution grids and metric bars with CIs."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from medprobe.study import View

PALETTE = qualitative.Safe


def embedding_grid(views: Sequence[View], dataset: str) -> go.Figure:
    """One panel per encoder: the 2-D view of its features on ``dataset``, coloured by class."""
    panels = [v for v in views if v.dataset == dataset]
    fig = make_subplots(
        rows=1,
        cols=len(panels),
        subplot_titles=[v.encoder for v in panels],
        horizontal_spacing=0.04,
    )
    classes = sorted({label for v in panels for label in v.labels})
    for col, view in enumerate(panels, start=1):
        for i, cls in enumerate(classes):
            members = [j for j, label in enumerate(view.labels) if label == cls]
            fig.add_trace(
                go.Scattergl(
                    x=[view.coords[j][0] for j in members],
                    y=[view.coords[j][1] for j in members],
                    mode="markers",
                    name=cls,
                    legendgroup=cls,
                    showlegend=col == 1,
                    marker={"size": 6, "color": PALETTE[i % len(PALETTE)], "opacity": 0.8},
                    customdata=[[view.ids[j], cls] for j in members],
                    hovertemplate="%{customdata[0]}<br>class: %{customdata[1]}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(showticklabels=False, row=1, col=col)
        fig.update_yaxes(showticklabels=False, row=1, col=col)
    fig.update_layout(
        height=340,
        margin={"l": 20, "r": 20, "t": 50, "b": 20},
        template="plotly_white",
        legend={"title": "class"},
    )
    return fig


def metric_bars(
    results: pd.DataFrame, analysis: str, metric: str, title: str, params: str = ""
) -> go.Figure:
    """Bars per dataset x encoder with 95% CI error bars (rows whose params start with
    ``params``, e.g. ``k=10`` for one kNN setting)."""
    rows = results[
        (results.analysis == analysis)
        & (results.metric == metric)
        & results.params.str.startswith(params)
    ]
    fig = go.Figure()
    for i, (encoder, group) in enumerate(rows.groupby("encoder", sort=False)):
        fig.add_trace(
            go.Bar(
                x=group.dataset,
                y=group.value,
                name=encoder,
                marker_color=PALETTE[i % len(PALETTE)],
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": group.ci_high - group.value,
                    "arrayminus": group.value - group.ci_low,
                },
                hovertemplate=(f"{encoder}<br>%{{x}}: %{{y:.3f}}<extra></extra>"),
            )
        )
    fig.update_layout(
        title=title,
        barmode="group",
        height=360,
        template="plotly_white",
        yaxis={"title": metric.replace("_", " ")},
        margin={"l": 50, "r": 20, "t": 50, "b": 40},
    )
    return fig
