"""Detection metrics: recall at k false positives, image/pixel AUROC and AP, AUPRO.

AUROC and AP come from scikit-learn. Written here, because no library offers them in this form:

* **recall at k false positives** (SYNAGEN paper, section 6): the threshold lets exactly ``k`` of
  the anomaly-free test images through as false positives, and recall is the share of synthetic
  anomalies above it. Convention (see ``threshold_at_k``): an image is flagged when
  ``score > threshold`` and ``threshold`` is the ``(k+1)``-th largest anomaly-free score, so exactly
  ``k`` good images score above it when their scores are distinct. Ties never push the false
  positives *above* ``k``: when the ``k``-th and ``(k+1)``-th largest good scores are equal, fewer
  than ``k`` good images are flagged (the count is reported as ``false_positives``), because a
  budget of ``k`` false positives must not be exceeded. An anomaly that ties with the threshold is
  *not* detected (it is indistinguishable from a good image that is not flagged).
* **AUPRO** (Bergmann et al., MVTec AD): per-region overlap averaged over all connected ground-truth
  regions, integrated over the false-positive rate of anomaly-free pixels up to ``fpr_limit``
  (0.3) and divided by ``fpr_limit`` so that a perfect detector scores 1. Computed exactly from
  one sort of all pixels (every distinct score is a threshold), not on a threshold grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from detect.errors import MetricInputError


def _scores(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise MetricInputError(f"no {what} given")
    if not np.all(np.isfinite(arr)):
        raise MetricInputError(f"{what} contain NaN or infinite values")
    return arr


# ------------------------------------------------------------------------------- recall at k


@dataclass(frozen=True)
class RecallAtK:
    """Recall at a budget of ``k`` false positives.

    ``threshold``        flag when ``score > threshold``.
    ``false_positives``  good images above the threshold (``k``, or fewer when good scores tie).
    ``detected``         bool ``(n_anomalies,)``, which anomalies score above the threshold.
    ``recall``           ``detected.mean()``.
    """

    k: int
    threshold: float
    false_positives: int
    detected: np.ndarray
    recall: float


def threshold_at_k(good_scores: Sequence[float] | np.ndarray, k: int) -> float:
    """The ``(k+1)``-th largest good score: exactly ``k`` good images lie strictly above it.

    Needs at least ``k + 1`` good images (with only ``k``, every threshold below all of them flags
    all of them, which says nothing about the detector).
    """
    good = _scores(good_scores, "anomaly-free scores")
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise MetricInputError(f"k must be a positive integer, got {k!r}")
    if good.size < k + 1:
        raise MetricInputError(
            f"recall at {k} false positives needs at least {k + 1} anomaly-free images, got {good.size}"
        )
    return float(np.sort(good)[::-1][k])


def recall_at_k(
    good_scores: Sequence[float] | np.ndarray, anomaly_scores: Sequence[float] | np.ndarray, k: int
) -> RecallAtK:
    """Recall of anomalies at the threshold that lets ``k`` good images through (see module doc)."""
    threshold = threshold_at_k(good_scores, k)
    good = np.asarray(good_scores, dtype=np.float64).ravel()
    anomalies = _scores(anomaly_scores, "anomaly scores")
    detected = anomalies > threshold
    return RecallAtK(
        k=int(k),
        threshold=threshold,
        false_positives=int((good > threshold).sum()),
        detected=detected,
        recall=float(detected.mean()),
    )


# ------------------------------------------------------------------------------- image level


def _binary(good: np.ndarray, anomalies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.concatenate([np.zeros(good.size, dtype=np.int8), np.ones(anomalies.size, dtype=np.int8)])
    return y, np.concatenate([good, anomalies])


def image_auroc(good_scores: Sequence[float] | np.ndarray, anomaly_scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve, anomalies = positives (scikit-learn ``roc_auc_score``)."""
    from sklearn.metrics import roc_auc_score

    y, s = _binary(_scores(good_scores, "anomaly-free scores"), _scores(anomaly_scores, "anomaly scores"))
    return float(roc_auc_score(y, s))


