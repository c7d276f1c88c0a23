"""How sure a detection metric is: bootstrap intervals, Wilson intervals, paired comparisons.

* **Bootstrap 95 % intervals** of image AUROC / AP and pixel AUROC / AP / AUPRO resample *images*
  with replacement, separately among the anomaly-free and the anomalous ones (stratified by label,
  so every resample keeps the sample sizes of the evaluation), ``RESAMPLES`` times from a fixed
  ``SEED``: the same scores give the same interval on every machine. The interval is the 2.5 and
  97.5 percentiles of the resampled metric (percentile bootstrap, Efron & Tibshirani 1993, ch. 13).
  Image metrics are recomputed exactly on each resample. Pixel metrics of a resample are computed
  from per-image histograms of the pixel scores over ``PIXEL_BINS`` quantile bins of all pixels
  (one pass over the maps instead of one per resample); the point value itself stays exact.
* **Wilson score interval** (Wilson 1927; Newcombe 1998, method 3) of a proportion such as the
  recall at k false positives: it stays inside [0, 1] and is not degenerate at 0 % or 100 %.
* **Paired bootstrap of a difference** between two scorers on the same test images: the same
  image resample is applied to both, so image-to-image variation cancels; the difference is
  significant when its interval excludes 0. ``images_needed`` says how many test images would make
  an observed difference significant if it were the true one (the interval narrows as 1/sqrt(n)).

With few anomaly-free images every one of these intervals is wide (and a percentile bootstrap of 2
images has only 3 distinct draws); ``small_sample_caveat`` says so in one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from detect.errors import MetricInputError

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
PIXEL_BINS = 2048
#: below this many anomaly-free test images every interval is wide and the output says so
MIN_GOOD_IMAGES = 20


@dataclass(frozen=True)
class Interval:
    """A two-sided interval ``[low, high]`` at ``level`` (0..1)."""

    low: float
    high: float
    level: float = LEVEL

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def as_list(self) -> list[float]:
        return [self.low, self.high]

    def __str__(self) -> str:
        return f"[{self.low:.3f}, {self.high:.3f}]"


def z_value(level: float) -> float:
    """The standard normal quantile of a two-sided interval at ``level`` (1.96 for 0.95)."""
    from scipy.stats import norm

    if not 0.0 < level < 1.0:
        raise MetricInputError(f"level must be in (0, 1), got {level}")
    return float(norm.ppf(0.5 + level / 2.0))


def wilson(successes: int, n: int, level: float = LEVEL) -> Interval:
    """Wilson score interval of the proportion ``successes / n``."""
    if n < 1 or not 0 <= successes <= n:
        raise MetricInputError(f"a proportion needs 0 <= successes <= n and n >= 1, got {successes}/{n}")
    z = z_value(level)
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    return Interval(max(0.0, centre - half), min(1.0, centre + half), level)


def small_sample_caveat(n_good: int) -> str | None:
    """One line when the anomaly-free set is too small for the numbers to mean much, else ``None``."""
    if n_good >= MIN_GOOD_IMAGES:
        return None
    return (f"caveat: only {n_good} anomaly-free test image(s) (< {MIN_GOOD_IMAGES}): each false positive is "
            f"{100.0 / n_good:.0f} % of them, the intervals are unreliable (a bootstrap cannot show variation that "
            "so few images do not contain), and these numbers cannot rank detectors")


# ------------------------------------------------------------------------------------ resampling


def stratified_resamples(n_good: int, n_anomalous: int, resamples: int = RESAMPLES,
                         seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays ``(resamples, n_good)`` and ``(resamples, n_anomalous)``: images drawn with
    replacement within each label."""
    if n_good < 1 or n_anomalous < 1:
        raise MetricInputError(f"a bootstrap needs both labels, got {n_good} anomaly-free and {n_anomalous} anomalous")
    rng = np.random.default_rng(seed)
    return rng.integers(n_good, size=(resamples, n_good)), rng.integers(n_anomalous, size=(resamples, n_anomalous))


def _percentiles(values: np.ndarray, level: float) -> Interval:
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise MetricInputError("no resample gave a finite value")
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return Interval(float(low), float(high), level)


def auroc_rows(good: np.ndarray, anomalous: np.ndarray) -> np.ndarray:
    """AUROC of each row: ``good`` ``(R, n0)`` and ``anomalous`` ``(R, n1)`` scores (ties count 1/2)."""
    from scipy.stats import rankdata

    n0, n1 = good.shape[1], anomalous.shape[1]
    ranks = rankdata(np.concatenate([good, anomalous], axis=1), axis=1)
    return (ranks[:, n0:].sum(axis=1) - n1 * (n1 + 1) / 2.0) / (n0 * n1)


def ap_rows(good: np.ndarray, anomalous: np.ndarray) -> np.ndarray:
    """Average precision of each row (as ``auroc_rows``; scikit-learn's definition)."""
    from sklearn.metrics import average_precision_score

    y = np.r_[np.zeros(good.shape[1]), np.ones(anomalous.shape[1])]
    return np.array([average_precision_score(y, np.r_[g, a]) for g, a in zip(good, anomalous)])


