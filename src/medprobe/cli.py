"""The ``medprobe`` command line (typer + rich)."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from typer.exceptions import Abort, Exit, TyperException

from medprobe._version import __version__
from medprobe.errors import MedprobeError
from medprobe.names import printable
from medprobe.paths import default_cache_dir
from medprobe.progress import Stages, collected_warnings, console, output

if TYPE_CHECKING:
    from medprobe.study.config import MlflowConfig

app = typer.Typer(
    name="medprobe",
    help="What do the image features of medical and general VLMs capture on lesion data?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medprobe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """medprobe: probe the image features of medical and general vision-language models."""


def _pairs(values: list[str] | None, option: str, left: str = "COLUMN") -> dict[str, str] | None:
    """``["dataset=busi_256"]`` -> ``{"dataset": "busi_256"}`` (one clear line when malformed)."""
    if not values:
        return None
    pairs = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise MedprobeError(f"{option} takes {left}=VALUE; got {value!r}")
        pairs[key] = rest
    return pairs


def writable_dir(path: Path, option: str = "--out") -> Path:
    """Create ``path`` if needed and prove it is writable, or explain in one sentence why not."""
    if path.exists() and not path.is_dir():
        raise MedprobeError(f"{option} {path} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".medprobe-write-test-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise MedprobeError(f"cannot write to {option} {path}: {exc.strerror or exc}") from None
    return path


DeviceOption = Annotated[
    str, typer.Option(help="auto (the GPU when one is visible), cpu, cuda or cuda:N.")
]
PrecisionOption = Annotated[
    str, typer.Option(help="fp32, bf16 or fp16 (part of the cache key; runs on CPU too).")
]
WeightsOption = Annotated[Path | None, typer.Option(help="Local folder or file of weights.")]
RevisionOption = Annotated[str | None, typer.Option(help="Hub revision (commit) to use.")]
RemoteCodeOption = Annotated[
    bool, typer.Option(help="Allow this model to run code from its repository.")
]


def positive(value: int, option: str) -> int:
    if value <= 0:
        raise MedprobeError(f"{option} must be a positive number, got {value}")
    return value


@app.command()
def demo(
    out: Annotated[
        Path, typer.Option(help="Folder for results.csv, results.parquet, report.html.")
    ],
    quick: Annotated[
        bool,
        typer.Option(help="Fewer, smaller images, no layer-wise section (about a minute)."),
    ] = False,
    n: Annotated[
        int | None, typer.Option(help="Images per dataset (default 150, quick 60).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the analyses (bootstrap, probes).")] = 0,
) -> None:
    """Run the pipeline end to end on the built-in synthetic testbed (offline)."""
    images = positive(n if n is not None else (60 if quick else 150), "--n")
    writable_dir(out)
    from medprobe.demo import run_demo  # heavy imports only once the options are sound

    outcome, files = run_demo(out, n=images, size=96 if quick else 128, seed=seed, layers=not quick)
    output.print(summary_table(outcome.results, "linear_probe", "balanced_accuracy"))
    for name, path in files.items():
        output.print(f"wrote {name}: {path}", soft_wrap=True, highlight=False)


def summary_table(results, analysis: str, metric: str):
    """A rich table of one metric, model x dataset, ``value [95% CI]``: numbers never wrap,
    long dataset names fold in their header."""
    from rich.table import Table

    rows = results[
        (results.analysis == analysis)
        & (results.metric == metric)
        & (results.layer.fillna("final") == "final")
    ]
    datasets = list(dict.fromkeys(rows.dataset))
    table = Table(title=f"{analysis.replace('_', ' ')}: {metric.replace('_', ' ')} [95% CI]")
    table.add_column("model", no_wrap=True)
    for dataset in datasets:
        table.add_column(escape(dataset), no_wrap=False, overflow="fold", justify="right")
    for encoder, group in rows.groupby("encoder", sort=False):
        cells = []
        by_dataset = group.set_index("dataset")
        for dataset in datasets:
            if dataset not in by_dataset.index:
                cells.append("-")
                continue
            r = by_dataset.loc[dataset]
            cells.append(f"{r.value:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]")
        table.add_row(escape(encoder), *cells)
    return table


@app.command("run")
def run_command(
    study: Annotated[str, typer.Argument(help="A study YAML file, or demo / paper-2601.14774.")],
    out: Annotated[Path, typer.Option(help="Folder for results, figures, report, run.json.")],
    data_root: Annotated[
        Path | None, typer.Option(help="Folder that relative dataset paths start from.")
    ] = None,
    download: Annotated[
        bool, typer.Option(help="Download missing weights from the hub instead of stopping.")
    ] = False,
    strict: Annotated[
        bool, typer.Option(help="Exit 1 if any pair or analysis failed (default: if all did).")
    ] = False,
    device: Annotated[
        str | None,
        typer.Option(help="The study's device (auto, cpu, cuda, cuda:N); models may set theirs."),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(help="The study's precision (fp32, bf16, fp16); models may set theirs."),
    ] = None,
    trust_remote_code: Annotated[
        list[str] | None,
        typer.Option(help="Allow MODEL to run code from its repository (repeatable)."),
    ] = None,
    revision: Annotated[
        list[str] | None,
        typer.Option(help="MODEL=COMMIT: pin MODEL's hub revision (repeatable)."),
    ] = None,
    mlflow: Annotated[
        str | None,
        typer.Option(
            help="Log params, key metrics and report to this MLflow tracking URI "
            "(e.g. sqlite:///mlflow.db); the study file's mlflow: key does the same."
        ),
    ] = None,
) -> None:
    """Run a whole study (models x datasets x analyses); rerun to resume.

    Exit code 0 when at least one model/dataset pair succeeded, 1 when none did (or, with
    --strict, when anything failed, or when MLflow logging failed), 2 when the study cannot
    start.
    """
    from medprobe.study.config import MlflowConfig, load_config
    from medprobe.study.preflight import preflight

    config = load_config(study)
    if data_root is not None:
        config = config.model_copy(update={"base_dir": str(data_root.expanduser())})
    config = config.with_overrides(device=device, precision=precision)
    config = config.with_model_options(
        trust_remote_code=trust_remote_code or [],
        revisions=_pairs(revision, "--revision", "MODEL") or {},
    )
    if mlflow is not None:
        settings = config.mlflow or MlflowConfig()
        config = config.model_copy(
            update={"mlflow": settings.model_copy(update={"tracking_uri": mlflow})}
        )
    if config.mlflow is not None:
        from medprobe.study.tracking import require_mlflow

        require_mlflow()  # before the study, not after hours of it
    missing = preflight(config, download=download)
    if missing:
        console.print(
            f"[bold red]error:[/] {config.name} cannot run: {len(missing)} thing(s) "
            "missing; download or fix these, then run again:",
            highlight=False,
        )
        for line in missing:
            console.print(f"  - {line}", highlight=False, markup=False)
        raise typer.Exit(2)
    writable_dir(out)
    from medprobe.report.html import write_report  # heavy imports only once we know we can run
    from medprobe.study.runner import run_study

    started = time.perf_counter()
    outcome = run_study(config, out)
    before_report = time.perf_counter()
    with collected_warnings():
        files = write_report(outcome, out)
    outcome.timings["report"] = time.perf_counter() - before_report
    for name, path in {
        "results.csv": out / "results.csv",
        **files,
        "run.json": out / "run.json",
    }.items():
        output.print(f"wrote {name}: {path}", soft_wrap=True, highlight=False)
    pairs = outcome.pairs
    errors = int((outcome.results.analysis == "error").sum())
    output.print(
        f"{len(outcome.results)} result rows; {pairs['succeeded']} of {pairs['total']} "
        f"model/dataset pairs succeeded, {pairs['failed']} failed; {errors} error row(s)"
    )
    stages = Stages()
    stages.seconds = outcome.timings
    output.print(f"done in {time.perf_counter() - started:.1f} s: {stages.summary()}")
    if outcome.warnings:
        output.print(f"{len(outcome.warnings)} library warning(s) were logged to run.json")
    logged = _log_to_mlflow(out, config.mlflow) if config.mlflow is not None else True
    if pairs["succeeded"] == 0 or (strict and errors) or not logged:
        raise typer.Exit(1)


@app.command("init")
def init_command(
    study: Annotated[str, typer.Argument(help="A bundled study: demo or paper-2601.14774.")],
    folder: Annotated[Path, typer.Argument(help="Where to write STUDY.yaml (created).")],
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Copy a bundled study into an editable file (then `medprobe run FOLDER/STUDY.yaml`)."""
    from medprobe.study.config import copy_bundled

    target = copy_bundled(study, writable_dir(folder, "FOLDER"), force=force)
    output.print(f"wrote {target}; edit it, then: medprobe run {target} --out runs/{study}")