def image_ap(good_scores: Sequence[float] | np.ndarray, anomaly_scores: Sequence[float] | np.ndarray) -> float:
    """Average precision, anomalies = positives (scikit-learn ``average_precision_score``)."""
    from sklearn.metrics import average_precision_score

    y, s = _binary(_scores(good_scores, "anomaly-free scores"), _scores(anomaly_scores, "anomaly scores"))
    return float(average_precision_score(y, s))


# ------------------------------------------------------------------------------- pixel level


def _pixels(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if len(maps) != len(masks):
        raise MetricInputError(f"{len(maps)} anomaly maps but {len(masks)} masks")
    if not maps:
        raise MetricInputError("no anomaly maps given")
    for i, (a, m) in enumerate(zip(maps, masks)):
        if np.shape(a) != np.shape(m):
            raise MetricInputError(f"map {i} has shape {np.shape(a)} but its mask {np.shape(m)}")
    scores = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in maps])
    labels = np.concatenate([np.asarray(m).astype(bool).ravel() for m in masks])
    if labels.all() or not labels.any():
        raise MetricInputError("pixel metrics need both anomalous and anomaly-free pixels")
    return scores, labels


def pixel_auroc(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float:
    """Pixel-level AUROC over all pixels of all images (masks: nonzero = anomalous)."""
    from sklearn.metrics import roc_auc_score

    scores, labels = _pixels(maps, masks)
    return float(roc_auc_score(labels, scores))


def pixel_ap(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float:
    """Pixel-level average precision over all pixels of all images."""
    from sklearn.metrics import average_precision_score

    scores, labels = _pixels(maps, masks)
    return float(average_precision_score(labels, scores))


def pro_curve(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The PRO curve ``(fpr, pro)``, both float64 and increasing from (0, 0) to (1, 1).

    Each distinct score ``t`` (descending) is a threshold; a pixel is positive when ``score >= t``.
    ``fpr`` = positive anomaly-free pixels / all anomaly-free pixels; ``pro`` = mean over connected
    ground-truth regions (8-connectivity, per image) of the share of the region's pixels that are
    positive.
    """
    from scipy import ndimage

    scores, labels = _pixels(maps, masks)
    region_weight = np.zeros(scores.size, dtype=np.float64)
    offset, n_regions, weights = 0, 0, []
    for m in masks:
        regions, count = ndimage.label(np.asarray(m).astype(bool), structure=np.ones((3, 3)))
        flat = regions.ravel()
        if count:
            sizes = np.bincount(flat)[1:]
            w = np.zeros(flat.size)
            w[flat > 0] = 1.0 / sizes[flat[flat > 0] - 1]
            weights.append((offset, w))
        n_regions += count
        offset += flat.size
    for start, w in weights:
        region_weight[start : start + w.size] = w
    region_weight /= n_regions
    negative = (~labels).astype(np.float64) / float((~labels).sum())
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    fpr = np.cumsum(negative[order])
    pro = np.cumsum(region_weight[order])
    # one point per distinct score: the last pixel of each run of equal scores
    last = np.r_[np.nonzero(np.diff(sorted_scores))[0], sorted_scores.size - 1]
    fpr = np.r_[0.0, fpr[last]]
    pro = np.r_[0.0, pro[last]]
    return np.clip(fpr, 0.0, 1.0), np.clip(pro, 0.0, 1.0)


def aupro(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], fpr_limit: float = 0.3) -> float:
    """Area under the PRO curve for ``fpr`` in [0, fpr_limit], divided by ``fpr_limit`` (0..1)."""
    if not 0.0 < fpr_limit <= 1.0:
        raise MetricInputError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    fpr, pro = pro_curve(maps, masks)
    return area_to_limit(fpr, pro, fpr_limit) / fpr_limit


def area_to_limit(fpr: np.ndarray, pro: np.ndarray, fpr_limit: float) -> float:
    """Trapezoid area under the increasing curve ``(fpr, pro)`` (starting at fpr 0) from 0 to ``fpr_limit``."""
    end = np.searchsorted(fpr, fpr_limit, side="right")
    xs, ys = fpr[:end], pro[:end]
    if end < fpr.size and xs[-1] < fpr_limit:
        # linear interpolation of the PRO value at exactly fpr_limit
        x0, x1, y0, y1 = fpr[end - 1], fpr[end], pro[end - 1], pro[end]
        y_at = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
        xs, ys = np.r_[xs, fpr_limit], np.r_[ys, y_at]
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2.0))
