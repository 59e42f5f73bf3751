"""Intervals that hold: the row invariant on a whole study, the boundary, groups, the compare
metric and level. (Coverage in every setting: ``benchmarks/calibration.py``.)"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from medprobe.analysis import Geometry, KNNProbe, Separability
from medprobe.analysis.rows import RowContext
from medprobe.analysis.scores import classification_scores
from medprobe.analysis.stats import Estimate, bootstrap, holm, paired_difference, sign_flip_test
from medprobe.analysis.text_side import Resampled
from medprobe.datasets import synthetic
from medprobe.datasets.base import Dataset
from medprobe.datasets.splits import assign_splits
from medprobe.features import FeatureSet


class Grouped(Dataset):
    """A synthetic dataset whose images come in groups of ``size`` (a "lesion" column),
    split by group."""

    def __init__(self, base: Dataset, size: int = 3) -> None:
        records = [replace(r, group=f"L{i // size}") for i, r in enumerate(base.records)]
        super().__init__(
            f"{base.name}-grouped",
            base.modality,
            base.class_names,
            assign_splits(records, seed=0),
            base.prompts,
            group_column="lesion",
        )
        self.base = base

    def load_image(self, record, reduce_to=None):
        return self.base.load_image(record, reduce_to)

    def image_content(self):
        return self.base.image_content()


def _check_invariant(results: pd.DataFrame) -> None:
    finite = results.value.notna()
    with_interval = finite & results.ci_low.notna()
    rows = results[with_interval]
    bad = rows[(rows.ci_low > rows.value) | (rows.value > rows.ci_high)]
    assert bad.empty, bad[["encoder", "analysis", "metric", "value", "ci_low", "ci_high"]]
    nan_rows = results[~finite]
    assert nan_rows.ci_low.isna().all() and nan_rows.ci_high.isna().all()
    # an interval is either both ends or none
    assert (results.ci_low.isna() == results.ci_high.isna()).all()


@pytest.fixture(scope="module")
def grid():
    from medprobe.study.runner import run_grid

    plain = synthetic("dermoscopy", 90, difficulty="medium", size=64, name="plain")
    grouped = Grouped(synthetic("ultrasound", 90, difficulty="easy", size=64, seed=3))
    return run_grid(["pixels", "handcrafted"], [plain, grouped], show_progress=False)


def test_every_row_of_a_study_contains_its_value(grid):
    results = grid.results
    assert {"separability", "knn", "linear_probe", "few_shot", "geometry", "similarity"} <= set(
        results.analysis
    )
    _check_invariant(results)
    # every interval-bearing analysis reported intervals (CKA included; mutual kNN has none)
    similarity = results[results.analysis == "similarity"]
    assert similarity[similarity.metric == "linear_cka_unbiased"].ci_low.notna().all()
    assert similarity[similarity.metric == "mutual_knn_k10"].ci_low.isna().all()
    # the unit is the dataset's group column where it has one
    by_dataset = results[results.analysis == "knn"].groupby("dataset").unit.first()
    assert by_dataset.to_dict() == {"plain": "image", "synthetic-ultrasound-grouped": "lesion"}


def test_rows_refuse_a_value_outside_its_interval():
    context = RowContext("m", "d")
    with pytest.raises(ValueError, match="outside its interval"):
        context.rows("x", {"metric": Estimate(0.9, 0.1, 0.5, 10)})
    nan = context.rows("x", {"metric": Estimate(float("nan"), 0.1, 0.5, 10)})[0]
    assert math.isnan(nan.ci_low) and math.isnan(nan.ci_high)
    rounding = context.rows("x", {"metric": Estimate(1.0, 0.9, 1.0 - 1e-15, 10)})[0]
    assert rounding.ci_high == 1.0
    # the shared bootstrap gives a NaN estimate a NaN interval
    est = bootstrap(lambda idx: np.full(len(idx), np.nan), np.arange(10) % 2, n_resamples=20)
    assert math.isnan(est.ci_low) and math.isnan(est.ci_high)


def test_cluster_indices_keep_their_estimate_inside():
    """The issue's failing cases: the bootstrap put effective rank 272 in [183, 185] (N=300,
    D=512) and CH 3.85 in [4.22, 4.24]; the jackknife intervals contain their estimate and
    values are scikit-learn's."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 512)).astype(np.float32)
    y = np.arange(300) % 2
    fs = FeatureSet(
        x, y, np.arange(300).astype(str), np.array(["train"] * 300), ["a", "b"], "g", "d"
    )
    geo = Geometry().fit(fs).scores_["effective_rank"]
    assert geo.ci_low < geo.value < geo.ci_high and geo.value > 250
    sep = Separability(n_resamples=50).fit(fs).scores_
    for metric, reference in (
        ("calinski_harabasz", skm.calinski_harabasz_score),
        ("davies_bouldin", skm.davies_bouldin_score),
    ):
        est = sep[metric]
        assert est.value == pytest.approx(reference(x.astype(np.float64), y))
        assert est.ci_low < est.value < est.ci_high


