"""Coverage of the text-side intervals, measured by simulation (run by hand, not in CI).

    python benchmarks/text_side_calibration.py [--sims 400] [--n 150] [--resamples 1000]

Each simulated test set draws ``n`` images (balanced classes) and, per image, whether each
classifier is right: every classifier has known per-class accuracies, so its population
balanced accuracy -- and every statistic of several of them -- is known. Templates of one model
share a per-image difficulty (a prompt's errors fall mostly on the same hard images, as real
prompt variants' do), tuned by ``rho``. Printed: the share of 95% intervals that contain the
population value, for

- a template's balanced accuracy (the percentile bootstrap of ``Resampled``);
- the mean and SD over templates (``PromptSensitivity`` spread rows), and the min and max: the
  true balanced accuracy of the template that measured worst / best in that simulated set
  (what the winner-corrected interval estimates);
- expert - lay (``paired_bootstrap``, as ``Terminology`` runs it);
- the text-addressable share (``TextShare``'s ratio interval), with a probe well above chance
  and close to it.

A line per statistic: coverage and the mean interval width. Coverage is the estimate's own
Monte-Carlo noise too: with 400 simulations its standard error is about 1.1 points at 95%.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import norm

from medprobe.analysis import metrics
from medprobe.analysis.stats import paired_bootstrap
from medprobe.analysis.text_side import SPREADS, Resampled


def correct(
    rng: np.random.Generator, labels: np.ndarray, accuracy: np.ndarray, rho: float
) -> np.ndarray:
    """``[P, n]`` correctness of P classifiers with per-class accuracies ``accuracy [P, K]``;
    a shared latent difficulty per image correlates them (Gaussian copula, correlation rho)."""
    shared = rng.standard_normal(len(labels))
    own = rng.standard_normal((len(accuracy), len(labels)))
    latent = np.sqrt(rho) * shared + np.sqrt(1 - rho) * own
    return norm.cdf(latent) < accuracy[:, labels]


def predictions(labels: np.ndarray, right: np.ndarray, k: int) -> np.ndarray:
    """Right: the label; wrong: the next class."""
    return np.where(right, labels, (labels + 1) % k)


def simulate(sims: int, n: int, resamples: int, rho: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    k = 3
    labels = np.arange(n) % k
    chance = 1 / k
    # eight templates of one model: per-class accuracies around 0.6, spread by template
    templates = np.clip(0.6 + rng.normal(0, 0.08, (8, 1)) + rng.normal(0, 0.05, (8, k)), 0.05, 1)
    expert, lay = np.array([[0.75, 0.6, 0.7]]), np.array([[0.6, 0.55, 0.6]])
    probes = {"probe far above chance": [0.9, 0.85, 0.9], "probe near chance": [0.5, 0.45, 0.45]}
    zero_shot = np.array([[0.55, 0.5, 0.6]])
    true_ba = templates.mean(axis=1)
    truth = {
        "template BA": templates[0].mean(),
        **{
            f"templates {s}": float(f(true_ba[:, None])[0])
            for s, f in SPREADS.items()
            if s in ("mean", "sd")
        },
        "templates min": np.nan,  # the selected template's, per simulated set
        "templates max": np.nan,
        "expert - lay": expert.mean() - lay.mean(),
        **{
            f"share, {p}": (zero_shot.mean() - chance) / (np.mean(acc) - chance)
            for p, acc in probes.items()
        },
    }
    hits = {name: [] for name in truth}
    widths = {name: [] for name in truth}

    def record(name: str, low: float, high: float, true: float | None = None) -> None:
        true = truth[name] if true is None else true
        hits[name].append(low <= true <= high)
        widths[name].append(high - low)

    for s in range(sims):
        boot = Resampled(labels, resamples, 0.95, seed=s)
        right = correct(rng, labels, templates, rho)
        values, samples = zip(
            *(boot.balanced_accuracy(predictions(labels, r, k)) for r in right), strict=True
        )
        values, samples = np.array(values), np.stack(samples)
        first = boot.estimate(values[0], samples[0])
        record("template BA", first.ci_low, first.ci_high)
        # min / max: the selected template's true value (it changes from one set to the next)
        selected = {"min": true_ba[np.argmin(values)], "max": true_ba[np.argmax(values)]}
        for name, est in boot.spreads(values, samples).items():
            spread = name.removeprefix("balanced_accuracy_")
            record(f"templates {spread}", est.ci_low, est.ci_high, selected.get(spread))

        both = correct(rng, labels, np.concatenate([expert, lay]), rho)
        e_pred, l_pred = (predictions(labels, r, k) for r in both)
        diff = paired_bootstrap(
            metrics.statistic(metrics.balanced_accuracy, labels, e_pred, k),
            metrics.statistic(metrics.balanced_accuracy, labels, l_pred, k),
            labels,
            n_resamples=resamples,
            seed=s,
        )
        record("expert - lay", diff.ci_low, diff.ci_high)

        zs_right = correct(rng, labels, zero_shot, rho)[0]
        zs_value, zs_samples = boot.balanced_accuracy(predictions(labels, zs_right, k))
        for name, acc in probes.items():
            lp_right = correct(rng, labels, np.array([acc]), 0.0)[0]
            _, lp_samples = boot.balanced_accuracy(predictions(labels, lp_right, k))
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(
                    lp_samples > chance, (zs_samples - chance) / (lp_samples - chance), np.nan
                )
            lp_value = float(boot.balanced_accuracy(predictions(labels, lp_right, k))[0])
            low, high = (np.nan, np.nan)
            if np.percentile(lp_samples - chance, 2.5) > 0:  # TextShare's rule: else undefined
                share = boot.estimate((zs_value - chance) / (lp_value - chance), ratio)
                low, high = share.ci_low, share.ci_high
            if np.isfinite(low):
                record(f"share, {name}", low, high)
            else:
                widths.setdefault(f"undefined: share, {name}", []).append(1)

    print(
        f"n = {n} test images, {k} classes, {sims} simulations, {resamples} resamples, rho = {rho}"
    )
    for name in truth:
        if hits[name]:
            print(
                f"  {name:<36} coverage {np.mean(hits[name]):6.1%}  mean width "
                f"{np.mean(widths[name]):.3f}  ({len(hits[name])} defined)"
            )
    for name, count in widths.items():
        if name.startswith("undefined"):
            print(f"  {name:<36} in {len(count)} of {sims} simulations")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=400)
    parser.add_argument("--n", type=int, default=150)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    for rho in (0.0, 0.7):
        simulate(args.sims, args.n, args.resamples, rho)


if __name__ == "__main__":
    main()