def image_intervals(good_scores: Sequence[float], anomaly_scores: Sequence[float], *, resamples: int = RESAMPLES,
                    seed: int = SEED, level: float = LEVEL) -> dict[str, Interval]:
    """Bootstrap intervals of image AUROC and AP: ``{"image_auroc": ..., "image_ap": ...}``."""
    options = dict(resamples=resamples, seed=seed, level=level)
    return {"image_auroc": bootstrap_interval(good_scores, anomaly_scores, auroc_rows, **options),
            "image_ap": bootstrap_interval(good_scores, anomaly_scores, ap_rows, **options)}


def bootstrap_interval(good_scores: Sequence[float], anomaly_scores: Sequence[float],
                       metric: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None, *, resamples: int = RESAMPLES,
                       seed: int = SEED, level: float = LEVEL) -> Interval:
    """Stratified percentile-bootstrap interval of ``metric`` (rows of good and anomalous scores ->
    one value per row; default AUROC) over image scores."""
    good = np.asarray(good_scores, np.float64).ravel()
    anomalous = np.asarray(anomaly_scores, np.float64).ravel()
    gi, ai = stratified_resamples(good.size, anomalous.size, resamples, seed)
    return _percentiles((metric or auroc_rows)(good[gi], anomalous[ai]), level)


# ------------------------------------------------------------------------------------ pixel level


@dataclass(frozen=True)
class PixelHistograms:
    """Per image, its pixels counted in ``bins`` score bins (ascending): ``negative`` and ``positive``
    pixel counts, ``region_share`` (sum over its ground-truth regions of the share of the region in
    each bin) and ``regions`` (its number of 8-connected regions). Arrays ``(n_images, bins)``."""

    negative: np.ndarray
    positive: np.ndarray
    region_share: np.ndarray
    regions: np.ndarray