def test_balanced_accuracy_keeps_width_at_the_boundary():
    """A minority recall of 0/20 next to 198/200 (kNN on an imbalanced test set): the old
    stratified bootstrap gave width 0.011 and covered 13%; per-class intervals keep width."""
    y = np.repeat([0, 1], [200, 20])
    pred = np.zeros(220, dtype=int)
    pred[:2] = 1
    scores = np.eye(2)[pred] * 0.8 + 0.1
    est = classification_scores(y, scores)["balanced_accuracy"]
    assert est.value == pytest.approx(0.495)
    assert est.ci_high - est.ci_low > 0.05 and est.ci_high > 0.55
    perfect = classification_scores(np.repeat([0, 1], 25), np.eye(2)[np.repeat([0, 1], 25)])
    for metric in ("accuracy", "balanced_accuracy", "macro_f1", "auroc"):
        assert perfect[metric].value == 1.0 and perfect[metric].ci_low < 0.97, metric


@pytest.mark.parametrize(
    ("recalls", "sizes", "most"),
    [
        # near the boundary, imbalanced: conservative (the union is 20% wider than MOVER here)
        ([0.97, 0.12], [200, 20], 1.0),
        ([0.85] * 20, [10] * 20, 0.99),  # many small classes: MOVER alone covered 0.91
        ([0.9, 0.4], [90, 10], 0.99),  # heavy imbalance: the stratified Wilson alone covered 0.90
    ],
)
def test_balanced_accuracy_covers(recalls, sizes, most):
    rng = np.random.default_rng(0)
    recalls, sizes = np.array(recalls), np.array(sizes)
    k = len(recalls)
    y = np.repeat(np.arange(k), sizes)
    covered, widths = 0, []
    for _ in range(400):
        correct = rng.random(len(y)) < recalls[y]
        scores = np.eye(k)[np.where(correct, y, (y + 1) % k)]
        est = classification_scores(y, scores)["balanced_accuracy"]
        covered += est.ci_low <= recalls.mean() <= est.ci_high
        widths.append(est.ci_high - est.ci_low)
    assert 0.93 <= covered / 400 <= most
    # no wider than twice the normal-theory interval of the mean recall
    wald = 2 * 1.96 * math.sqrt(np.sum(recalls * (1 - recalls) / sizes)) / k
    assert np.mean(widths) < 2 * wald


def test_few_shot_auroc_interval_keeps_width_near_one():
    """Near AUROC = 1 the test-set jackknife rests on a few discordant pairs (16-shot
    coverage 0.79 without a floor): the interval is at least the Hanley-McNeil floor's."""
    from medprobe.analysis import FewShotProbe
    from medprobe.analysis.scores import HM_FLOOR, hanley_mcneil_variance

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 16)) * 1.0
    y = np.repeat(np.arange(3), 130)
    x = (rng.standard_normal((len(y), 16)) + centres[y]).astype(np.float32)
    splits = np.where(np.arange(len(y)) % 130 < 100, "train", "test")
    fs = FeatureSet(x, y, np.arange(len(y)).astype(str), splits, ["a", "b", "c"], "m", "d")
    est = FewShotProbe(shots=(16,), seed=0).fit(fs).scores_[16]["auroc"]
    assert 0.99 < est.value < 1.0
    test_y = y[splits == "test"]
    floor_sd = math.sqrt(HM_FLOOR / 2 * float(hanley_mcneil_variance(est.value, test_y, 3)))
    assert est.value - est.ci_low >= 4 * floor_sd  # 2.1 without the floor


