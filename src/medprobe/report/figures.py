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


def prompt_spread_figure(
    cells: pd.DataFrame, ensembles: pd.DataFrame, title: str, chance: float | None
) -> go.Figure:
    """Per model, a box with every (template, class-name variant) zero-shot balanced accuracy
    as a point (hover: which prompt), the ensemble of the dataset's templates with the names
    as given as a diamond, and a dashed line at chance."""
    styles = model_styles(
        (p.encoder, p.domain) for p in cells[["encoder", "domain"]].drop_duplicates().itertuples()
    )
    fig = go.Figure()
    for encoder, group in cells.groupby("encoder", sort=False):
        fig.add_trace(
            go.Box(
                y=group.value,
                name=encoder,
                boxpoints="all",
                jitter=0.5,
                pointpos=0,
                marker={"color": styles[encoder].colour, "size": 5},
                line={"color": styles[encoder].colour},
                text=[
                    f"{t} · {v}"
                    for t, v in zip(group.param_template, group.param_class_names, strict=True)
                ],
                hovertemplate="%{text}<br>%{y:.3f}<extra>" + encoder + "</extra>",
                showlegend=False,
            )
        )
    if not ensembles.empty:
        fig.add_trace(
            go.Scatter(
                x=ensembles.encoder,
                y=ensembles.value,
                mode="markers",
                name="ensemble (names as given)",
                marker={"symbol": "diamond", "size": 11, "color": "black"},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": ensembles.ci_high - ensembles.value,
                    "arrayminus": ensembles.value - ensembles.ci_low,
                },
            )
        )
    if chance is not None:
        fig.add_hline(y=chance, line={"dash": "dash", "color": "black", "width": 1})
    fig.update_layout(
        title=title,
        height=380,
        template="plotly_white",
        yaxis={"title": "zero-shot balanced accuracy"},
        margin={"l": 50, "r": 20, "t": 50, "b": 40},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def interval_points_figure(
    rows: pd.DataFrame, title: str, axis: str, references: tuple[float, ...] = (0.0,)
) -> go.Figure:
    """One point with its 95% CI per model (horizontal), dashed lines at ``references``."""
    styles = model_styles(
        (p.encoder, p.domain) for p in rows[["encoder", "domain"]].drop_duplicates().itertuples()
    )
    fig = go.Figure(
        go.Scatter(
            x=rows.value,
            y=rows.encoder,
            mode="markers",
            marker={"color": [styles[e].colour for e in rows.encoder], "size": 10},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": rows.ci_high - rows.value,
                "arrayminus": rows.value - rows.ci_low,
            },
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        )
    )
    for x in references:
        fig.add_vline(x=x, line={"dash": "dash", "color": "black", "width": 1})
    fig.update_layout(
        title=title,
        height=140 + 30 * len(rows),
        template="plotly_white",
        xaxis={"title": axis},
        margin={"l": 20, "r": 20, "t": 50, "b": 40},
    )
    return fig