def _log_to_mlflow(out: Path, settings: MlflowConfig) -> bool:
    """Log the finished study to MLflow; a failure is one line (the results stay in ``out``)."""
    from medprobe.study.tracking import log_study

    try:
        run_id = log_study(out, settings)
    except MedprobeError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return False
    output.print(f"logged to MLflow: run {run_id}", highlight=False)
    return True


@app.command("report")
def report_command(out: Annotated[Path, typer.Argument(help="A study output folder.")]) -> None:
    """Rebuild report.html and figures/ from a study's stored results."""
    from medprobe.report.html import write_report
    from medprobe.report.outputs import load_outcome

    files = write_report(load_outcome(out), out)
    for name, path in files.items():
        output.print(f"wrote {name}: {path}", soft_wrap=True, highlight=False)


@app.command("compare")
def compare_command(
    out: Annotated[Path, typer.Argument(help="A study output folder.")],
    permutations: Annotated[int, typer.Option(help="Sign-flip permutations of the tests.")] = 9999,
    as_json: Annotated[bool, typer.Option("--json", help="Print compare.json instead.")] = False,
    resamples: Annotated[
        int, typer.Option(help="Bootstrap resamples of the text-side intervals (--text).")
    ] = 2000,
    text: Annotated[
        bool,
        typer.Option(
            "--text", help="The text side instead: prompts, expert vs lay names, text share."
        ),
    ] = False,
) -> None:
    """Rank models by linear-probe balanced accuracy (95% CI); paired permutation tests of every
    pair and of medical vs general (one Holm family). Writes compare.json and compare.csv."""
    import json

    from rich.table import Table

    from medprobe.study.compare import compare, comparison_json, write_comparison

    if text:
        from medprobe.study.text_compare import compare_text, text_tables

        if as_json:
            raise MedprobeError("compare --text prints tables; --json is for the image side")

        for comparison in compare_text(out, n_resamples=positive(resamples, "--resamples")):
            for table in text_tables(comparison):
                output.print(table)
        return

    comparisons = compare(out, n_permutations=positive(permutations, "--permutations"))
    paths = write_comparison(comparisons, out)
    if as_json:
        typer.echo(json.dumps(comparison_json(comparisons), indent=1))
        return
    for comparison in comparisons:
        table = Table(
            "rank",
            "model",
            "domain",
            "balanced accuracy [95% CI]",
            title=f"{comparison.dataset}: linear probe ({comparison.n} test images, "
            f"unit: {comparison.unit})",
        )
        for i, row in comparison.ranking.iterrows():
            table.add_row(
                str(i + 1),
                row.encoder,
                row.domain,
                f"{row.value:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]",
            )
        output.print(table)
        pairs = Table(
            "A",
            "B",
            "A - B [95% CI]",
            "p",
            "p (Holm)",
            title="balanced accuracy, paired on the same test images",
        )
        for row in comparison.pairs.itertuples():
            pairs.add_row(
                row.a,
                row.b,
                f"{row.difference:+.3f} [{row.ci_low:+.3f}, {row.ci_high:+.3f}]",
                f"{row.p_value:.4f}",
                f"{row.p_holm:.4f}",
            )
        output.print(pairs)
        d = comparison.domains
        if d is not None:
            output.print(
                f"medical - general (mean balanced accuracy): {d.difference:+.3f} "
                f"[{d.ci_low:+.3f}, {d.ci_high:+.3f}], p = {d.p_value:.4f}, "
                f"p (Holm) = {comparison.domains_p_holm:.4f}"
            )
        else:
            output.print("medical vs general: needs at least one model of each domain")
    for name, path in paths.items():
        output.print(f"wrote {name}: {path}")


