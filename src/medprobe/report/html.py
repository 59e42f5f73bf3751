"""The self-contained HTML report: one file, plotly.js inlined, no network access."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import jinja2
import plotly.io as pio
from plotly.offline import get_plotlyjs

from medprobe._version import __version__
from medprobe.report.figures import embedding_grid, metric_bars
from medprobe.study import StudyOutcome

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("medprobe.report", "templates"),
    autoescape=jinja2.select_autoescape(default=True),
    undefined=jinja2.StrictUndefined,
)

#: (analysis, metric, params prefix) of the summary columns and bar charts.
KEY_METRICS = (
    ("separability", "silhouette_cosine", ""),
    ("knn", "balanced_accuracy", "k=10"),
    ("linear_probe", "balanced_accuracy", ""),
    ("linear_probe", "auroc", ""),
)


def _figure_html(fig) -> str:
    # plotly serialises with json; "</" is escaped so data can never close the script tag.
    html = pio.to_html(fig, full_html=False, include_plotlyjs=False, config={"displaylogo": False})
    return html


def _summary_table(outcome: StudyOutcome) -> tuple[list[str], list[list[str]]]:
    frame = outcome.results
    header = ["dataset", "encoder", "domain"] + [f"{a}: {m}" for a, m, _ in KEY_METRICS]
    body = []
    for (dataset, encoder), group in frame.groupby(["dataset", "encoder"], sort=False):
        cells = [dataset, encoder, str(group.domain.iloc[0])]
        for analysis, metric, params in KEY_METRICS:
            hit = group[
                (group.analysis == analysis)
                & (group.metric == metric)
                & group.params.str.startswith(params)
            ]
            if hit.empty:
                cells.append("-")
            else:
                r = hit.iloc[0]
                cells.append(f"{r.value:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]")
        body.append(cells)
    return header, body


def render_report(outcome: StudyOutcome) -> str:
    """The report as one HTML string."""
    datasets = [d["name"] for d in outcome.datasets]
    header, body = _summary_table(outcome)
    figures = {
        "embeddings": [
            (name, _figure_html(embedding_grid(outcome.views, name))) for name in datasets
        ],
        "bars": [
            _figure_html(
                metric_bars(
                    outcome.results,
                    a,
                    m,
                    f"{a.replace('_', ' ')} {p}: {m.replace('_', ' ')} (95% CI)".replace("  ", " "),
                    params=p,
                )
            )
            for a, m, p in KEY_METRICS
        ],
    }
    return _ENV.get_template("report.html.j2").render(
        title=outcome.title,
        version=__version__,
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        plotlyjs=get_plotlyjs(),
        encoders=outcome.encoders,
        datasets=outcome.datasets,
        summary_header=header,
        summary_body=body,
        results=outcome.results.to_dict("records"),
        figures=figures,
        skipped=outcome.skipped,
    )


def write_report(outcome: StudyOutcome, path: Path) -> Path:
    """Write the report atomically and return its path."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render_report(outcome), encoding="utf-8")
    tmp.replace(path)
    return path