def test_near_duplicate_groups_cover_the_new_group_truth():
    """Four near-identical images per patient: split and scored by patient, the kNN interval
    covers the accuracy on new patients; split and scored by image it does not."""
    rng = np.random.default_rng(0)
    dim, k = 8, 5

    def patients(n_groups, shift=1.4):
        labels = rng.integers(0, 2, n_groups)
        centre = (
            rng.standard_normal((n_groups, dim)) * 1.0 + shift * labels[:, None] * np.eye(dim)[0]
        )
        x = np.repeat(centre, 4, axis=0) + rng.standard_normal((4 * n_groups, dim)) * 0.05
        return x.astype(np.float32), np.repeat(labels, 4), np.repeat(np.arange(n_groups), 4)

    covered_groups = covered_images = 0
    reps = 60
    for _ in range(reps):
        x, y, g = patients(60)
        test_group = rng.random(60) < 0.35
        by_group = np.where(test_group[g], "test", "train")
        by_image = np.where(rng.random(len(y)) < 0.35, "test", "train")
        fresh_x, fresh_y, _ = patients(4000)
        for splits, groups in ((by_group, g.astype(str)), (by_image, None)):
            fs = FeatureSet(
                x, y, np.arange(len(y)).astype(str), splits, ["a", "b"], "m", "d", groups=groups
            )
            probe = KNNProbe(k=k, faiss_threshold=float("inf")).fit(fs)
            train = fs.split("train")
            from sklearn.neighbors import KNeighborsClassifier

            knn = KNeighborsClassifier(k, metric="cosine", algorithm="brute")
            truth = knn.fit(train.features, train.labels).score(fresh_x, fresh_y)
            est = probe.scores_["accuracy"]
            hit = est.ci_low <= truth <= est.ci_high
            if groups is None:
                covered_images += hit
            else:
                covered_groups += hit
    assert covered_groups / reps >= 0.88
    assert covered_images / reps < 0.6


def test_compare_uses_balanced_accuracy_inside_the_holm_family(tmp_path):
    """180/20 test images: two general models predict the minority class, two medical models
    never do. Plain accuracy favours the medical ones; balanced accuracy (the ranking's metric)
    the general ones -- the domain test must agree with the ranking."""
    from medprobe.analysis.rows import RowContext, results_frame
    from medprobe.report.outputs import write_results
    from medprobe.study.compare import compare, write_comparison
    from medprobe.study.units import Unit, UnitStore

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], [180, 20])
    ids = [f"i{i}" for i in range(200)]
    store = UnitStore(tmp_path)
    rows = []
    for name, domain in (
        ("g1", "general"),
        ("g2", "general"),
        ("m1", "medical"),
        ("m2", "medical"),
    ):
        if domain == "general":  # finds most of the minority, at a cost on the majority
            pred = np.where(y == 1, rng.random(200) < 0.8, rng.random(200) < 0.15).astype(int)
        else:
            pred = np.where(y == 1, rng.random(200) < 0.05, rng.random(200) < 0.01).astype(int)
        scores = classification_scores(y, np.eye(2)[pred])
        context = replace(RowContext(name, "d"), domain=domain)
        rows += context.rows("linear_probe", scores, split="test", params={"protocol": "medprobe"})
        store.save(
            Unit(
                "k",
                name,
                "d",
                domain,
                [],
                [],
                [],
                {
                    "ids": ids,
                    "y_true": y.tolist(),
                    "y_pred": pred.tolist(),
                    "n_classes": 2,
                    "protocol": "medprobe",
                    "groups": None,
                },
            )
        )
    write_results(results_frame(rows), tmp_path)
    [comparison] = compare(tmp_path, n_permutations=999)
    assert list(comparison.ranking.domain[:2]) == ["general", "general"]
    d = comparison.domains
    assert d.difference < 0 and d.ci_high < 0  # medical worse, as the ranking says
    assert comparison.domains_p_holm >= d.p_value
    family = [*comparison.pairs.p_value, d.p_value]
    assert [*comparison.pairs.p_holm, comparison.domains_p_holm] == pytest.approx(holm(family))
    paths = write_comparison([comparison], tmp_path)
    table = pd.read_csv(paths["compare.csv"])
    assert set(table.kind) == {"rank", "pair", "domains"}
    assert (tmp_path / "compare.json").read_text().count("balanced_accuracy") >= 1