@app.command("export")
def export_command(
    run: Annotated[Path, typer.Argument(help="A study run folder (the --out of medprobe run).")],
    out: Annotated[Path, typer.Argument(help="Folder to write the export to.")],
    to: Annotated[str, typer.Option(help="projector (TensorBoard) or fiftyone.")],
    max_points: Annotated[
        int | None,
        typer.Option(
            help="Images per dataset, a stratified seeded subsample, the same for every model "
            "(default: 5000 for projector, every image for fiftyone)."
        ),
    ] = None,
    thumbnail: Annotated[int, typer.Option(help="Sprite thumbnail side in pixels.")] = 64,
    data_root: Annotated[
        Path | None, typer.Option(help="Folder that relative dataset paths start from.")
    ] = None,
) -> None:
    """Export every model's embedding of every dataset of a finished study, with labels,
    splits, groups and images, to TensorBoard's embedding projector or to FiftyOne."""
    from medprobe.study.export import export_study

    if max_points is not None:
        positive(max_points, "--max-points")
    written, exported = export_study(
        run,
        to,
        writable_dir(out, "OUT"),
        max_points=max_points,
        thumbnail=positive(thumbnail, "--thumbnail"),
        data_root=data_root,
    )
    for part in exported:
        models = ", ".join(m.encoder for m in part.models)
        output.print(f"{part.dataset.name}: {part.note()}; models: {models}", highlight=False)
    output.print(f"wrote {written}", soft_wrap=True, highlight=False)


