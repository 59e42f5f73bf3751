"""Known-answer and reference checks of every analysis."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import special_ortho_group
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegressionCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer, StandardScaler

from medprobe.analysis import (
    CrossModel,
    Embedding2D,
    FewShotProbe,
    Geometry,
    KNNProbe,
    LinearProbe,
    Separability,
    ZeroShot,
    holm,
    linear_cka,
    mutual_knn,
    paired_difference,
)
from medprobe.analysis import metrics as mm
from medprobe.analysis.probes import faiss_neighbours, knn_vote
from medprobe.analysis.separability import fisher_ratio
from medprobe.analysis.similarity import _Rows, hsic_sets
from medprobe.analysis.stats import bootstrap
from medprobe.errors import MedprobeError
from medprobe.features import FeatureSet


def gaussian_fs(
    separation: float,
    n: int = 400,
    dim: int = 16,
    classes: int = 2,
    seed: int = 0,
    encoder: str = "g",
    ids=None,
) -> FeatureSet:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    centres = np.zeros((classes, dim))
    for c in range(classes):
        centres[c, c % dim] = separation
    x = rng.standard_normal((n, dim)) + centres[labels]
    splits = np.where(rng.random(n) < 0.3, "test", "train")
    return FeatureSet(
        features=x.astype(np.float32),
        labels=labels,
        ids=np.array(ids if ids is not None else [f"img{i}" for i in range(n)]),
        splits=splits,
        class_names=[f"c{i}" for i in range(classes)],
        encoder=encoder,
        dataset="gauss",
    )


# ------------------------------------------------------------------------------- separability


def test_separation_orders_every_measure():
    low, high = gaussian_fs(1.0), gaussian_fs(4.0)
    s_low, s_high = (
        Separability(n_resamples=50).fit(low).scores_,
        Separability(n_resamples=50).fit(high).scores_,
    )
    for metric in (
        "silhouette_cosine",
        "silhouette_euclidean",
        "calinski_harabasz",
        "fisher_ratio",
        "kmeans_nmi",
        "kmeans_ari",
    ):
        assert s_high[metric].value > s_low[metric].value, metric
    assert s_high["davies_bouldin"].value < s_low["davies_bouldin"].value
    k_low = KNNProbe(k=10).fit(low).scores_["accuracy"].value
    k_high = KNNProbe(k=10).fit(high).scores_["accuracy"].value
    assert k_high > k_low and k_high > 0.95


def test_fisher_ratio_known_answer():
    # Two classes at +-d/2 along one axis, unit variance in D dims: Sb/n = d^2/4, Sw/n = D.
    d, dim = 3.0, 8
    rng = np.random.default_rng(1)
    n = 20000
    labels = np.arange(n) % 2
    x = rng.standard_normal((n, dim))
    x[:, 0] += np.where(labels == 1, d / 2, -d / 2)
    assert fisher_ratio(x, labels) == pytest.approx(d**2 / 4 / dim, rel=0.03)


def test_separability_matches_sklearn():
    fs = gaussian_fs(2.0, n=200)
    scores = Separability(n_resamples=20).fit(fs).scores_
    x = fs.features.astype(np.float64)
    assert scores["silhouette_cosine"].value == pytest.approx(
        skm.silhouette_score(x, fs.labels, metric="cosine")
    )
    assert scores["davies_bouldin"].value == pytest.approx(skm.davies_bouldin_score(x, fs.labels))
    assert scores["calinski_harabasz"].value == pytest.approx(
        skm.calinski_harabasz_score(x, fs.labels)
    )


# --------------------------------------------------------------------------------- metrics


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 5), st.integers(0, 10_000))
def test_vectorised_metrics_equal_sklearn(k, seed):
    rng = np.random.default_rng(seed)
    n = 60
    y = rng.integers(0, k, n)
    y[:k] = np.arange(k)  # every class present
    scores = rng.random((n, k))
    pred = scores.argmax(axis=1)
    idx = np.arange(n)[None, :]
    cm = mm.confusion_counts(y, pred, idx, k)
    assert mm.accuracy(cm)[0] == pytest.approx(skm.accuracy_score(y, pred))
    assert mm.balanced_accuracy(cm)[0] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert mm.macro_f1(cm)[0] == pytest.approx(
        skm.f1_score(y, pred, average="macro", labels=np.unique(np.r_[y, pred]))
    )
    proba = scores / scores.sum(axis=1, keepdims=True)
    expected = (
        skm.roc_auc_score(y, proba[:, 1])
        if k == 2
        else skm.roc_auc_score(y, proba, multi_class="ovr", average="macro")
    )
    assert mm.auroc_ovr(y, proba, idx)[0] == pytest.approx(expected)


def test_bootstrap_ci_coverage():
    """95% CIs of an accuracy cover the true value in 90-98% of repeated simulated studies."""
    rng = np.random.default_rng(0)
    true_acc, n, repeats, covered = 0.8, 150, 300, 0
    y = np.arange(n) % 2
    for r in range(repeats):
        correct = rng.random(n) < true_acc
        pred = np.where(correct, y, 1 - y)
        est = bootstrap(
            lambda idx, p=pred: mm.accuracy(mm.confusion_counts(y, p, idx, 2)),
            y,
            n_resamples=400,
            seed=r,
        )
        covered += est.ci_low <= true_acc <= est.ci_high
    assert 0.90 <= covered / repeats <= 0.98


def test_paired_difference_and_holm():
    rng = np.random.default_rng(0)
    y = np.arange(300) % 2
    good = np.where(rng.random(300) < 0.9, y, 1 - y)
    bad = np.where(rng.random(300) < 0.6, y, 1 - y)
    diff = paired_difference(good == y, bad == y, y, n_permutations=999)
    assert diff.difference == pytest.approx(np.mean(good == y) - np.mean(bad == y))
    assert diff.difference > 0.2 and diff.ci_low > 0 and diff.p_value == pytest.approx(1 / 1000)
    same = paired_difference(good == y, good == y, y, n_permutations=99)
    assert same.difference == 0 and same.p_value == 1.0
    balanced = paired_difference(good == y, bad == y, y, balanced=True, n_permutations=99)
    expected = skm.balanced_accuracy_score(y, good) - skm.balanced_accuracy_score(y, bad)
    assert balanced.difference == pytest.approx(expected)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


# ------------------------------------------------------------------------------------ probes


def test_faiss_knn_equals_sklearn():
    fs = gaussian_fs(1.5, n=600, dim=32, classes=3)
    exact = KNNProbe(k=7, faiss_threshold=float("inf")).fit(fs)
    fast = KNNProbe(k=7, faiss_threshold=0).fit(fs)
    np.testing.assert_allclose(exact.y_score_, fast.y_score_)
    assert knn_vote(np.array([[0, 1, 2]]), np.array([1, 1, 0])).tolist() == [[1 / 3, 2 / 3]]
    assert faiss_neighbours(np.eye(3), np.eye(3), 1)[:, 0].tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    ("protocol", "classes", "val", "holdout_above"),
    [
        ("medprobe", 3, False, 5000),  # stratified k-fold
        ("medprobe", 2, False, 200),  # one hold-out, ordered last (views)
        ("medprobe", 3, True, 5000),  # the val split
        ("clip_benchmark", 2, True, 5000),
        ("clip_benchmark", 3, False, 5000),
    ],
)
def test_linear_probe_is_scikit_learns_cross_validated_logistic_regression(
    protocol, classes, val, holdout_above
):
    # the bounded-memory sweep fits what make_pipeline(scaler, LogisticRegressionCV) fits:
    # same folds, class weights, scorer, C chosen and (within lbfgs's tolerance) probabilities
    rng = np.random.default_rng(classes)
    n, dim = 600, 24
    labels = rng.integers(0, classes, n)
    x = rng.standard_normal((n, dim)) + 0.4 * rng.standard_normal((classes, dim))[labels] + 3
    splits = np.where(rng.random(n) < 0.3, "test", "train")
    if val:
        splits[(splits == "train") & (rng.random(n) < 0.25)] = "val"
    names = [f"c{i}" for i in range(classes)]
    ids = np.array([f"i{i}" for i in range(n)])
    fs = FeatureSet(x.astype(np.float32), labels, ids, splits, names, "g", "gauss")
    probe = LinearProbe(protocol=protocol, holdout_above=holdout_above).fit(fs)
    ours = protocol == "medprobe"
    train = splits != "test"
    reference = make_pipeline(
        StandardScaler() if ours else Normalizer(),
        LogisticRegressionCV(
            Cs=list(LinearProbe.GRIDS[protocol]),
            cv=probe._cv(labels[train], splits[train]),
            scoring="balanced_accuracy" if ours else "accuracy",
            max_iter=3000,
            l1_ratios=(0.0,),
            use_legacy_attributes=False,
            class_weight="balanced" if ours else None,
            random_state=0,
        ),
    ).fit(fs.features[train], labels[train])
    assert float(np.ravel(reference[-1].C_)[0]) == probe.C_
    # lbfgs stops within its tolerance from different warm starts: an image may flip at the
    # least regularised C, no more
    fold_scores = np.asarray(reference[-1].scores_)[:, 0, :]
    assert np.abs(probe.cv_scores_ - fold_scores).max() <= 0.03
    proba = reference.predict_proba(fs.features[splits == "test"])
    np.testing.assert_allclose(probe.y_score_, proba, atol=5e-3)
    np.testing.assert_array_equal(probe.y_true_, labels[splits == "test"])


def test_linear_probe_and_few_shot():
    fs = gaussian_fs(3.0, n=300, classes=3)
    lp = LinearProbe().fit(fs)
    assert lp.scores_["balanced_accuracy"].value > 0.9 and lp.C_ in LinearProbe.GRIDS["medprobe"]
    # CLIP_benchmark's protocol: unit-norm features (a per-image rescaling changes nothing),
    # no class weights, C by accuracy on a held-out split
    clip = LinearProbe(protocol="clip_benchmark").fit(fs)
    scaled = np.random.default_rng(1).uniform(0.2, 5, (len(fs), 1)).astype(np.float32)
    rescaled = FeatureSet(
        fs.features * scaled, fs.labels, fs.ids, fs.splits, fs.class_names, "g", "gauss"
    )
    np.testing.assert_allclose(
        LinearProbe(protocol="clip_benchmark").fit(rescaled).y_score_, clip.y_score_, atol=1e-6
    )
    assert clip.model_[-1].class_weight is None
    assert clip.C_ in LinearProbe.GRIDS["clip_benchmark"]
    few = FewShotProbe(shots=(1, 4, 16), draws=10).fit(fs)
    assert few.scores_[16]["accuracy"].value > few.scores_[1]["accuracy"].value
    est = few.scores_[4]["balanced_accuracy"]
    assert est.ci_low <= est.value <= est.ci_high
    with pytest.raises(MedprobeError, match="few-shot with 500 shots"):
        FewShotProbe(shots=(500,)).fit(fs)


def test_bad_inputs_are_named():
    fs = gaussian_fs(2.0, n=100)
    broken = np.array(fs.features)
    broken[3, 0] = np.nan
    nan_fs = FeatureSet(broken, fs.labels, fs.ids, fs.splits, fs.class_names, "g", "gauss")
    for analyser in (Separability(), KNNProbe(), LinearProbe(), Geometry()):
        with pytest.raises(MedprobeError, match="NaN or inf"):
            analyser.fit(nan_fs)
    single = fs.subset(fs.labels == 0)
    with pytest.raises(MedprobeError, match="fewer than 2 classes"):
        Separability().fit(single)
    with pytest.raises(MedprobeError, match="fewer than 2 classes"):
        KNNProbe().fit(single)
    other = gaussian_fs(2.0, n=100, ids=[f"other{i}" for i in range(100)], encoder="h")
    with pytest.raises(MedprobeError, match="different images"):
        CrossModel().fit([fs, other])


# ------------------------------------------------------------------------- cross-model


def test_cka_known_answers():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 64))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, x, unbiased=False) == pytest.approx(1.0)
    rotated = 3.7 * x @ special_ortho_group.rvs(64, random_state=1)
    assert linear_cka(x, rotated) == pytest.approx(1.0)
    assert linear_cka(x, rotated, unbiased=False) == pytest.approx(1.0)
    independent = rng.standard_normal((500, 256))
    wide = rng.standard_normal((500, 256))
    assert abs(linear_cka(wide, independent)) < 0.05
    assert linear_cka(wide, independent, unbiased=False) > 0.2  # the biased estimator is inflated


def test_unbiased_hsic_equals_the_gram_formula():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((30, 5)), rng.standard_normal((30, 7))
    n = 30
    k, lm = x @ x.T, y @ y.T
    np.fill_diagonal(k, 0)
    np.fill_diagonal(lm, 0)
    one = np.ones(n)
    expected = (
        np.trace(k @ lm)
        + (one @ k @ one) * (one @ lm @ one) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * one @ k @ lm @ one
    ) / (n * (n - 3))
    order, one = np.arange(n), np.zeros(n, dtype=np.int64)
    assert hsic_sets(_Rows(x, order), _Rows(y, order), one)[0] == pytest.approx(expected)
    # each jackknife replicate is the estimator on the images left
    blocks = np.arange(n) % 3
    sets = hsic_sets(_Rows(x + 5.0, order), _Rows(y, order), blocks)
    for b in range(3):
        keep = blocks != b
        alone = hsic_sets(
            _Rows(x[keep], np.arange(keep.sum())),
            _Rows(y[keep], np.arange(keep.sum())),
            np.zeros(keep.sum(), dtype=np.int64),
        )
        assert sets[1 + b] == pytest.approx(alone[0])


def test_mutual_knn_and_cross_model_matrix():
    fs = gaussian_fs(2.0, n=120)
    assert mutual_knn(fs.features, fs.features, k=5) == pytest.approx(1.0)
    shuffled = np.random.default_rng(0).permutation(len(fs))
    copy = fs.subset(shuffled)  # same images, other order
    copy = FeatureSet(
        copy.features, copy.labels, copy.ids, copy.splits, copy.class_names, "copy", "gauss"
    )
    noise = gaussian_fs(0.0, n=120, seed=5, encoder="noise")
    cross = CrossModel().fit([fs, copy, noise])
    assert cross.cka_[0, 1] == pytest.approx(1.0) and cross.mutual_knn_[0, 1] == pytest.approx(1.0)
    assert abs(cross.cka_[0, 2]) < 0.2 and cross.mutual_knn_[0, 2] < 0.3
    np.testing.assert_allclose(cross.cka_, cross.cka_.T)


# ------------------------------------------------------------------------------ geometry


def test_geometry_known_answers():
    rng = np.random.default_rng(0)
    n = 2000
    plane = np.zeros((n, 10))
    plane[:, :2] = rng.standard_normal((n, 2))
    labels = np.arange(n) % 2
    fs = FeatureSet(
        plane.astype(np.float32),
        labels,
        np.array([str(i) for i in range(n)]),
        np.array(["train"] * n),
        ["a", "b"],
        "g",
        "plane",
    )
    scores = Geometry().fit(fs).scores_
    assert scores["effective_rank"].value == pytest.approx(2.0, abs=0.1)
    twonn = scores["intrinsic_dimension_twonn"]
    assert twonn.ci_low < 2.0 < twonn.ci_high or twonn.value == pytest.approx(2.0, rel=0.1)
    assert abs(scores["anisotropy"].value) < 0.05
    shifted = FeatureSet(
        plane.astype(np.float32) + 10, labels, fs.ids, fs.splits, ["a", "b"], "g", "plane"
    )
    assert Geometry().fit(shifted).scores_["anisotropy"].value > 0.9
    text = np.ones((2, 10))
    gap = Geometry().fit(shifted, text_embeddings=text).scores_["modality_gap"]
    assert gap.value == pytest.approx(0.0, abs=0.05)


@pytest.mark.parametrize("method", ["pca", "tsne", "umap"])
def test_2d_views_are_seeded(method):
    fs = gaussian_fs(3.0, n=150)
    a = Embedding2D(method, seed=0).fit(fs).embedding_
    b = Embedding2D(method, seed=0).fit(fs).embedding_
    assert a.shape == (150, 2)
    np.testing.assert_allclose(a, b, atol=1e-4)
    sub = Embedding2D("pca", max_points=50).fit(fs)
    assert len(sub.index_) == 50 and len(sub.embedding_) == 50


# ------------------------------------------------------------------------------ zero-shot


def _tiny_open_clip(folder):
    import open_clip
    import torch

    config = {
        "model_cfg": {
            "embed_dim": 32,
            "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
            "text_cfg": {
                "context_length": 77,
                "vocab_size": 49408,
                "width": 64,
                "heads": 4,
                "layers": 2,
            },
        },
        "preprocess_cfg": {},
    }
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    model = open_clip.create_model(f"local-dir:{folder}", load_weights=False)
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return model.eval()


def test_zero_shot_equals_logits_by_hand(tmp_path):
    import open_clip
    import torch

    from medprobe.datasets import synthetic
    from medprobe.encoders import create_encoder
    from medprobe.features import extract

    model = _tiny_open_clip(tmp_path / "clip")
    encoder = create_encoder(f"local:{tmp_path / 'clip'}", domain="general")
    ds = synthetic("dermoscopy", 30, size=48)
    fs = extract(encoder, ds, show_progress=False)
    zs = ZeroShot(encoder).fit(fs)

    tokenizer = open_clip.get_tokenizer(f"local-dir:{tmp_path / 'clip'}")
    test = [r for r in ds if r.split == "test"]
    with torch.inference_mode():
        image = model.encode_image(
            torch.stack([encoder.preprocess(ds.load_image(r)) for r in test])
        )
        image = image / image.norm(dim=-1, keepdim=True)
        classes = []
        for name in ds.class_names:
            t = model.encode_text(tokenizer([p.format(name) for p in ds.prompts]))
            t = (t / t.norm(dim=-1, keepdim=True)).mean(0)
            classes.append(t / t.norm())
        logits = 100 * image @ torch.stack(classes).T
    assert zs.y_pred_.tolist() == logits.argmax(1).tolist()
    np.testing.assert_allclose(zs.logits_, logits.numpy(), atol=1e-3)
    assert set(zs.scores_) == {"accuracy", "balanced_accuracy", "macro_f1", "auroc"}


def test_jackknife_replicates_equal_sklearn_on_the_images_left():
    from medprobe.analysis.geometry import effective_rank, effective_ranks
    from medprobe.analysis.separability import ClassMoments, davies_bouldin_sets, scatter_ratios

    fs = gaussian_fs(1.5, n=120, dim=6, classes=3)
    x, y = fs.features.astype(np.float64), fs.labels
    blocks = np.arange(120) % 4
    moments = ClassMoments(x, y, blocks)
    between, within = scatter_ratios(*moments.totals())
    db = davies_bouldin_sets(x, y, blocks, moments)
    ranks = effective_ranks(x, blocks)
    for r in range(5):
        keep = blocks != r - 1
        n = keep.sum()
        assert db[r] == pytest.approx(skm.davies_bouldin_score(x[keep], y[keep]))
        assert between[r] / within[r] * (n - 3) / 2 == pytest.approx(
            skm.calinski_harabasz_score(x[keep], y[keep])
        )
        assert between[r] / within[r] == pytest.approx(fisher_ratio(x[keep], y[keep]))
        centred = x[keep] - x[keep].mean(axis=0)
        s = np.linalg.svd(centred, compute_uv=False)
        p = s / s.sum()
        assert ranks[r] == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    wide = np.random.default_rng(0).standard_normal((40, 60))  # fewer images than dims
    s = np.linalg.svd(wide - wide.mean(axis=0), compute_uv=False)
    p = s[s > s.max() * 1e-6] / s[s > s.max() * 1e-6].sum()
    assert effective_rank(wide) == pytest.approx(np.exp(-(p * np.log(p)).sum()))


def test_every_registered_analysis_resolves_to_its_function():
    import medprobe.audit  # noqa: F401  (registers text_reliance)
    from medprobe.analysis.registry import analyses, listed_analyses
    from medprobe.study.config import StudyConfig

    entries = analyses()
    assert {"data", "knn", "similarity", "overlay", "text_reliance"} <= {e.name for e in entries}
    for entry in entries:
        assert callable(entry.run), entry.name
    # the study file accepts exactly the listed analyses
    config = StudyConfig(name="s", models=["pixels"], datasets=[{"name": "d", "path": "x"}])
    assert tuple(config.analyses) == listed_analyses()
    with pytest.raises(ValueError, match="unknown analysis 'overlay'"):
        StudyConfig(
            name="s", models=["pixels"], datasets=[{"name": "d", "path": "x"}], analyses=["overlay"]
        )


def test_umap_compilation_is_kept_on_disk(tmp_path, monkeypatch):
    """Inside compiled_once, numba functions are compiled with cache=True into the medprobe
    cache (the next process loads them instead of compiling UMAP again)."""
    import importlib
    import sys

    from medprobe.analysis.embedding import compiled_once

    monkeypatch.setenv("MEDPROBE_CACHE", str(tmp_path / "store"))
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    (tmp_path / "jitted_module.py").write_text(
        "import numba\n\n@numba.njit()\ndef plus_one(x):\n    return x + 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with compiled_once():
        module = importlib.import_module("jitted_module")
        assert module.plus_one(1) == 2
    sys.modules.pop("jitted_module")
    assert list((tmp_path / "store" / "numba").rglob("*plus_one*.nbi"))
    import numba

    assert not getattr(numba.njit, "__wrapped__", None)  # restored
