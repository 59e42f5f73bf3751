"""The study's layer-wise analyses (registry entries with the ``layers`` trigger): probes and
separability at every layer a study reads, each model's best layer against its final one,
and the layer x layer CKA of every pair of models (each with itself included).

Rows of a layer carry its name in ``layer`` (and its relative depth in ``param_depth``);
``final`` rows are the listed analyses' own, so they are the same with or without layers.
"""

from __future__ import annotations

from dataclasses import replace

from medprobe.analysis.layerwise import LayerCKA, best_layer
from medprobe.analysis.rows import Row
from medprobe.analysis.stats import Estimate
from medprobe.analysis.suite import (
    DatasetInput,
    UnitInput,
    fitted_linear_probes,
    knn,
    separability,
)
from medprobe.encoders.layers import FINAL
from medprobe.features.featureset import FeatureSet


def at_layer(unit: UnitInput, name: str, features: FeatureSet) -> UnitInput:
    """The unit's input with one layer's features, its rows labelled with that layer."""
    params = dict(unit.context.params)
    if name != FINAL:
        params["depth"] = float(features.meta["layer_depth"])
    context = replace(
        unit.context,
        layer=name,
        feature_key=str(features.meta.get("cache_key", "")),
        params=params,
    )
    return replace(unit, features=features, context=context, predictions={}, layers={})


def layer_probes(unit: UnitInput) -> list[Row]:
    """Separability, kNN and linear probes at every layer but ``final``, then the layer with
    the best cross-validated linear probe on the training images against ``final`` (paired
    test balanced-accuracy difference, analysis ``layer_best``)."""
    if len(unit.layers) < 2:
        return []
    rows: list[Row] = []
    probes = {}
    for name, features in unit.layers.items():
        at = at_layer(unit, name, features)
        probe_rows, fitted = fitted_linear_probes(at)
        probes[name] = fitted[0]
        if name != FINAL:
            rows += separability(at) + knn(at) + probe_rows
    test = unit.features.split("test")
    best, difference = best_layer(probes, groups=test.groups, seed=unit.seed)
    context = at_layer(unit, best, unit.layers[best]).context
    rows += context.rows(
        "layer_best",
        {"balanced_accuracy_minus_final": difference.estimate()},
        split="test",
        params={"protocol": unit.protocols[0]},
    )
    return rows


def layer_similarity(group: DatasetInput) -> list[Row]:
    """Unbiased linear CKA (jackknife CI) of every layer of every model with every layer of
    every model on the same images: each pair of models once (all layer pairs) and each model
    with itself (the upper triangle, diagonal included)."""
    labelled = [
        (u, name, fs) for u in group.units for name, fs in (u.layers or {FINAL: u.features}).items()
    ]
    if not any(len(u.layers) > 1 for u in group.units):
        return []
    cka = LayerCKA(seed=group.seed).fit([fs for _, _, fs in labelled])
    params = {"max_samples": cka.max_samples} if cka.subsampled_ else {}
    order = {id(u): i for i, u in enumerate(group.units)}
    rows: list[Row] = []
    for i, (unit_a, layer_a, fs_a) in enumerate(labelled):
        context = at_layer(unit_a, layer_a, fs_a).context
        for j, (unit_b, layer_b, _) in enumerate(labelled):
            if order[id(unit_b)] < order[id(unit_a)] or (unit_a is unit_b and j < i):
                continue
            est = Estimate(cka.cka_[i, j], cka.cka_low_[i, j], cka.cka_high_[i, j], cka.n_)
            rows += context.rows(
                "layer_similarity",
                {"linear_cka_unbiased": est},
                encoder_b=unit_b.encoder.name,
                layer_b=layer_b,
                params=params,
            )
    return rows