@app.command("overlay")
def overlay_command(
    model: Annotated[str, typer.Option(help="Zoo name, alias or local:/path.")],
    data: Annotated[Path, typer.Option(help="Class folders, a manifest or a .npz.")],
    source: Annotated[
        list[str] | None,
        typer.Option(help="true_class, wrong_class, random_word, clinical, fixed (repeatable)."),
    ] = None,
    text: Annotated[str, typer.Option(help="The text of a fixed overlay.")] = "",
    position: Annotated[str, typer.Option(help="top-left ... bottom-right, center, random.")] = (
        "bottom-right"
    ),
    size: Annotated[float, typer.Option(help="Text height / image height.")] = 0.12,
    font: Annotated[str, typer.Option(help="Bundled DejaVu name or a .ttf path.")] = (
        "DejaVuSans-Bold"
    ),
    modality: Annotated[str | None, typer.Option(help="e.g. dermoscopy.")] = None,
    cache: Annotated[Path | None, typer.Option(help="Feature store ($MEDPROBE_CACHE).")] = None,
    out: Annotated[Path | None, typer.Option(help="Also write overlay.csv here.")] = None,
    weights: Annotated[Path | None, typer.Option(help="Local weights for a zoo model.")] = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
) -> None:
    """How much do words written on the images move one model's features?"""
    from pydantic import ValidationError
    from rich.table import Table

    from medprobe.analysis.overlay_bias import overlay_bias
    from medprobe.analysis.rows import RowContext, RunInfo, results_frame
    from medprobe.analysis.suite import overlay_rows
    from medprobe.datasets import open_dataset
    from medprobe.encoders import create_encoder
    from medprobe.overlay import OverlaySpec

    try:
        specs = [
            OverlaySpec(source=s, text=text, position=position, size=size, font=font)
            for s in (source or ["wrong_class", "random_word"])
        ]
    except ValidationError as exc:
        first = exc.errors()[0]
        raise MedprobeError(f"overlay {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    dataset = open_dataset(data, modality=modality)
    encoder = create_encoder(model, weights=weights, device=device, precision=precision)
    store = writable_dir(cache or default_cache_dir(), "--cache")
    results = overlay_bias(encoder, dataset, specs, cache=store, show_progress=True)
    table = Table("overlay", "metric", "value [95% CI]", title=f"{encoder.name} on {dataset.name}")
    for result in results:
        for metric, est in result.scores.items():
            table.add_row(
                result.overlay.label,
                metric,
                f"{est.value:.3f} [{est.ci_low:.3f}, {est.ci_high:.3f}]",
            )
    output.print(table)
    if out is not None:
        writable_dir(out)
        context = RowContext.of(encoder, dataset)
        frame = results_frame(
            [row for r in results for row in overlay_rows(context, r)], RunInfo.new()
        )
        frame.to_csv(out / "overlay.csv", index=False)
        output.print(f"wrote {out / 'overlay.csv'}")


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Folder to write <class>/<id>.png and manifest.csv.")],
    n: Annotated[int, typer.Option(help="Number of images.")] = 200,
    kind: Annotated[str, typer.Option(help="dermoscopy or ultrasound.")] = "dermoscopy",
    difficulty: Annotated[str, typer.Option(help="easy, medium, hard or none.")] = "easy",
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 128,
    text: Annotated[
        str, typer.Option(help="Burned-in text: none, independent, label or correlated.")
    ] = "none",
    seed: Annotated[int, typer.Option(help="Seed; (seed, index) determines each image.")] = 0,
) -> None:
    """Write the synthetic lesion testbed as an image folder with a manifest."""
    positive(n, "--n")
    from medprobe.datasets.synthetic import DIFFICULTY, TextNuisance, synthetic, write_image_folder
    from medprobe.progress import progress_bar

    choices = {
        "--kind": (kind, ("dermoscopy", "ultrasound")),
        "--difficulty": (difficulty, DIFFICULTY),
        "--text": (text, ("none", "independent", "label", "correlated")),
    }
    for option, (value, allowed) in choices.items():
        if value not in allowed:
            raise MedprobeError(f"{option} must be one of {', '.join(allowed)}; got {value!r}")
    writable_dir(out)
    dataset = synthetic(
        kind, n, difficulty=difficulty, size=size, seed=seed, text=TextNuisance(mode=text)
    )
    with progress_bar() as bar:
        task = bar.add_task(f"writing {dataset.name}", total=n)
        manifest = write_image_folder(dataset, out, progress=lambda k: bar.advance(task, k))
    output.print(f"wrote {n} images and {manifest}")


