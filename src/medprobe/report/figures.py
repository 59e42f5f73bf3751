"""Plotly figures of a study for the HTML report: metric bars with CIs."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from medprobe.report.style import chance_level, model_styles


def interactive_metric_bars(
    rows: pd.DataFrame, title: str, metric: str, n_classes: dict[str, int]
) -> go.Figure:
    """Bars per dataset x encoder with 95% CI error bars, for the rows of one metric; a dashed
    line at chance where the metric has one."""
    styles = model_styles(
        (p.encoder, p.domain) for p in rows[["encoder", "domain"]].drop_duplicates().itertuples()
    )
    fig = go.Figure()
    for encoder, group in rows.groupby("encoder", sort=False):
        style = styles[encoder]
        fig.add_trace(
            go.Bar(
                x=group.dataset,
                y=group.value,
                name=encoder,
                marker={"color": style.colour, "pattern": {"shape": style.hatch[:1]}},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": group.ci_high - group.value,
                    "arrayminus": group.value - group.ci_low,
                },
                hovertemplate=(f"{encoder}<br>%{{x}}: %{{y:.3f}}<extra></extra>"),
            )
        )
    datasets = list(dict.fromkeys(rows.dataset))
    for i, dataset in enumerate(datasets):
        chance = chance_level(metric, n_classes.get(dataset))
        if chance is not None:
            fig.add_shape(
                type="line",
                xref="x",
                yref="y",
                x0=i - 0.45,
                x1=i + 0.45,
                y0=chance,
                y1=chance,
                line={"dash": "dash", "color": "black", "width": 1},
            )
    fig.update_layout(
        title=title,
        barmode="group",
        height=360,
        template="plotly_white",
        yaxis={"title": title.split(": ")[-1].split(" (")[0]},
        margin={"l": 50, "r": 20, "t": 50, "b": 40},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig
