"""Calibration benchmark (run by hand, not in CI): do medprobe's intervals cover, and do its
tests hold their level?

    python benchmarks/calibration.py [--reps 300] [--cheap-reps 1000] [--only scores,indices,...]

Simulated data with known population values, several sizes and class balances. For every
statistic that carries an interval: empirical coverage over ``--reps`` repetitions and the mean
width; for every test: the false-positive rate under the null and the power under one
alternative. Printed as one table (target coverage 0.92-0.98 for a 95% interval).

What "the population value" is, per family (as the docstrings say):
- test-set scores (accuracy, balanced accuracy, macro-F1, AUROC): the fixed classifier's
  performance on the population of test images (truth from 100,000+ fresh images);
- separability and geometry indices, CKA: the index's expected value at the sample size
  (truth: the mean over 1,000 fresh samples of that size);
- k-means NMI/ARI: that expectation for the partition found (conditional on the clustering);
- few-shot: the expected performance, on the population, of k-shot training sets drawn from a
  training set of 400 images per class;
- paired differences: the difference of the two classifiers' population balanced accuracies.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from medprobe.analysis.geometry import Geometry, effective_rank
from medprobe.analysis.probes import FewShotProbe, set_scores
from medprobe.analysis.scores import classification_scores, point_scores
from medprobe.analysis.separability import Separability, contingency_scores
from medprobe.analysis.similarity import CrossModel
from medprobe.analysis.stats import (
    class_weights,
    holm,
    mean_estimate,
    paired_difference,
    sign_flip_test,
)
from medprobe.features import FeatureSet


@dataclass
class Tally:
    """Coverage and widths of one statistic in one setting."""

    statistic: str
    method: str
    setting: str
    hits: int = 0
    reps: int = 0
    widths: list[float] = field(default_factory=list)

    def add(self, truth: float, low: float, high: float) -> None:
        self.reps += 1
        self.hits += bool(low <= truth <= high)
        self.widths.append(high - low)

    def row(self) -> str:
        cover = self.hits / self.reps
        flag = "" if 0.92 <= cover <= 0.98 else "  <-- outside 0.92-0.98"
        return (
            f"{self.statistic:26s} {self.method:34s} {self.setting:30s} "
            f"{self.reps:5d} {cover:6.3f} {np.mean(self.widths):9.4f}{flag}"
        )


def featureset(x: np.ndarray, y: np.ndarray, splits=None, groups=None) -> FeatureSet:
    n = len(x)
    return FeatureSet(
        x.astype(np.float32),
        y,
        np.array([str(i) for i in range(n)]),
        np.array(["train"] * n) if splits is None else splits,
        [f"c{i}" for i in range(int(y.max()) + 1)],
        "sim",
        "sim",
        groups=groups,
    )


# ------------------------------------------------------------------------ test-set scores

SCORE_SETTINGS = {
    # name: (class sizes, signal, logit bias)
    "3 classes x 100": ([100, 100, 100], 1.2, [0, 0, 0]),
    "imbalanced 200/20 (kNN-like)": ([200, 20], 0.3, [1.2, 0]),
    "near-perfect 4 x 25": ([25] * 4, 3.3, [0, 0, 0, 0]),
    "small 2 x 15": ([15, 15], 1.0, [0, 0]),
    "10 classes x 20": ([20] * 10, 2.5, [0] * 10),
    "20 classes x 10": ([10] * 20, 3.0, [0] * 20),
    "imbalanced 90/10": ([90, 10], 0.8, [1.0, 0]),
}


def _logits(rng, sizes, signal, bias, group_size=1, group_sd=0.0):
    """A fixed classifier's class scores: per image, signal on its class plus noise; with
    groups, images of a group share most of their noise (near-duplicates)."""
    y = np.repeat(np.arange(len(sizes)), sizes)
    k = len(sizes)
    n_groups = -(-len(y) // group_size)
    shared = rng.standard_normal((n_groups, k)) * group_sd
    groups = np.arange(len(y)) // group_size
    own = rng.standard_normal((len(y), k)) * np.sqrt(1 - group_sd**2)
    logits = shared[groups] + own + signal * np.eye(k)[y] + np.asarray(bias, dtype=float)
    return y, logits, groups.astype(str)


def calibrate_scores(reps: int, tallies: list[Tally]) -> None:
    rng = np.random.default_rng(0)
    for name, (sizes, signal, bias) in SCORE_SETTINGS.items():
        y, logits, _ = _logits(rng, [s * 2000 for s in sizes], signal, bias)
        truth = point_scores(y, logits)
        mine = {m: Tally(m, _SCORE_METHODS[m], name) for m in truth}
        for _ in range(reps):
            y, logits, _ = _logits(rng, sizes, signal, bias)
            for m, est in classification_scores(y, logits).items():
                mine[m].add(truth[m], est.ci_low, est.ci_high)
        tallies += mine.values()
    # near-duplicate images: 4 per patient sharing 90% of their noise
    sizes, signal, bias = [80, 80], 1.0, [0, 0]
    setting = "groups of 4 near-duplicates"
    y, logits, _ = _logits(rng, [s * 1000 for s in sizes], signal, bias, 4, 0.95)
    truth = point_scores(y, logits)
    with_groups = {m: Tally(m, _SCORE_METHODS[m] + ", cluster", setting) for m in truth}
    without = {m: Tally(m, "contrast: groups ignored", setting) for m in truth}
    for _ in range(reps):
        y, logits, groups = _logits(rng, sizes, signal, bias, 4, 0.95)
        for m, est in classification_scores(y, logits, groups=groups).items():
            with_groups[m].add(truth[m], est.ci_low, est.ci_high)
        for m, est in classification_scores(y, logits).items():
            without[m].add(truth[m], est.ci_low, est.ci_high)
    tallies += list(with_groups.values()) + list(without.values())


_SCORE_METHODS = {
    "accuracy": "Wilson",
    "balanced_accuracy": "MOVER-AC u stratified Wilson",
    "macro_f1": "Wilson at jackknife eff. size",
    "auroc": "score (DeLong, HM floor)",
}


# ------------------------------------------------------------------- separability, geometry

INDEX_SETTINGS = {
    # name: (n per class, dim, classes, separation, weights)
    "n=200 D=32 2 classes": (100, 32, 2, 1.0, None),
    "n=400 D=256 2 classes": (200, 256, 2, 0.6, None),
    "n=300 D=64 4 cl. 70/10/10/10": (None, 64, 4, 1.5, [210, 30, 30, 30]),
}
INDICES_SEP = (
    "silhouette_cosine",
    "silhouette_euclidean",
    "davies_bouldin",
    "calinski_harabasz",
    "fisher_ratio",
)
INDICES_GEO = ("effective_rank", "intrinsic_dimension_twonn", "anisotropy", "modality_gap")


def _gaussian(rng, per_class, dim, classes, separation, sizes):
    sizes = sizes or [per_class] * classes
    y = np.repeat(np.arange(classes), sizes)
    centres = np.zeros((classes, dim))
    centres[np.arange(classes), np.arange(classes) % dim] = separation
    # a decaying spectrum with a low-dimensional core, so rank and dimension are not trivial
    scale = 1 / np.sqrt(1 + np.arange(dim))
    x = rng.standard_normal((len(y), dim)) * scale + centres[y] + 0.3
    return x, y


def _index_values(x, y, text):
    """Point values of every index (no intervals): what an expectation is averaged over."""
    from sklearn import metrics as skm

    from medprobe.analysis.geometry import anisotropy, modality_gap, twonn
    from medprobe.analysis.separability import fisher_ratio

    values = {
        "silhouette_cosine": skm.silhouette_score(x, y, metric="cosine"),
        "silhouette_euclidean": skm.silhouette_score(x, y),
        "davies_bouldin": skm.davies_bouldin_score(x, y),
        "calinski_harabasz": skm.calinski_harabasz_score(x, y),
        "effective_rank": effective_rank(x),
        "intrinsic_dimension_twonn": twonn(x),
        "anisotropy": anisotropy(x),
        "modality_gap": modality_gap(x, text),
    }
    values["fisher_ratio"] = fisher_ratio(x, y)
    return values


_INDEX_METHODS = {
    "silhouette_cosine": "bootstrap SE, recomputed (200)",
    "silhouette_euclidean": "bootstrap SE, recomputed (200)",
    "intrinsic_dimension_twonn": "chi-square (Pareto MLE)",
}


def calibrate_indices(reps: int, tallies: list[Tally], truth_samples: int) -> None:
    rng = np.random.default_rng(1)
    for name, (per_class, dim, classes, sep, sizes) in INDEX_SETTINGS.items():
        text = rng.standard_normal((classes, dim))

        def sample(per_class=per_class, dim=dim, classes=classes, sep=sep, sizes=sizes):
            return _gaussian(rng, per_class, dim, classes, sep, sizes)

        fresh = [_index_values(*sample(), text) for _ in range(truth_samples)]
        truth = {m: float(np.mean([f[m] for f in fresh])) for m in fresh[0]}
        mine = {
            m: Tally(m, _INDEX_METHODS.get(m, "jackknife (30 blocks)"), name)
            for m in INDICES_SEP + INDICES_GEO
        }
        nmi, ari = (
            Tally("kmeans_nmi", "jackknife | clustering", name),
            Tally("kmeans_ari", "jackknife | clustering", name),
        )
        for _ in range(reps):
            x, y = sample()
            fs = featureset(x, y)
            sep_fit = Separability(seed=int(rng.integers(1 << 30))).fit(fs)
            geo = Geometry(seed=int(rng.integers(1 << 30))).fit(fs, text)
            for m in INDICES_SEP:
                e = sep_fit.scores_[m]
                mine[m].add(truth[m], e.ci_low, e.ci_high)
            for m in INDICES_GEO:
                e = geo.scores_[m]
                mine[m].add(truth[m], e.ci_low, e.ci_high)
            # the partition found, applied to fresh samples of the same size
            centroids = np.stack([x[sep_fit.clusters_ == c].mean(axis=0) for c in range(classes)])
            tables = np.zeros((100, classes, classes))
            for s in range(100):
                xf, yf = sample()
                sq = (xf**2).sum(axis=1)[:, None] - 2 * xf @ centroids.T + (centroids**2).sum(1)
                np.add.at(tables[s], (yf, sq.argmin(axis=1)), 1)
            t_nmi, t_ari = contingency_scores(tables)
            for tally, t_value, m in ((nmi, t_nmi, "kmeans_nmi"), (ari, t_ari, "kmeans_ari")):
                e = sep_fit.scores_[m]
                tally.add(float(np.mean(t_value)), e.ci_low, e.ci_high)
        tallies += [*mine.values(), nmi, ari]


def calibrate_cka(reps: int, tallies: list[Tally], truth_samples: int) -> None:
    rng = np.random.default_rng(2)
    for n, d in ((150, 16), (400, 64)):
        mix_a, mix_b = rng.standard_normal((8, d)), rng.standard_normal((8, d))

        def sample(n=n, d=d, mix_a=mix_a, mix_b=mix_b):
            z = rng.standard_normal((n, 8))
            a = z @ mix_a + rng.standard_normal((n, d)) * 2.0
            b = np.tanh(z @ mix_b) + rng.standard_normal((n, d))
            y = np.arange(n) % 2
            return featureset(a, y), featureset(b, y)

        from medprobe.analysis.similarity import linear_cka

        truth = float(
            np.mean(
                [
                    linear_cka(f.features, g.features)
                    for f, g in (sample() for _ in range(truth_samples))
                ]
            )
        )
        tally = Tally("linear_cka_unbiased", "jackknife (30 blocks)", f"n={n} D={d}")
        for _ in range(reps):
            a, b = sample()
            b = FeatureSet(b.features, b.labels, b.ids, b.splits, b.class_names, "b", "sim")
            cross = CrossModel(seed=int(rng.integers(1 << 30))).fit([a, b])
            tally.add(truth, cross.cka_low_[0, 1], cross.cka_high_[0, 1])
        tallies.append(tally)


# ------------------------------------------------------------------------------- few-shot


def calibrate_few_shot(reps: int, tallies: list[Tally], truth_draws: int) -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    dim, classes, shots = 16, 3, (1, 4, 16)
    centres = rng.standard_normal((classes, dim)) * 0.9

    def sample(per_class):
        y = np.repeat(np.arange(classes), per_class)
        return rng.standard_normal((len(y), dim)) + centres[y], y

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    x_pop, y_pop = sample(20_000)
    ones = np.ones((1, len(y_pop)))
    truth = {}
    for k in shots:  # expected population performance over fresh k-shot training sets
        per = []
        for _ in range(truth_draws):
            xt, yt = sample(k)
            model = LogisticRegression(C=1.0, max_iter=2000).fit(unit(xt), yt)
            proba = model.predict_proba(unit(x_pop))
            per.append({m: v[0] for m, v in set_scores(y_pop, proba, ones).items()})
        truth[k] = {m: float(np.mean([p[m] for p in per])) for m in per[0]}
    for test_per_class in (30, 100):
        setting = f"3 cl., test {test_per_class}/class"
        mine = {
            (k, m): Tally(f"few_shot {k}-shot {m}", "draws + test jackknife, Wilson", setting)
            for k in shots
            for m in truth[1]
        }
        for _ in range(reps):
            x_tr, y_tr = sample(400)  # the training set the k images per class are drawn from
            x_te, y_te = sample(test_per_class)
            x = np.concatenate([x_tr, x_te])
            y = np.concatenate([y_tr, y_te])
            splits = np.array(["train"] * len(y_tr) + ["test"] * len(y_te))
            few = FewShotProbe(shots=shots, seed=int(rng.integers(1 << 30))).fit(
                featureset(x, y, splits)
            )
            for (k, m), tally in mine.items():
                e = few.scores_[k][m]
                tally.add(truth[k][m], e.ci_low, e.ci_high)
        keep = ("balanced_accuracy", "auroc")
        tallies += [t for (k, m), t in mine.items() if m in keep]


# -------------------------------------------------------------- means and paired differences


def calibrate_means(reps: int, tallies: list[Tally]) -> None:
    """A mean of skewed per-image values (the overlay displacement): t, cluster-robust SE."""
    rng = np.random.default_rng(4)
    for n, group in ((40, 1), (200, 1), (100, 4), (200, 4)):
        setting = f"n={n}, exponential" + (f", groups of {group}" if group > 1 else "")
        tally = Tally("mean (displacement)", "t, cluster-robust SE" if group > 1 else "t", setting)
        for _ in range(reps):
            shared = rng.exponential(1.0, n // group)
            values = 0.7 * np.repeat(shared, group) + 0.3 * rng.exponential(1.0, n)
            groups = (np.arange(n) // group).astype(str) if group > 1 else None
            e = mean_estimate(values, groups)
            tally.add(1.0, e.ci_low, e.ci_high)
        tallies.append(tally)


def _paired_correctness(rng, n_per_class, recalls_a, recalls_b, agreement):
    """Per-image correctness of two classifiers with the given per-class recalls; their
    errors coincide as much as ``agreement`` allows (models tend to fail on the same images)."""
    y = np.repeat(np.arange(len(recalls_a)), n_per_class)
    u = rng.random(len(y))
    v = np.where(rng.random(len(y)) < agreement, u, rng.random(len(y)))
    a = u < np.asarray(recalls_a)[y]
    b = v < np.asarray(recalls_b)[y]
    return y, a.astype(float), b.astype(float)


def calibrate_paired(reps: int, tallies: list[Tally]) -> None:
    rng = np.random.default_rng(5)
    for name, n, ra, rb in (
        ("n=100, 2 cl., diff 0.05", 50, [0.80, 0.70], [0.75, 0.65]),
        ("n=100, 2 cl., near-perfect", 50, [0.98, 0.96], [0.95, 0.93]),
        ("n=300, 3 cl., diff 0", 100, [0.7, 0.6, 0.8], [0.7, 0.6, 0.8]),
    ):
        truth = float(np.mean(ra) - np.mean(rb))
        tally = Tally("balanced accuracy A - B", "stratified Wald, Agresti-Min", name)
        for _ in range(reps):
            y, a, b = _paired_correctness(rng, n, ra, rb, 0.7)
            d = paired_difference(a, b, y, balanced=True, n_permutations=1)
            tally.add(truth, d.ci_low, d.ci_high)
        tallies.append(tally)
    # near-duplicates: 4 images per patient share whether each model gets them right
    ra, rb = np.array([0.8, 0.7]), np.array([0.7, 0.65])
    truth = float(np.mean(ra - 0.05 * (2 * ra - 1)) - np.mean(rb))  # A's 5% flips included
    tally = Tally("balanced accuracy A - B", "Wald, Agresti-Min, cluster", "n=200, groups of 4")
    for _ in range(reps):
        y, a, b = _paired_correctness(rng, 25, ra, rb, 0.7)
        a, b, y = np.repeat(a, 4), np.repeat(b, 4), np.repeat(y, 4)
        flip = rng.random(len(y)) < 0.05  # near, not exact, duplicates
        a = np.where(flip, 1 - a, a)
        groups = (np.arange(len(y)) // 4).astype(str)
        d = paired_difference(a, b, y, groups, balanced=True, n_permutations=1)
        tally.add(truth, d.ci_low, d.ci_high)
    tallies.append(tally)


@dataclass
class TestTally:
    test: str
    setting: str
    null_rejections: int = 0
    null_reps: int = 0
    power_rejections: int = 0
    power_reps: int = 0

    def row(self) -> str:
        fpr = self.null_rejections / self.null_reps
        power = self.power_rejections / max(self.power_reps, 1)
        flag = "" if fpr <= 0.05 + 1.96 * np.sqrt(0.05 * 0.95 / self.null_reps) else "  <-- > 0.05"
        return (
            f"{self.test:44s} {self.setting:40s} {self.null_reps:5d} {fpr:6.3f} {power:6.3f}{flag}"
        )


def calibrate_compare(reps: int, tests: list[TestTally], permutations: int) -> None:
    """``medprobe compare`` at 100 test images: 4 models (2 medical, 2 general); the pairs and
    the domain test in one Holm family. Null: equal recalls everywhere. Alternative: one
    medical model 0.15 better in balanced accuracy."""
    rng = np.random.default_rng(6)
    base = [0.75, 0.65]
    holm_family = TestTally("compare: any Holm-rejection (FWER)", "4 models, n=100, 50/50")
    single = TestTally("compare: one pair, p < 0.05", "n=100, 50/50")
    domain = TestTally("compare: medical vs general", "2 + 2 models, n=100, 50/50")
    imbalanced = TestTally("compare: one pair, p < 0.05", "n=100, 80/20")
    for alternative in (False, True):
        for _ in range(reps):
            y = np.repeat([0, 1], 50)
            latent = rng.random(len(y))  # images that are hard for every model
            correct = []
            for m in range(4):
                boost = 0.15 if (alternative and m == 0) else 0.0
                own = np.where(rng.random(len(y)) < 0.6, latent, rng.random(len(y)))
                correct.append((own < np.array(base)[y] + boost).astype(float))
            weights = class_weights(y, balanced=True)
            pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
            diffs = np.stack([correct[i] - correct[j] for i, j in pairs], axis=1)
            domain_diff = (correct[0] + correct[1]) / 2 - (correct[2] + correct[3]) / 2
            p = sign_flip_test(
                np.column_stack([diffs, domain_diff]),
                weights,
                n_permutations=permutations,
                seed=int(rng.integers(1 << 30)),
            )
            adjusted = np.array(holm(p.tolist()))
            if alternative:
                holm_family.power_reps += 1
                holm_family.power_rejections += bool(adjusted[:3].min() < 0.05)
                single.power_reps += 1
                single.power_rejections += bool(p[0] < 0.05)
                domain.power_reps += 1
                domain.power_rejections += bool(p[-1] < 0.05)
            else:
                holm_family.null_reps += 1
                holm_family.null_rejections += bool(adjusted.min() < 0.05)
                single.null_reps += 1
                single.null_rejections += bool(p[0] < 0.05)
                domain.null_reps += 1
                domain.null_rejections += bool(p[-1] < 0.05)
            # imbalanced test set, one pair
            yi = np.repeat([0, 1], [80, 20])
            li = rng.random(100)
            boost = 0.15 if alternative else 0.0
            ca = (li < np.array(base)[yi] + boost).astype(float)
            cb = np.where(rng.random(100) < 0.6, li, rng.random(100)) < np.array(base)[yi]
            pi = sign_flip_test(
                ca - cb,
                class_weights(yi, True),
                n_permutations=permutations,
                seed=int(rng.integers(1 << 30)),
            )
            if alternative:
                imbalanced.power_reps += 1
                imbalanced.power_rejections += bool(pi < 0.05)
            else:
                imbalanced.null_reps += 1
                imbalanced.null_rejections += bool(pi < 0.05)
    tests += [holm_family, single, domain, imbalanced]


FAMILIES: dict[str, Callable] = {
    "scores": lambda a, t, s: calibrate_scores(a.cheap_reps, t),
    "indices": lambda a, t, s: calibrate_indices(a.reps, t, a.truth_samples),
    "cka": lambda a, t, s: calibrate_cka(a.reps, t, a.truth_samples),
    "few_shot": lambda a, t, s: calibrate_few_shot(a.reps, t, a.truth_samples),
    "means": lambda a, t, s: calibrate_means(a.cheap_reps, t),
    "paired": lambda a, t, s: calibrate_paired(a.cheap_reps, t),
    "compare": lambda a, t, s: calibrate_compare(a.test_reps, s, a.permutations),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=300, help="repetitions per setting")
    parser.add_argument(
        "--cheap-reps", type=int, default=1000, help="repetitions of the closed-form families"
    )
    parser.add_argument("--test-reps", type=int, default=1000, help="repetitions per test")
    parser.add_argument("--truth-samples", type=int, default=400)
    parser.add_argument("--permutations", type=int, default=999)
    parser.add_argument("--only", default=",".join(FAMILIES), help="comma-separated families")
    args = parser.parse_args()
    tallies: list[Tally] = []
    tests: list[TestTally] = []
    for family in args.only.split(","):
        start = time.perf_counter()
        # many small problems: BLAS / OpenMP threads would only spin against each other
        with threadpool_limits(1):
            FAMILIES[family](args, tallies, tests)
        print(f"[{family}: {time.perf_counter() - start:.0f} s]", flush=True)
    print()
    print(
        f"{'statistic':26s} {'interval':34s} {'setting':30s} {'reps':>5s} {'cover':>6s} "
        f"{'width':>9s}"
    )
    for tally in tallies:
        print(tally.row())
    if tests:
        print()
        print(f"{'test':44s} {'setting':40s} {'reps':>5s} {'FPR':>6s} {'power':>6s}")
        for test in tests:
            print(test.row())


if __name__ == "__main__":
    main()