models_app = typer.Typer(help="The encoder zoo: list, show and check encoders.")
app.add_typer(models_app, name="models")


@models_app.callback(invoke_without_command=True)
def models_list(
    ctx: typer.Context,
    domain: Annotated[str | None, typer.Option(help="medical, general or baseline.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable specs.")] = False,
) -> None:
    """List the encoder zoo, one line per model: name, domain, library, dim, image size
    (`medprobe models show NAME` or --json for the rest)."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from medprobe.encoders import list_specs

    if domain not in (None, "medical", "general", "baseline"):
        raise MedprobeError(f"--domain must be medical, general or baseline; got {domain!r}")
    specs = list_specs(domain)
    if as_json:
        typer.echo(json.dumps([s.model_dump(mode="json") for s in specs], indent=2))
        return
    table = Table("name", "domain", "library", "dim", "size", box=None, pad_edge=False)
    for spec in specs:
        table.add_row(
            spec.name,
            spec.domain,
            spec.library,
            str(spec.embed_dim),
            f"{spec.preprocessing.image_size}px",
        )
    output.print(table, no_wrap=True, overflow="ellipsis")
    output.print(f"{len(specs)} encoders; details: medprobe models show NAME", highlight=False)


@models_app.command("show")
def models_show(
    name: Annotated[str, typer.Argument(help="A zoo name, alias or hub id (hf-hub: too).")],
) -> None:
    """One encoder's full spec (JSON), the weights it would load now and how to get them."""
    from medprobe.encoders import get_spec
    from medprobe.encoders.downloads import cached_weights, missing_downloads

    spec = get_spec(name)
    record = spec.model_dump(mode="json")
    record["cached_weights"] = cached_weights(spec)
    record["download"] = missing_downloads(spec)
    typer.echo(json.dumps(record, indent=2))


@models_app.command("check")
def models_check(
    name: Annotated[str, typer.Argument(help="A zoo name, alias or local:/path.")],
    weights: WeightsOption = None,
    revision: RevisionOption = None,
    trust_remote_code: RemoteCodeOption = False,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
) -> None:
    """Load an encoder (from the hub, the HF cache or --weights) and embed one test image."""
    from PIL import Image

    from medprobe.encoders import create_encoder

    encoder = create_encoder(
        name,
        device=device,
        precision=precision,
        weights=weights,
        revision=revision,
        trust_remote_code=trust_remote_code,
    )
    features = encoder.encode_images(encoder.preprocess(Image.new("RGB", (256, 256))).unsqueeze(0))
    output.print(
        f"{encoder.name}: ok, {features.shape[1]}-d features on {encoder.device} in "
        f"{encoder.precision} from {encoder.weights_source or 'built-in/random weights'}"
    )