def pixel_histograms(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], bins: int = PIXEL_BINS) -> PixelHistograms:
    """Histograms of every image's pixel scores over quantile bins shared by all images."""
    from scipy import ndimage

    flat = np.concatenate([np.asarray(m, np.float64).ravel() for m in maps])
    edges = np.unique(np.quantile(flat, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    n_bins = edges.size + 1
    negative, positive, share, regions = [], [], [], []
    for amap, mask in zip(maps, masks):
        where = np.searchsorted(edges, np.asarray(amap, np.float64).ravel(), side="right")
        labels, count = ndimage.label(np.asarray(mask).astype(bool), structure=np.ones((3, 3)))
        labels = labels.ravel()
        anomalous = labels > 0
        weight = np.zeros(labels.size)
        if count:
            sizes = np.bincount(labels)[1:]
            weight[anomalous] = 1.0 / sizes[labels[anomalous] - 1]
        negative.append(np.bincount(where[~anomalous], minlength=n_bins))
        positive.append(np.bincount(where[anomalous], minlength=n_bins))
        share.append(np.bincount(where, weights=weight, minlength=n_bins))
        regions.append(count)
    return PixelHistograms(np.array(negative, np.float64), np.array(positive, np.float64),
                           np.array(share, np.float64), np.array(regions, np.float64))


def _binned_pixel_metrics(neg: np.ndarray, pos: np.ndarray, share: np.ndarray, regions: np.ndarray,
                          fpr_limit: float) -> dict[str, np.ndarray]:
    """Pixel AUROC, AP and AUPRO of each row of summed histograms ``(R, bins)`` (``regions`` ``(R,)``)."""
    from detect.evaluation.metrics import area_to_limit

    n_neg, n_pos = neg.sum(axis=1), pos.sum(axis=1)
    below = np.cumsum(neg, axis=1) - neg  # negatives in lower bins
    auroc = (pos * (below + 0.5 * neg)).sum(axis=1) / (n_neg * n_pos)
    # from the highest bin down: each bin edge is a threshold
    tp = np.cumsum(pos[:, ::-1], axis=1)
    fp = np.cumsum(neg[:, ::-1], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 1.0)
    recall = tp / n_pos[:, None]
    ap = (np.diff(recall, axis=1, prepend=0.0) * precision).sum(axis=1)
    fpr = np.concatenate([np.zeros((neg.shape[0], 1)), fp / n_neg[:, None]], axis=1)
    pro = np.concatenate([np.zeros((neg.shape[0], 1)), np.cumsum(share[:, ::-1], axis=1) / regions[:, None]], axis=1)
    aupro = np.array([area_to_limit(f, p, fpr_limit) / fpr_limit for f, p in zip(fpr, pro)])
    return {"pixel_auroc": auroc, "pixel_ap": ap, "aupro": aupro}


def pixel_intervals(histograms: PixelHistograms, is_anomalous: Sequence[bool], *, resamples: int = RESAMPLES,
                    seed: int = SEED, level: float = LEVEL, fpr_limit: float = 0.3) -> dict[str, Interval]:
    """Bootstrap intervals of pixel AUROC, AP and AUPRO, resampling images stratified by
    ``is_anomalous`` (one bool per histogram row)."""
    labels = np.asarray(is_anomalous, bool)
    good_rows, bad_rows = np.flatnonzero(~labels), np.flatnonzero(labels)
    gi, ai = stratified_resamples(good_rows.size, bad_rows.size, resamples, seed)
    weights = np.zeros((resamples, labels.size))
    rows = np.arange(resamples)[:, None]
    np.add.at(weights, (rows, good_rows[gi]), 1.0)
    np.add.at(weights, (rows, bad_rows[ai]), 1.0)
    values = _binned_pixel_metrics(weights @ histograms.negative, weights @ histograms.positive,
                                   weights @ histograms.region_share, weights @ histograms.regions, fpr_limit)
    return {name: _percentiles(v, level) for name, v in values.items()}


# ------------------------------------------------------------------------------------ paired comparison


@dataclass(frozen=True)
class PairedDifference:
    """``a - b`` of a metric measured by two scorers on the same images.

    ``difference`` the observed value; ``interval`` its paired bootstrap interval; ``sd`` the
    bootstrap standard deviation; ``n_good``/``n_anomalous`` the test images it rests on.
    """

    difference: float
    interval: Interval
    sd: float
    n_good: int
    n_anomalous: int

    @property
    def significant(self) -> bool:
        return not self.interval.contains(0.0)

    def images_needed(self) -> int | None:
        """Test images (both labels, in today's proportion) at which the observed difference would
        reach significance; ``None`` when it is 0 (no sample size would)."""
        if self.difference == 0.0 or self.sd == 0.0:
            return None
        n = self.n_good + self.n_anomalous
        z = z_value(self.interval.level)
        return int(math.ceil(n * (z * self.sd / abs(self.difference)) ** 2))


def paired_difference(good_a: np.ndarray, anomalous_a: np.ndarray, good_b: np.ndarray, anomalous_b: np.ndarray,
                      **options) -> PairedDifference:
    """Paired bootstrap of ``metric(a) - metric(b)`` over the same test images (see ``paired_contrast``)."""
    return paired_contrast([(good_a, anomalous_a), (good_b, anomalous_b)], [1.0, -1.0], **options)


def paired_contrast(scorers: Sequence[tuple[np.ndarray, np.ndarray]], weights: Sequence[float], *,
                    metric: Callable[[np.ndarray, np.ndarray], np.ndarray] = auroc_rows, resamples: int = RESAMPLES,
                    seed: int = SEED, level: float = LEVEL) -> PairedDifference:
    """Paired bootstrap of ``sum_j weights[j] * metric(scorer j)`` over the same test images, e.g.
    ``[1, -1]`` for a difference, ``[1, -0.5, -0.5]`` for a hybrid against the mean of its two methods.

    Each scorer is ``(good, anomalous)`` scores of shape ``(repeats, n_good)`` and
    ``(repeats, n_anomalous)``: row ``s`` is one repeat (a seed) on the same images in the same order.
    The metric is averaged over a scorer's repeats, and one image resample serves every repeat of every
    scorer. ``metric`` maps ``(R, n0)``, ``(R, n1)`` score rows to ``R`` values (default: AUROC).
    """
    pairs = [(np.atleast_2d(np.asarray(g, np.float64)), np.atleast_2d(np.asarray(a, np.float64))) for g, a in scorers]
    n_good, n_anomalous = pairs[0][0].shape[1], pairs[0][1].shape[1]
    if any(g.shape[1] != n_good or a.shape[1] != n_anomalous for g, a in pairs):
        raise MetricInputError("paired scores need the same test images: "
                               + ", ".join(f"{g.shape[1]}+{a.shape[1]}" for g, a in pairs))
    gi, ai = stratified_resamples(n_good, n_anomalous, resamples, seed)
    observed, boot = 0.0, np.zeros(resamples)
    for weight, (good, anomalous) in zip(weights, pairs):
        observed += weight * float(np.mean([metric(g[None], a[None])[0] for g, a in zip(good, anomalous)]))
        boot += weight * np.mean([metric(g[gi], a[ai]) for g, a in zip(good, anomalous)], axis=0)
    return PairedDifference(observed, _percentiles(boot, level), float(np.std(boot)), n_good, n_anomalous)


def correlation_interval(r: float, n: int, level: float = LEVEL) -> Interval:
    """Fisher-z interval of a Pearson correlation ``r`` from ``n`` pairs (needs n >= 4)."""
    if n < 4:
        raise MetricInputError(f"a correlation interval needs at least 4 pairs, got {n}")
    z, half = math.atanh(max(-0.999999, min(0.999999, r))), z_value(level) / math.sqrt(n - 3)
    return Interval(math.tanh(z - half), math.tanh(z + half), level)
