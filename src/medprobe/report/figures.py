"""Plotly figures of a study for the HTML report: metric bars with CIs."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

PALETTE = qualitative.Safe


def interactive_metric_bars(rows: pd.DataFrame, title: str) -> go.Figure:
    """Bars per dataset x encoder with 95% CI error bars, for the rows of one metric."""
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
        yaxis={"title": title.split(": ")[-1]},
        margin={"l": 50, "r": 20, "t": 50, "b": 40},
    )
    return fig