@app.command("layers")
def layers_command(
    name: Annotated[str, typer.Argument(help="A zoo name, alias or local:/path.")],
    weights: WeightsOption = None,
    revision: RevisionOption = None,
    trust_remote_code: RemoteCodeOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable taps.")] = False,
) -> None:
    """The layers a study can read a model at (``layers:`` in a study file): name, relative
    depth, pooling, width and the module tapped; built on the CPU."""
    from dataclasses import asdict

    from rich.table import Table

    from medprobe.encoders import create_encoder
    from medprobe.encoders.layers import POOLINGS

    encoder = create_encoder(
        name, weights=weights, revision=revision, trust_remote_code=trust_remote_code
    )
    taps = encoder.layers()
    if as_json:
        typer.echo(json.dumps([asdict(t) for t in taps], indent=2))
        return
    table = Table("layer", "depth", "pooling", "dim", "module", box=None, pad_edge=False)
    for tap in taps:
        table.add_row(tap.name, f"{tap.depth:.2f}", tap.pooling, str(tap.dim), tap.module or "-")
    output.print(table, no_wrap=True, overflow="ellipsis")
    for pooling in dict.fromkeys(t.pooling for t in taps):
        output.print(f"{pooling}: {POOLINGS[pooling]}", highlight=False)


@app.command("extract")
def extract_command(
    model: Annotated[str, typer.Option(help="Zoo name, alias or local:/path.")],
    data: Annotated[Path, typer.Option(help="Class folders, a manifest or a .npz.")],
    cache: Annotated[Path | None, typer.Option(help="Feature store ($MEDPROBE_CACHE).")] = None,
    modality: Annotated[str | None, typer.Option(help="e.g. dermoscopy.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per model call.")] = 32,
    workers: Annotated[int | None, typer.Option(help="Decoding processes.")] = None,
    dtype: Annotated[str, typer.Option(help="float32 or float16 storage.")] = "float32",
    engine: Annotated[str, typer.Option(help="local or ray.")] = "local",
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
    weights: Annotated[Path | None, typer.Option(help="Local weights for a zoo model.")] = None,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow remote model code.")] = False,
    revision: Annotated[str | None, typer.Option(help="Hub revision (commit).")] = None,
) -> None:
    """Extract (or reuse cached) features of one model on one dataset."""
    from medprobe.datasets import open_dataset
    from medprobe.encoders import create_encoder
    from medprobe.features import extract

    positive(batch_size, "--batch-size")
    store = writable_dir(cache or default_cache_dir(), "--cache")
    dataset = open_dataset(data, modality=modality)
    encoder = create_encoder(
        model,
        device=device,
        precision=precision,
        weights=weights,
        revision=revision,
        trust_remote_code=trust_remote_code,
    )
    fs = extract(
        encoder,
        dataset,
        cache=store,
        batch_size=batch_size,
        num_workers=workers,
        dtype=dtype,
        engine=engine,
    )
    output.print(
        f"{fs.encoder} on {fs.dataset} ({encoder.device}, {encoder.precision}): {len(fs)} images"
        f" x {fs.dim} dims, {len(fs.skipped)} skipped -> {fs.meta['cache_path']}"
    )


cache_app = typer.Typer(
    help="The feature store: list, inspect, verify, remove entries.", no_args_is_help=True
)
app.add_typer(cache_app, name="cache")
CacheOption = Annotated[Path | None, typer.Option(help="Feature store ($MEDPROBE_CACHE).")]


@cache_app.command("ls")
def cache_ls(
    cache: CacheOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per entry.")] = False,
) -> None:
    """One line per entry: key, encoder, dataset, images, dims, size, state."""
    from rich.table import Table

    from medprobe.features.store import FeatureStore

    rows = [entry.summary() for entry in FeatureStore(cache or default_cache_dir()).entries()]
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    table = Table("key", "encoder", "first extracted as", "images", "dims", "dtype", "MB", "state")
    for row in rows:
        table.add_row(
            row["key"],
            *(escape(str(row.get(c, "-"))) for c in ("encoder", "first_extracted_as")),
            *(str(row.get(c) if row.get(c) is not None else "-") for c in ("images", "dims")),
            str(row.get("dtype", "-")),
            f"{row['size_mb']:.1f}",
            escape(row["state"]),
        )
    output.print(table)


@cache_app.command("info")
def cache_info(
    key: Annotated[str, typer.Argument(help="Key or prefix.")], cache: CacheOption = None
) -> None:
    """The manifest of one entry (provenance: encoder spec, weights, data, overlay)."""
    import json

    from medprobe.features.store import FeatureStore

    typer.echo(
        json.dumps(FeatureStore(cache or default_cache_dir()).find(key).manifest(), indent=2)
    )