def test_sign_flip_test_has_its_level_at_100_images():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 50)
    weights = np.where(y == 0, 1 / 100, 1 / 100)
    rejections = 0
    for _ in range(400):
        a = (rng.random(100) < 0.7).astype(float)
        b = (rng.random(100) < 0.7).astype(float)
        rejections += (
            sign_flip_test(a - b, weights, n_permutations=199, seed=int(rng.integers(1e9))) < 0.05
        )
    assert rejections / 400 <= 0.075
    same = paired_difference(np.ones(100), np.ones(100), y, n_permutations=99)
    assert same.p_value == 1.0 and same.ci_low < 0 < same.ci_high


def test_warning_rows_for_a_thin_test_split():
    from medprobe.analysis.suite import UnitInput, split_warnings

    labels = np.array([0] * 30 + [1] * 30)
    splits = np.array(["train"] * 50 + ["test"] * 10)
    labels[50:] = [0] * 7 + [1] * 3
    fs = FeatureSet(
        np.zeros((60, 2), np.float32),
        labels,
        np.arange(60).astype(str),
        splits,
        ["benign", "malignant"],
        "m",
        "d",
    )
    unit = UnitInput(features=fs, encoder=None, dataset=None, context=RowContext("m", "d"))
    [row] = split_warnings(unit)
    assert row.analysis == "warning" and row.metric == "test_class_images" and row.value == 3
    assert row.params == {"class": "malignant"} and "fewer than 5" in row.error
    one_class = replace(fs, labels=np.where(splits == "test", 0, labels))
    rows = split_warnings(replace(unit, features=one_class))
    assert [r.metric for r in rows] == ["test_classes"]


def test_best_and_worst_template_intervals_cover():
    """The max / min over 8 prompt templates of their balanced accuracies (text side): the
    template that measures best is on average a lucky one, so its measured value is optimistic
    (here by about 0.04) and the bootstrap of the max covered 86.5%. The winner-corrected
    interval must cover the selected template's true balanced accuracy 92-98% of the time,
    contain its own estimate, and the estimate must have lost most of the optimism."""
    rng = np.random.default_rng(0)
    n, k = 150, 3
    labels = np.arange(n) % k
    accuracy = np.clip(0.6 + rng.normal(0, 0.08, (8, 1)) + rng.normal(0, 0.05, (8, k)), 0.05, 1)
    true = accuracy.mean(axis=1)
    hits = {"max": 0, "min": 0}
    bias = {"max": [], "min": [], "raw max": [], "raw min": []}
    sims = 300
    for s in range(sims):
        boot = Resampled(labels, 500, 0.95, seed=s)
        right = rng.random((8, n)) < accuracy[:, labels]
        wrong = (labels + 1 + rng.integers(0, k - 1, (8, n))) % k
        fits = [
            boot.balanced_accuracy(np.where(r, labels, w))
            for r, w in zip(right, wrong, strict=True)
        ]
        values, samples = np.array([f[0] for f in fits]), np.stack([f[1] for f in fits])
        spreads = boot.spreads(values, samples)
        for name, pick in (("max", np.argmax), ("min", np.argmin)):
            e = spreads[f"balanced_accuracy_{name}"]
            assert e.ci_low <= e.value <= e.ci_high
            selected = true[pick(values)]
            hits[name] += e.ci_low <= selected <= e.ci_high
            bias[name].append(e.value - selected)
            bias[f"raw {name}"].append(getattr(values, name)() - selected)
    coverage = {name: hit / sims for name, hit in hits.items()}
    assert all(0.92 <= c <= 0.98 for c in coverage.values()), coverage
    for name in hits:  # the measured extreme is optimistic; the estimate mostly is not
        assert abs(np.mean(bias[name])) < abs(np.mean(bias[f"raw {name}"])) / 3, bias
