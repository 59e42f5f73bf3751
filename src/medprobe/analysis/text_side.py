"""The text side of a vision-language model: how much of what the image features know its
text tower can reach, and how much that depends on the words chosen.

Three analysers, each a small estimator over a FeatureSet and the encoder's text tower:

- :class:`PromptSensitivity` -- zero-shot balanced accuracy for every prompt template and
  every class-name variant (the names as given, expert terms, lay terms, synonyms), the
  template ensemble per variant, and the spread (mean, SD, min, max) over templates and over
  variants, so "model A beats model B" can be checked against the choice of prompt;
- :class:`Terminology` -- expert vs lay class names, each as a template ensemble, and their
  paired difference on the same images;
- :class:`TextShare` -- the text-addressable share ``(BA_zero-shot - chance) / (BA_linear -
  chance)`` on the same test images, and the class-text geometry: the smallest cosine
  distance between two classes' prompt embeddings, and per class the cosine margin of its
  prompt embedding between its own images and the other classes' images.

Intervals are stratified percentile bootstraps over the evaluation images (the same resamples
for every template, variant and model quantity of one fit, so spreads and ratios are paired),
computed as :func:`medprobe.analysis.stats.bootstrap` does; they are conditional on the trained
linear probe and on the fixed set of templates measured. Their coverage of nominal 95%, measured
by simulation (``benchmarks/text_side_calibration.py``: 3 classes, 8 templates whose errors
share a per-image difficulty with correlation 0 or 0.7, 3,000 simulated test sets each, so a
cell's Monte-Carlo standard error is about 0.4 points), at 150 / 450 test images:

==================================  ===========  ===========
statistic                           150 images   450 images
==================================  ===========  ===========
one template's balanced accuracy    94.3-95.0%   94.2-94.5%
mean over templates                 92.8-95.4%   94.8-95.1%
SD over templates (basic, var.)     92.1-93.2%   93.1-93.5%
min / max over templates (winner)   96.7-97.0%   96.7-97.2%
expert - lay (paired)               94.3-95.3%   95.0-95.9%
text share, probe far above         94.6-94.8%   94.6-95.1%
text share, probe near chance       96.6-96.8%   94.7-94.9%
==================================  ===========  ===========

(the plain percentile interval of the SD, min and max covered 64-91%, the basic bootstrap of
the SD on its own scale 90.2-92.8% and of the min and max 86.5-94.7% at 150 images: hence the
variance scale for the SD; the min and max are the true balanced accuracy of the template that
measured worst / best, corrected for that selection by
:func:`~medprobe.analysis.winners.winner_estimate`, whose estimate is off by at most 0.005 on
average where the measured extreme is optimistic by 0.005-0.04. With the probe near chance the
share was undefined in 10.7% of the sets at 150 images, and its interval is about 4 wide where
defined.)

Prompts are embedded through :class:`medprobe.features.text_store.TextEmbeddings`, so each
exact prompt string is encoded once per encoder identity. The study adapters at the end
(``prompt_sensitivity``, ``terminology``, ``text_share``) turn fits into result rows; a
vision-only encoder gets one row saying it has no text tower (its text tower, such as
LLM2CLIP's 8B LLM, is only built when one of these analyses runs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from medprobe.analysis import metrics
from medprobe.analysis.base import BootstrapAnalyser, analyser
from medprobe.analysis.probes import LinearProbe
from medprobe.analysis.rows import Row
from medprobe.analysis.stats import (
    Estimate,
    contained,
    paired_bootstrap,
    percentile_interval,
    stratified_resamples,
)
from medprobe.analysis.winners import winner_estimate
from medprobe.analysis.zeroshot import unit_rows
from medprobe.datasets.prompts import NEUTRAL_PROMPTS, fill
from medprobe.datasets.vocabulary import ClassTerms
from medprobe.errors import MedprobeError
from medprobe.features.featureset import FeatureSet
from medprobe.features.text_store import TEXT_FOLDER, TextEmbeddings

if TYPE_CHECKING:
    from medprobe.analysis.suite import UnitInput
    from medprobe.encoders.base import Encoder

#: one row's parameters and its metrics
Result = tuple[dict[str, Any], dict[str, Estimate]]
SPREADS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mean": lambda x: x.mean(axis=0),
    "sd": lambda x: x.std(axis=0, ddof=1) if len(x) > 1 else np.full(x.shape[1:], np.nan),
    "min": lambda x: x.min(axis=0),
    "max": lambda x: x.max(axis=0),
}
ENSEMBLE = "ensemble"


@dataclass(frozen=True)
class NameVariant:
    """One way of naming every class: ``label`` (given, expert, lay, synonym N) and the names
    in class order."""

    label: str
    names: tuple[str, ...]


def name_variants(class_names: Sequence[str], terms: Mapping[str, ClassTerms]) -> list[NameVariant]:
    """The names as given, then expert, lay and each synonym position, for each variant that
    names every class (a variant with a gap would mix two vocabularies)."""
    variants = [NameVariant("given", tuple(class_names))]
    per_class = [terms.get(c, ClassTerms()) for c in class_names]
    for label in ("expert", "lay"):
        names = [getattr(t, label) for t in per_class]
        if all(names):
            variants.append(NameVariant(label, tuple(names)))
    for j in range(min((len(t.synonyms) for t in per_class), default=0)):
        variants.append(NameVariant(f"synonym {j + 1}", tuple(t.synonyms[j] for t in per_class)))
    return variants


def missing_terms(class_names: Sequence[str], terms: Mapping[str, ClassTerms]) -> list[str]:
    """Classes that lack an expert or a lay name."""
    found = [terms.get(c, ClassTerms()) for c in class_names]
    return [c for c, t in zip(class_names, found, strict=True) if not (t.expert and t.lay)]


def _evaluated(fs: FeatureSet) -> FeatureSet:
    """The test split when there is one (comparable with the probes), else every image."""
    return fs.split("test") if (fs.splits == "test").any() else fs


def _templates(given: Sequence[str] | None, fs: FeatureSet) -> list[str]:
    templates = list(given or fs.meta.get("prompts") or ["a photo of {}."])
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise MedprobeError(f"prompt templates must each contain '{{}}'; got {bad}")
    return templates


class PromptEmbeddings:
    """Class prompt embeddings of one encoder, through the text-embedding cache."""

    def __init__(self, encoder: Encoder, cache: TextEmbeddings | None = None) -> None:
        if not encoder.has_text:
            raise MedprobeError(f"{encoder.name} is a vision-only encoder; it has no text tower")
        self.encoder = encoder
        self.cache = cache or TextEmbeddings()

    def prefetch(self, templates: Sequence[str], variants: Sequence[NameVariant]) -> None:
        """Encode every prompt of these templates and variants in one batch (the cache then
        serves each later lookup)."""
        prompts = [fill(t, n) for v in variants for n in v.names for t in templates]
        self.cache.encode(self.encoder, list(dict.fromkeys(prompts)))

    def per_template(self, templates: Sequence[str], names: Sequence[str]) -> np.ndarray:
        """``[T, K, D]``: L2-normalised embedding of each template filled with each name."""
        prompts = [fill(t, n) for t in templates for n in names]
        embedded = unit_rows(self.cache.encode(self.encoder, prompts))
        return embedded.reshape(len(templates), len(names), -1)

    def ensemble(self, templates: Sequence[str], names: Sequence[str]) -> np.ndarray:
        """``[K, D]``: per class, the mean of its normalised prompt embeddings, re-normalised
        (CLIP's prompt ensemble; equal to :func:`~medprobe.analysis.zeroshot.
        class_text_embeddings`)."""
        return unit_rows(self.per_template(templates, names).mean(axis=0))


class Resampled:
    """Statistics of fixed per-image quantities on the evaluation images and on one shared set
    of stratified bootstrap resamples (the ones :func:`~medprobe.analysis.stats.bootstrap`
    draws for the same labels and seed), so differences, spreads and ratios are paired."""

    def __init__(self, labels: np.ndarray, n_resamples: int, confidence: float, seed: int):
        self.labels = np.asarray(labels)
        self.k = int(self.labels.max()) + 1 if len(self.labels) else 0
        self.n = len(self.labels)
        self.confidence = confidence
        self.idx = stratified_resamples(self.labels, n_resamples, seed)
        self.identity = np.arange(self.n)[None, :]
        #: balanced accuracy of a classifier that guesses (1 / classes present)
        self.chance = 1.0 / len(np.unique(self.labels)) if self.n else float("nan")

    def both(self, statistic: Callable[[np.ndarray], np.ndarray]) -> tuple[float, np.ndarray]:
        """``statistic`` on the images as they are and on every resample."""
        return float(statistic(self.identity)[0]), statistic(self.idx)

    def balanced_accuracy(self, y_pred: np.ndarray) -> tuple[float, np.ndarray]:
        return self.both(
            metrics.statistic(metrics.balanced_accuracy, self.labels, np.asarray(y_pred), self.k)
        )

    def estimate(self, value: float, samples: np.ndarray) -> Estimate:
        """The point value and the percentile interval of its resamples, widened to contain
        the value (NaN: undefined)."""
        return contained(value, *percentile_interval(samples, self.confidence), self.n)

    def spreads(self, values: np.ndarray, samples: np.ndarray) -> dict[str, Estimate]:
        """Mean, SD, min and max over the first axis of per-classifier values ``[P]`` and their
        resamples ``[P, B]``.

        The SD, min and max of measured accuracies are biased away from those of the
        classifiers' true accuracies (measurement noise adds spread; the best of eight noisy
        values is optimistic), and a resample adds the same bias again, so the plain percentile
        interval misses. Min and max: the true accuracy of the template that measured worst /
        best, corrected for that selection (:func:`~medprobe.analysis.winners.winner_estimate`,
        Andrews, Kitagawa & McCloskey's hybrid; the bias-corrected basic bootstrap of the
        extreme covered 86-95% in simulation, a sup-t bound on the extreme of the true values
        98.7-99.8%). SD: bias-corrected with the basic (reverse-percentile) bootstrap on the
        variance scale, where the spread that noise adds is additive: value ``sqrt(2 s^2 -
        mean(s*^2))``, interval ``sqrt([2 s^2 - q_hi, 2 s^2 - q_lo])`` of the resampled
        ``s*^2``, kept >= 0 (on the SD scale it covered 90.2-92.8% at 150 images)."""
        out = {}
        for name, f in SPREADS.items():
            raw, resampled = float(f(values[:, None])[0]), f(samples)
            if name == "mean" or not np.isfinite(raw):  # a mean is unbiased: as it is
                out[f"balanced_accuracy_{name}"] = self.estimate(raw, resampled)
                continue
            if name in ("min", "max"):
                value, low, high = winner_estimate(values, samples, self.confidence, name)
                out[f"balanced_accuracy_{name}"] = contained(value, low, high, self.n)
                continue
            # on the variance scale, where the bias that noise adds is additive
            raw2, res2 = raw**2, resampled**2
            low, high = percentile_interval(res2, self.confidence)
            value, low, high = 2 * raw2 - np.nanmean(res2), 2 * raw2 - high, 2 * raw2 - low
            value, low, high = (float(np.sqrt(max(x, 0.0))) for x in (value, low, high))
            out[f"balanced_accuracy_{name}"] = Estimate(
                value, min(low, value), max(high, value), self.n
            )
        return out


def zero_shot_predictions(images: np.ndarray, class_embeddings: np.ndarray) -> np.ndarray:
    """Class with the highest cosine similarity; ``class_embeddings`` ``[..., K, D]`` unit."""
    return np.argmax(unit_rows(images) @ np.swapaxes(class_embeddings, -1, -2), axis=-1)


@analyser
class PromptSensitivity(BootstrapAnalyser):
    """Zero-shot balanced accuracy per template and per class-name variant.

    ``templates`` (default: the dataset's) form the ensemble; each of them and each of
    ``extra_templates`` (modality-free phrasings) is also measured alone. Variants are the
    class names as given, the expert and lay names and the synonyms of ``terms`` (each only
    when it names every class). Fitted: ``templates_``, ``variants_``, ``y_pred_``
    (``[variant, template, image]``), ``ensemble_pred_`` (``[variant, image]``) and
    ``results_``: (params, metrics) per row -- balanced accuracy per (template, variant) and
    per variant's ensemble; ``balanced_accuracy_{mean,sd,min,max}`` over templates per variant
    (``spread = templates``) and over the variants' ensembles (``spread = class_names``).
    The spread is over the fixed set of templates measured; its interval is over images.
    """

    encoder: Encoder
    templates: Sequence[str] | None = None
    extra_templates: Sequence[str] = NEUTRAL_PROMPTS
    terms: Mapping[str, ClassTerms] | None = None
    cache: TextEmbeddings | None = None

    def fit(self, fs: FeatureSet) -> Self:
        fs.check_finite()
        prompts = PromptEmbeddings(self.encoder, self.cache)
        ensemble = _templates(self.templates, fs)
        self.templates_ = list(dict.fromkeys([*ensemble, *self.extra_templates]))
        self.variants_ = name_variants(fs.class_names, self.terms or {})
        evaluated = _evaluated(fs)
        boot = Resampled(evaluated.labels, self.n_resamples, self.confidence, self.seed)
        prompts.prefetch(self.templates_, self.variants_)
        shape = (len(self.variants_), len(self.templates_), len(evaluated))
        self.y_pred_ = np.zeros(shape, dtype=np.int64)
        self.ensemble_pred_ = np.zeros((len(self.variants_), len(evaluated)), dtype=np.int64)
        self.results_: list[Result] = []
        ensemble_values, ensemble_samples = [], []
        for v, variant in enumerate(self.variants_):
            per_template = prompts.per_template(self.templates_, variant.names)
            self.y_pred_[v] = zero_shot_predictions(evaluated.features, per_template)
            self.ensemble_pred_[v] = zero_shot_predictions(
                evaluated.features, prompts.ensemble(ensemble, variant.names)
            )
            values, samples = [], []
            for t, template in enumerate(self.templates_):
                value, resampled = boot.balanced_accuracy(self.y_pred_[v, t])
                values.append(value)
                samples.append(resampled)
                params = {"template": template, "class_names": variant.label}
                self.results_.append(
                    (params, {"balanced_accuracy": boot.estimate(value, resampled)})
                )
            value, resampled = boot.balanced_accuracy(self.ensemble_pred_[v])
            ensemble_values.append(value)
            ensemble_samples.append(resampled)
            params = {"template": ENSEMBLE, "class_names": variant.label}
            self.results_.append((params, {"balanced_accuracy": boot.estimate(value, resampled)}))
            self.results_.append(
                (
                    {"class_names": variant.label, "spread": "templates"},
                    boot.spreads(np.array(values), np.stack(samples)),
                )
            )
        self.results_.append(
            (
                {"template": ENSEMBLE, "spread": "class_names"},
                boot.spreads(np.array(ensemble_values), np.stack(ensemble_samples)),
            )
        )
        self.chance_ = boot.chance
        return self


@analyser
class Terminology(BootstrapAnalyser):
    """Expert vs lay class names: zero-shot balanced accuracy of each (the template ensemble
    of ``templates``, default the dataset's) and the paired difference expert - lay on the same
    images (paired stratified bootstrap CI and p-value,
    :func:`~medprobe.analysis.stats.paired_bootstrap`).

    Every class needs an expert and a lay name in ``terms`` (else a clear error naming the
    classes that lack one). Fitted: ``y_pred_`` (``{"expert", "lay"} -> [image]``) and
    ``results_`` (params, metrics) per row.
    """

    encoder: Encoder
    templates: Sequence[str] | None = None
    terms: Mapping[str, ClassTerms] | None = None
    cache: TextEmbeddings | None = None

    def fit(self, fs: FeatureSet) -> Self:
        fs.check_finite()
        terms = self.terms or {}
        lacking = missing_terms(fs.class_names, terms)
        if lacking:
            raise MedprobeError(
                f"terminology needs an expert and a lay name for every class; "
                f"{', '.join(map(repr, lacking))} of {fs.dataset!r} have none (add them under "
                "vocabulary: in the study file's dataset entry)"
            )
        prompts = PromptEmbeddings(self.encoder, self.cache)
        templates = _templates(self.templates, fs)
        evaluated = _evaluated(fs)
        boot = Resampled(evaluated.labels, self.n_resamples, self.confidence, self.seed)
        variants = {v.label: v for v in name_variants(fs.class_names, terms)}
        prompts.prefetch(templates, [variants["expert"], variants["lay"]])
        self.y_pred_ = {
            label: zero_shot_predictions(
                evaluated.features, prompts.ensemble(templates, variants[label].names)
            )
            for label in ("expert", "lay")
        }
        self.results_: list[Result] = [
            ({"terms": label}, {"balanced_accuracy": boot.estimate(*boot.balanced_accuracy(p))})
            for label, p in self.y_pred_.items()
        ]
        k = boot.k
        diff = paired_bootstrap(
            metrics.statistic(
                metrics.balanced_accuracy, evaluated.labels, self.y_pred_["expert"], k
            ),
            metrics.statistic(metrics.balanced_accuracy, evaluated.labels, self.y_pred_["lay"], k),
            evaluated.labels,
            n_resamples=self.n_resamples,
            confidence=self.confidence,
            seed=self.seed,
        )
        n = diff.n
        self.results_.append(
            (
                {"terms": "expert - lay"},
                {
                    "balanced_accuracy_difference": Estimate(
                        diff.difference, diff.ci_low, diff.ci_high, n
                    ),
                    "p_value": Estimate(diff.p_value, float("nan"), float("nan"), n),
                },
            )
        )
        self.difference_ = diff
        return self


@analyser
class TextShare(BootstrapAnalyser):
    """How much of the image features' class information the text tower reaches.

    ``text_share = (BA_zs - chance) / (BA_linear - chance)`` on the same test images: the
    zero-shot classifier (template ensemble of ``templates`` filled with ``class_names``,
    default the names as given) against the linear probe (``linear_predictions`` on the test
    split, else a :class:`~medprobe.analysis.probes.LinearProbe` fitted here), chance being
    1 / classes. Undefined (NaN) when the probe does not beat chance on the test images (the
    features then hold no class information for the text to reach). Also
    ``zero_shot_above_chance`` and ``linear_probe_above_chance``, and the class-text geometry:
    ``min_class_text_distance`` (smallest cosine distance between two classes' prompt
    ensembles; no sampling error, n = classes) and ``cosine_margin`` per class (over the
    class's images, cosine to its own prompt ensemble minus the mean cosine to the other
    classes' ensembles) and over classes (their mean). A per-class margin also carries the
    prompts' common pull (one class's prompt closer to every image, which is what makes a
    zero-shot classifier predict one class everywhere); the mean over classes cancels it and
    is 0 when the text knows nothing of the classes. Fitted: ``results_`` per row.
    """

    encoder: Encoder
    templates: Sequence[str] | None = None
    class_names: Sequence[str] | None = None
    linear_predictions: np.ndarray | None = None
    cache: TextEmbeddings | None = None

    def fit(self, fs: FeatureSet) -> Self:
        fs.check_finite()
        if not (fs.splits == "test").any():
            raise MedprobeError(f"dataset {fs.dataset!r} has no 'test' split to score a probe on")
        prompts = PromptEmbeddings(self.encoder, self.cache)
        names = list(self.class_names or fs.class_names)
        if len(names) != len(fs.class_names):
            raise MedprobeError(f"{len(names)} class names for {len(fs.class_names)} classes")
        test = fs.split("test")
        linear = self.linear_predictions
        if linear is None:
            linear = LinearProbe(seed=self.seed).fit(fs).y_pred_
        linear = np.asarray(linear)
        if linear.shape != test.labels.shape:
            raise MedprobeError("linear_predictions must give one class per test image")
        self.text_embeddings_ = prompts.ensemble(_templates(self.templates, fs), names)
        self.y_pred_ = zero_shot_predictions(test.features, self.text_embeddings_)
        self.linear_pred_ = linear
        boot = Resampled(test.labels, self.n_resamples, self.confidence, self.seed)
        chance = boot.chance
        zs_value, zs_samples = boot.balanced_accuracy(self.y_pred_)
        lp_value, lp_samples = boot.balanced_accuracy(linear)
        with np.errstate(divide="ignore", invalid="ignore"):
            share_samples = np.where(
                lp_samples > chance, (zs_samples - chance) / (lp_samples - chance), np.nan
            )
        lower = percentile_interval(lp_samples - chance, self.confidence)[0]
        share = (zs_value - chance) / (lp_value - chance) if lower > 0 else float("nan")
        scores = {
            "text_share": boot.estimate(share, share_samples),
            "zero_shot_above_chance": boot.estimate(zs_value - chance, zs_samples - chance),
            "linear_probe_above_chance": boot.estimate(lp_value - chance, lp_samples - chance),
        }
        k = len(names)
        similarity = self.text_embeddings_ @ self.text_embeddings_.T
        off_diagonal = similarity[~np.eye(k, dtype=bool)]
        scores["min_class_text_distance"] = Estimate.exact(1.0 - float(off_diagonal.max()), k)
        cosine = unit_rows(test.features) @ self.text_embeddings_.T
        per_class = [_margin(cosine, test.labels, c) for c in range(k)]
        present = [c for c in range(k) if (test.labels == c).any()]
        margins = [boot.both(per_class[c]) for c in present]
        scores["cosine_margin"] = boot.estimate(
            float(np.mean([m[0] for m in margins])), np.mean([m[1] for m in margins], axis=0)
        )
        self.results_: list[Result] = [({}, scores)]
        self.results_ += [
            ({"class": fs.class_names[c]}, {"cosine_margin": boot.estimate(*m)})
            for c, m in zip(present, margins, strict=True)
        ]
        self.share_ = scores["text_share"]
        return self


def _margin(cosine: np.ndarray, labels: np.ndarray, c: int) -> Callable[[np.ndarray], np.ndarray]:
    """``idx -> [B]``: over the images of class ``c``, the mean of (cosine to class ``c``'s
    prompts - mean cosine to the other classes' prompts) (NaN where a resample has none)."""
    others = np.delete(cosine, c, axis=1).mean(axis=1)
    margin = cosine[:, c] - others

    def statistic(idx: np.ndarray) -> np.ndarray:
        own = labels[idx] == c
        with np.errstate(divide="ignore", invalid="ignore"):
            return (margin[idx] * own).sum(axis=1) / own.sum(axis=1)

    return statistic


# ------------------------------------------------------------------------ study adapters


def text_cache(unit: UnitInput) -> TextEmbeddings:
    """The unit's text-embedding cache: next to its feature store, or in memory."""
    return TextEmbeddings(unit.store.root / TEXT_FOLDER if unit.store is not None else None)


def no_text_tower(unit: UnitInput, analysis: str) -> Row:
    """The row a vision-only encoder gets instead of a text-side result (not an error: the
    analysis does not apply to it)."""
    nan = float("nan")
    row = unit.context.rows(analysis, {"no_text_tower": Estimate(nan, nan, nan, 0)})[0]
    return replace(
        row,
        error=f"{unit.encoder.name} is a vision-only encoder (no text tower): {analysis} "
        "does not apply",
    )


def _rows(unit: UnitInput, analysis: str, results: list[Result], split: str) -> list[Row]:
    # the text side's bootstraps resample images, not groups: its rows say so
    context = replace(unit.context, unit="image")
    return [
        row
        for params, scores in results
        for row in context.rows(analysis, scores, split=split, params=params)
    ]


def _split(fs: FeatureSet) -> str:
    return "test" if (fs.splits == "test").any() else "all"


def _keep(unit: UnitInput, evaluated: FeatureSet, **predictions: np.ndarray) -> None:
    """Per-image predictions for ``medprobe compare --text`` (paired across models)."""
    kept = unit.predictions.setdefault(
        "text_side",
        {
            "ids": evaluated.ids.tolist(),
            "y_true": evaluated.labels.tolist(),
            "n_classes": len(evaluated.class_names),
        },
    )
    kept.update({k: np.asarray(v).tolist() for k, v in predictions.items()})


def prompt_sensitivity(unit: UnitInput) -> list[Row]:
    """Zero-shot balanced accuracy per template and class-name variant, with spreads."""
    if not unit.encoder.has_text:
        return [no_text_tower(unit, "prompt_sensitivity")]
    fit = PromptSensitivity(
        unit.encoder,
        templates=unit.dataset.prompts,
        terms=unit.dataset.class_terms(),
        cache=text_cache(unit),
        seed=unit.seed,
    ).fit(unit.features)
    return _rows(unit, "prompt_sensitivity", fit.results_, _split(unit.features))


def terminology(unit: UnitInput) -> list[Row]:
    """Expert vs lay class names (a row saying which classes lack them when some do)."""
    if not unit.encoder.has_text:
        return [no_text_tower(unit, "terminology")]
    terms = unit.dataset.class_terms()
    lacking = missing_terms(unit.dataset.class_names, terms)
    if lacking:
        nan = float("nan")
        row = unit.context.rows("terminology", {"no_terms": Estimate(nan, nan, nan, 0)})[0]
        return [
            replace(
                row,
                error=f"no expert and lay names for class(es) {', '.join(map(repr, lacking))} "
                f"({unit.dataset.modality}); add them under vocabulary: in the dataset entry",
            )
        ]
    fit = Terminology(
        unit.encoder,
        templates=unit.dataset.prompts,
        terms=terms,
        cache=text_cache(unit),
        seed=unit.seed,
    ).fit(unit.features)
    _keep(unit, _evaluated(unit.features), expert=fit.y_pred_["expert"], lay=fit.y_pred_["lay"])
    return _rows(unit, "terminology", fit.results_, _split(unit.features))


def _linear_predictions(unit: UnitInput) -> np.ndarray | None:
    """The linear probe's test predictions when the unit's linear_probe kept them for exactly
    these test images (else TextShare fits its own)."""
    kept = unit.predictions
    fs = unit.features
    if "y_pred" not in kept or kept.get("ids") != fs.ids[fs.splits == "test"].tolist():
        return None
    return np.asarray(kept["y_pred"])


def text_share(unit: UnitInput) -> list[Row]:
    """Text-addressable share and class-text geometry, with the expert names when every class
    has one (the names as given otherwise; ``param_class_names`` says which)."""
    if not unit.encoder.has_text:
        return [no_text_tower(unit, "text_share")]
    variants = {
        v.label: v for v in name_variants(unit.dataset.class_names, unit.dataset.class_terms())
    }
    variant = variants.get("expert", variants["given"])
    fit = TextShare(
        unit.encoder,
        templates=unit.dataset.prompts,
        class_names=variant.names,
        linear_predictions=_linear_predictions(unit),
        cache=text_cache(unit),
        seed=unit.seed,
    ).fit(unit.features)
    _keep(unit, unit.features.split("test"), zero_shot=fit.y_pred_, linear=fit.linear_pred_)
    unit.predictions["text_side"]["share_names"] = variant.label
    results = [({**params, "class_names": variant.label}, s) for params, s in fit.results_]
    return _rows(unit, "text_share", results, "test")