@cache_app.command("verify")
def cache_verify(
    key: Annotated[str | None, typer.Argument(help="Key or prefix (default all).")] = None,
    cache: CacheOption = None,
) -> None:
    """Check every file against its recorded SHA-256; exit 1 if anything is corrupted."""
    from medprobe.features.store import FeatureStore

    store = FeatureStore(cache or default_cache_dir())
    entries = [store.find(key)] if key else store.entries()
    bad = 0
    for entry in entries:
        problems = store.verify(entry)
        bad += bool(problems)
        output.print(f"{entry.path.name}: {'ok' if not problems else '; '.join(problems)}")
    if bad:
        raise typer.Exit(1)


@cache_app.command("rm")
def cache_rm(
    key: Annotated[str, typer.Argument(help="Key or prefix.")], cache: CacheOption = None
) -> None:
    """Remove one entry."""
    from medprobe.features.store import FeatureStore

    store = FeatureStore(cache or default_cache_dir())
    entry = store.find(key)
    store.remove(entry)
    output.print(f"removed {entry.path.name}")


data_app = typer.Typer(
    help="Look at a dataset before running anything on it.", no_args_is_help=True
)
app.add_typer(data_app, name="data")


@data_app.command("inspect")
def data_inspect(
    path: Annotated[
        Path, typer.Argument(help="Class folders, a .csv/.parquet manifest or a .npz.")
    ],
    modality: Annotated[str | None, typer.Option(help="e.g. dermoscopy, chest x-ray.")] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(help="Keep manifest rows where COLUMN=VALUE (repeatable)."),
    ] = None,
    group_column: Annotated[
        str | None, typer.Option(help="Manifest column of the patient / lesion.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable findings.")] = False,
) -> None:
    """Print modality, classes per split, image sizes and modes, and problems found."""
    from rich.table import Table

    from medprobe.datasets import open_dataset
    from medprobe.datasets.inspect import inspect_dataset

    options = {"where": _pairs(where, "--where"), "group_column": group_column}
    dataset = open_dataset(path, modality=modality, **options)
    found = inspect_dataset(dataset, show_progress=not as_json)
    if as_json:
        typer.echo(json.dumps(found.to_json(), indent=1))
        return
    output.print(
        f"[bold]{escape(found.name)}[/]  modality: {escape(found.modality)}  listed by: "
        f"{escape(found.listing)}  unit: {escape(found.unit)}"
    )
    table = Table("class", *found.counts, "total")
    classes = next(iter(found.counts.values()))
    for cls in classes:
        per_split = [found.counts[s][cls] for s in found.counts]
        table.add_row(cls, *map(str, per_split), str(sum(per_split)))
    totals = [sum(found.counts[s].values()) for s in found.counts]
    table.add_row("[bold]total[/]", *map(str, totals), str(sum(totals)))
    output.print(table)
    sizes = ", ".join(f"{w}x{h} ({n})" for (w, h), n in found.sizes.most_common(5))
    output.print(f"image sizes: {sizes or '-'}")
    output.print(f"image modes: {', '.join(f'{m} ({n})' for m, n in found.modes.most_common())}")
    if found.problems:
        output.print(f"[bold yellow]{len(found.problems)} problem(s):[/]")
        for image_id, reason in found.problems:
            output.print(
                f"  {printable(image_id)}: {printable(reason)}", highlight=False, markup=False
            )
    else:
        output.print("no problems found")


audit_app = typer.Typer(help="Audit a dataset for shortcuts.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("text")
def audit_text_command(
    data: Annotated[
        Path, typer.Argument(help="Class folders, a .csv/.parquet manifest or a .npz.")
    ],
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Measure this encoder's reliance (repeatable)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write results.csv/parquet, detections and report.html.")
    ] = None,
    mask: Annotated[str, typer.Option(help="How text is removed: fill or inpaint.")] = "fill",
    detector: Annotated[
        str, typer.Option(help="Text detector: rapidocr or easyocr-craft.")
    ] = "rapidocr",
    min_confidence: Annotated[
        float | None, typer.Option(help="Recogniser confidence a word needs, 0-1.")
    ] = None,
    marks: Annotated[
        bool, typer.Option(help="Also find non-word marks (coloured marks, frames, rulers).")
    ] = True,
    modality: Annotated[str | None, typer.Option(help="e.g. chest x-ray.")] = None,
    cache: Annotated[Path | None, typer.Option(help="Feature store ($MEDPROBE_CACHE).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of splits, probes and bootstraps.")] = 0,
    permutations: Annotated[
        int, typer.Option(help="Most label permutations of the leakage test (p >= 1/(n+1)).")
    ] = 100,
) -> None:
    """Find burned-in text and marks, test whether they leak the label, and whether models
    use them."""
    from rich.table import Table

    from medprobe.analysis.outcome import StudyOutcome, dataset_summary
    from medprobe.analysis.rows import RunInfo, results_frame
    from medprobe.audit import audit_text, create_detector
    from medprobe.datasets import open_dataset
    from medprobe.encoders import create_encoder

    if mask not in ("fill", "inpaint"):
        raise MedprobeError(f"--mask must be fill or inpaint; got {mask!r}")
    settings: dict[str, Any] = {} if marks else {"marks": None}
    if min_confidence is not None:
        settings["min_confidence"] = min_confidence
    found_by = create_detector(detector, **settings)  # a bad name or setting: one sentence
    dataset = open_dataset(data, modality=modality)
    encoders = [create_encoder(name) for name in model or []]
    store = writable_dir(cache or default_cache_dir(), "--cache")
    audit = audit_text(
        dataset,
        encoders,
        detector=found_by,
        mask=mask,  # type: ignore[arg-type]
        cache=store,
        seed=seed,
        permutations=positive(permutations, "--permutations"),
        show_progress=True,
    )
    table = Table(
        "class",
        "images with words [95% CI]",
        "images with marks [95% CI]",
        title=f"burned-in text and marks in {dataset.name} ({audit.detections.detector_label})",
    )
    for group, est in audit.prevalence.items():
        mark = audit.mark_prevalence[group]
        table.add_row(
            group,
            f"{est.value:.1%} [{est.ci_low:.1%}, {est.ci_high:.1%}] of {est.n}",
            f"{mark.value:.1%} [{mark.ci_low:.1%}, {mark.ci_high:.1%}]",
        )
    output.print(table)
    if not audit.tokens.empty:
        output.print("frequent words: " + ", ".join(audit.tokens.token.head(10)), markup=False)
    leak = audit.leakage
    verdict = "[bold red]LEAKS the label[/]" if leak.flagged_ else "no leakage detected"
    est = leak.balanced_accuracy_
    output.print(
        f"label from the detections alone: balanced accuracy {est.value:.3f} "
        f"[{est.ci_low:.3f}, {est.ci_high:.3f}] vs chance {leak.chance_:.3f}, "
        f"permutation p = {leak.p_value_:.3f}: {verdict}"
    )
    if audit.reliance:
        table = Table("model", "metric", "value [95% CI]", title="reliance: original vs masked")
        for name, scores in audit.reliance.items():
            for metric, est in scores.items():
                table.add_row(
                    name, metric, f"{est.value:.3f} [{est.ci_low:.3f}, {est.ci_high:.3f}]"
                )
        output.print(table)
    if out is not None:
        from medprobe.report.outputs import write_outputs
        from medprobe.report.thumbnails import captioned

        writable_dir(out)
        (out / "text_detections.json").write_text(json.dumps(audit.detections.to_json()))
        outcome = StudyOutcome(
            title=f"text audit: {dataset.name}",
            results=results_frame(audit.rows(seed), RunInfo.new()),
            encoders=[{**e.spec.describe(), "weights": e.weights_source or "-"} for e in encoders],
            datasets=[dataset_summary(dataset)],
            audit_examples={dataset.name: captioned(audit.examples())},
        )
        write_outputs(outcome, out)
        output.print(f"wrote {out / 'report.html'} and {out / 'results.csv'}")


def main(argv: list[str] | None = None) -> int:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    try:
        result = app(args=argv, standalone_mode=False, prog_name="medprobe")
    except MedprobeError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2
    except Exit as exc:
        return exc.exit_code
    except TyperException as exc:  # bad option, missing argument; no arguments shows help
        message = exc.format_message()
        if message:
            console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        return 2
    except Abort:
        console.print("aborted")
        return 130
    except (BrokenPipeError, KeyboardInterrupt):
        return 130
    return result if isinstance(result, int) else 0


def _entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    _entry()
