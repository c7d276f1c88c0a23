"""Intrinsic quality metrics of synthetic anomalies (ASBench section 4.4).

Image metrics ``SSIM`` (scikit-image ``structural_similarity``, higher = closer), ``PSNR`` in dB
(``peak_signal_noise_ratio``; ``inf`` for an unchanged image) and ``LPIPS`` (AlexNet, lower = closer),
against one of two references: real defects when available (:func:`unpaired_quality`: every synthetic
image against every real defect image; ASBench compares with real defects too, without publishing its pairing), else each synthetic image against
the anomaly-free original it was made from (:func:`paired_quality`).

Distribution metrics, the synthetic set against a reference set (real anomalies when available,
else the anomaly-free sources): ``FID`` (Fréchet distance of Inception pool features), ``KID``
(unbiased MMD² with the cubic polynomial kernel, mean ± std over random subsets) and ``IS``
(Inception Score of the synthetic set, mean ± std over splits). The FID/KID/IS mathematics is here
(:func:`frechet_distance`, :func:`kernel_inception_distance`, :func:`inception_score`); features come
from :mod:`detect.quality.features`. :func:`distribution_quality` refuses each one, with the reason,
below its minimum image count (:func:`fid_min_images`, ``KID_MIN_IMAGES``, :func:`is_min_images`).

References: Heusel et al. 2017 (FID), Bińkowski et al. 2018 (KID), Salimans et al. 2016 (IS);
ASBench table 9 for the correlation with detection performance (:mod:`detect.quality.correlation`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from detect.errors import MetricInputError, QualityInputError
from detect.quality.diversity import LpipsScorer, Subset, add_dataset_arguments, as_float_rgb
from detect.quality.names import FEATURE_KINDS, LPIPS_NETS

if TYPE_CHECKING:  # torch, scipy and scikit-image load when a metric runs, so ``--help`` starts at once
    from detect.quality.features import FeatureExtractor
from detect.runtime import guarded, subcommand_main
from synth import arguments
from synth.atomic import write_text_atomic


# --------------------------------------------------------------------------- paired metrics
@dataclass(frozen=True)
class PairedQuality:
    """Per-image SSIM, PSNR (dB) and LPIPS of synthetic vs original images, float64 arrays of length N.

    ``lpips`` is ``None`` when it was not computed.
    """

    ssim: np.ndarray
    psnr: np.ndarray
    lpips: np.ndarray | None

    def means(self) -> dict[str, float]:
        """Metric name -> mean over images (PSNR mean is ``inf`` if any image is unchanged)."""
        out = {"SSIM": float(np.mean(self.ssim)), "PSNR": float(np.mean(self.psnr))}
        if self.lpips is not None:
            out["LPIPS"] = float(np.mean(self.lpips))
        return out


def ssim_psnr(image: np.ndarray, original: np.ndarray) -> tuple[float, float]:
    """SSIM (in [-1, 1]) and PSNR (dB, ``inf`` when identical) of one image against its original.

    Both are computed on float RGB in [0, 1] (data range 1; gray is compared as gray). Images must
    have the same size and be at least 7×7 (SSIM's window).
    """
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a, b = as_float_rgb(image), as_float_rgb(original)
    if a.shape != b.shape:
        raise QualityInputError(f"image {a.shape[:2]} and original {b.shape[:2]} differ in size")
    if min(a.shape[:2]) < 7:
        raise QualityInputError(f"SSIM needs images of at least 7×7 pixels, got {a.shape[:2]}")
    ssim = structural_similarity(b, a, channel_axis=2, data_range=1.0)
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    psnr = math.inf if mse == 0.0 else float(peak_signal_noise_ratio(b, a, data_range=1.0))
    return float(ssim), psnr


def paired_quality(
    images: Sequence[np.ndarray],
    originals: Sequence[np.ndarray],
    *,
    scorer: LpipsScorer | None = None,
    with_lpips: bool = True,
) -> PairedQuality:
    """SSIM, PSNR and LPIPS of each ``images[i]`` against ``originals[i]``.

    Args:
        images: N synthetic images (any dtype/layout ``as_float_rgb`` accepts).
        originals: N anomaly-free sources, ``originals[i]`` the source of ``images[i]``.
        scorer: LPIPS scorer to reuse; built (AlexNet) when ``with_lpips`` and not given.
        with_lpips: compute LPIPS (needs the AlexNet weights).
    """
    if len(images) != len(originals):
        raise QualityInputError(f"{len(images)} images but {len(originals)} originals")
    if len(images) == 0:
        raise QualityInputError("no images to compare")
    ssim = np.empty(len(images))
    psnr = np.empty(len(images))
    lp = np.empty(len(images)) if with_lpips else None
    if with_lpips and scorer is None:
        scorer = LpipsScorer("alex")
    chunk = 64
    for start in range(0, len(images), chunk):
        a = [as_float_rgb(images[i]) for i in range(start, min(start + chunk, len(images)))]
        b = [as_float_rgb(originals[i]) for i in range(start, min(start + chunk, len(images)))]
        for k, (x, y) in enumerate(zip(a, b)):
            ssim[start + k], psnr[start + k] = ssim_psnr(x, y)
        if lp is not None:
            lp[start : start + len(a)] = scorer.distances(a, b)
    return PairedQuality(ssim, psnr, lp)


#: (synthetic, reference) image pairs :func:`unpaired_quality` compares at most (a seeded sample beyond)
MAX_PAIRS = 4096


def unpaired_quality(
    images: Sequence[np.ndarray],
    reference: Sequence[np.ndarray],
    *,
    scorer: LpipsScorer | None = None,
    with_lpips: bool = True,
    max_pairs: int = MAX_PAIRS,
    seed: int = 0,
) -> PairedQuality:
    """SSIM, PSNR and LPIPS of synthetic images against a reference set they were not made from (real
    defects): every (synthetic, reference) pair, or a seeded sample of ``max_pairs`` pairs; each
    reference image is resized (area) to its synthetic image's size. One value per pair."""
    if len(images) == 0 or len(reference) == 0:
        raise QualityInputError(f"no images to compare ({len(images)} synthetic, {len(reference)} reference)")
    pairs = [(i, j) for i in range(len(images)) for j in range(len(reference))]
    if len(pairs) > max_pairs:
        chosen = np.random.default_rng(seed).choice(len(pairs), max_pairs, replace=False)
        pairs = [pairs[k] for k in sorted(chosen)]
    return paired_quality(Subset(images, [i for i, _ in pairs]), _ResizedPairs(images, reference, pairs),
                          scorer=scorer, with_lpips=with_lpips)


class _ResizedPairs(Sequence):
    """Reference image ``j`` of pair ``(i, j)`` at the size of synthetic image ``i`` (decoded on indexing)."""

    def __init__(self, images: Sequence[np.ndarray], reference: Sequence[np.ndarray], pairs: list[tuple[int, int]]) -> None:
        self.images, self.reference, self.pairs = images, reference, pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, k):  # type: ignore[override]
        import cv2

        i, j = self.pairs[k]
        height, width = np.asarray(self.images[i]).shape[:2]
        ref = as_float_rgb(self.reference[j])
        if ref.shape[:2] == (height, width):
            return ref
        return cv2.resize(ref, (width, height), interpolation=cv2.INTER_AREA)


# --------------------------------------------------------------------------- minimum image counts
#: KID: the unbiased MMD² is defined from 2 images per set, but its standard deviation falls only as
#: 1/sqrt(m) with m images per set (Gretton et al. 2012: the U-statistic's leading variance term is
#: 4 zeta_1 / m). 50 keeps that term at 1/sqrt(50) ≈ 14 % of its one-image size: a floor this project
#: sets, not a derived constant (KID's authors average subsets of 1000)
KID_MIN_IMAGES = 50


def fid_min_images(feature_dim: int) -> int:
    """Images per set FID needs with D-dimensional features: the covariance of N feature vectors has
    rank at most N − 1, so the fitted Gaussian is full rank only from N = D + 1; below, the distance
    depends on N more than on the images (its bias grows like D/N)."""
    return feature_dim + 1


def is_min_images(classes: int) -> int:
    """Images per split IS needs with C classes: IS = exp(I(x; y)) over a split of n images is at most
    n (the mutual information is at most log n), so below C images the count, not the images, caps it."""
    return classes


# --------------------------------------------------------------------------- distribution metrics
def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), N ≥ 2."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise MetricInputError(f"FID needs at least 2 feature vectors (N, D), got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``||mu1 − mu2||² + Tr(sigma1 + sigma2 − 2 (sigma1 sigma2)^½)``. The matrix square root is
    ``scipy.linalg.sqrtm``; a singular product (fewer samples than dimensions) is regularised with
    ``eps`` on the diagonals, as in the reference FID code, and a tiny imaginary part from round-off
    is dropped.
    """
    import scipy.linalg

    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise MetricInputError(f"mismatched Gaussian shapes: means {mu1.shape}/{mu2.shape}, covariances {s1.shape}/{s2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        # a singular product only warns; the result is checked for finiteness below
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            offset = np.eye(s1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise MetricInputError(f"matrix square root has a large imaginary part ({np.max(np.abs(covmean.imag)):.3g})")
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def fid_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """FID between two feature sets (N1, D) and (N2, D), float64.

    With fewer images than feature dimensions (the usual case per method: hundreds of images,
    D = 2048) the covariances are singular and ``sqrtm`` of a 2048×2048 product is slow (over a
    minute on two CPU cores). The trace term then uses an exact identity instead: with centred
    features A, B, the non-zero eigenvalues of Σ1 Σ2 are the squared singular values of
    A Bᵀ / √((N1−1)(N2−1)), so Tr (Σ1 Σ2)^½ is that matrix's nuclear norm. Otherwise
    :func:`frechet_distance` (``scipy.linalg.sqrtm``) is used.
    """
    f1 = np.asarray(features1, dtype=np.float64)
    f2 = np.asarray(features2, dtype=np.float64)
    mu1, s1 = feature_statistics(f1)
    mu2, s2 = feature_statistics(f2)
    if f1.shape[1] != f2.shape[1]:
        raise MetricInputError(f"feature sets differ in dimension: {f1.shape[1]} vs {f2.shape[1]}")
    n1, n2, d = f1.shape[0], f2.shape[0], f1.shape[1]
    if max(n1, n2) > d:
        return frechet_distance(mu1, s1, mu2, s2)
    a, b = f1 - mu1, f2 - mu2
    cross = (a @ b.T) / math.sqrt((n1 - 1) * (n2 - 1))
    trace_covmean = float(np.linalg.svd(cross, compute_uv=False).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_covmean)


def kernel_inception_distance(
    features1: np.ndarray,
    features2: np.ndarray,
    *,
    n_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID: unbiased MMD² with kernel k(x, y) = (x·y / D + 1)³, mean and std over random subsets.

    Each subset draws ``min(subset_size, N1, N2)`` rows of each set without replacement (seeded).
    Near 0 (possibly slightly negative) for one distribution; grows with the distance.
    """
    f1 = np.asarray(features1, dtype=np.float64)
    f2 = np.asarray(features2, dtype=np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise MetricInputError(f"KID needs two (N, D) feature sets of equal D, got {f1.shape} and {f2.shape}")
    m = min(subset_size, f1.shape[0], f2.shape[0])
    if m < 2:
        raise MetricInputError(f"KID needs at least 2 feature vectors per set, got {f1.shape[0]} and {f2.shape[0]}")
    rng = np.random.default_rng(seed)
    d = f1.shape[1]
    values = np.empty(n_subsets)
    for s in range(n_subsets):
        x = f1[rng.choice(f1.shape[0], m, replace=False)]
        y = f2[rng.choice(f2.shape[0], m, replace=False)]
        values[s] = _mmd2_unbiased(x, y, d)
    return float(values.mean()), float(values.std())


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray, d: int) -> float:
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    m = x.shape[0]
    # diagonal terms k(x_i, x_i) are left out of the within-set means (unbiased estimator)
    return float((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2.0 * kxy.mean())


def inception_score(probs: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """Inception Score exp(E_x KL(p(y|x) || p(y))), mean and std over ``splits`` equal parts.

    ``probs``: (N, C) class probabilities (rows sum to 1). 1 for identical predictions, C for
    confident predictions spread evenly over C classes. ``splits`` is reduced to N when N is smaller.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < 1:
        raise MetricInputError(f"IS needs class probabilities of shape (N, C), got {p.shape}")
    splits = max(1, min(splits, p.shape[0]))
    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(part > 0, part * (np.log(part) - np.log(marginal)), 0.0).sum(axis=1)
        scores.append(math.exp(float(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))


@dataclass(frozen=True)
class DistributionQuality:
    """FID, KID (mean, std) and IS (mean, std) of a synthetic set against a reference set.

    ``values`` holds the metrics computed (``FID``, ``KID``, ``KID_std``, ``IS``, ``IS_std``);
    ``refused`` metric -> why it was not (too few images). ``comparable`` is False for the
    EfficientNet-Lite0 features: the names then carry the suffix ``_EfficientNetLite0`` and the values
    cannot be compared with published FID/KID/IS.
    """

    values: dict[str, float]
    refused: dict[str, str]
    features: str
    comparable: bool
    feature_dim: int
    n_synthetic: int
    n_reference: int

    @property
    def suffix(self) -> str:
        return "" if self.comparable else "_EfficientNetLite0"

    def as_dict(self) -> dict[str, float]:
        """Computed metric name (suffixed when not comparable) -> value."""
        return {f"{k}{self.suffix}": v for k, v in self.values.items()}

    def refusals(self) -> dict[str, str]:
        """Refused metric name (suffixed when not comparable) -> the reason."""
        return {f"{k}{self.suffix}": v for k, v in self.refused.items()}

    def describe(self) -> str:
        """The feature extractor and the image counts, in words."""
        return (f"{self.features} features (D = {self.feature_dim}), {self.n_synthetic} synthetic and "
                f"{self.n_reference} reference images")


def distribution_quality(
    synthetic: Sequence[np.ndarray],
    reference: Sequence[np.ndarray],
    *,
    extractor: FeatureExtractor | None = None,
    features: str = "inception",
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    is_splits: int = 10,
    seed: int = 0,
) -> DistributionQuality:
    """FID, KID and IS of ``synthetic`` images against ``reference`` images; each one below its
    minimum image count (:func:`fid_min_images`, ``KID_MIN_IMAGES``, :func:`is_min_images`) is
    refused with the reason instead of computed.

    Args:
        synthetic, reference: images (any dtype/layout ``as_float_rgb`` accepts).
        extractor: a ready :class:`FeatureExtractor`; else one of kind ``features`` is built.
        kid_subsets, kid_subset_size, seed: KID subsets (seeded draw).
        is_splits: at most this many parts for the IS mean/std (each with at least C images).
    """
    if extractor is None:
        from detect.quality.features import FeatureExtractor

        extractor = FeatureExtractor(features)  # type: ignore[arg-type]
    n_syn, n_ref = len(synthetic), len(reference)
    fewest = min(n_syn, n_ref)
    counts = f"got {n_syn} synthetic and {n_ref} reference images"
    refused: dict[str, str] = {}
    if fewest < fid_min_images(extractor.feature_dim):
        refused["FID"] = (f"needs at least {fid_min_images(extractor.feature_dim)} images per set with {extractor.kind} "
                          f"features (D = {extractor.feature_dim}: below D + 1 the covariance is rank-deficient); {counts}")
    if fewest < KID_MIN_IMAGES:
        refused["KID"] = f"needs at least {KID_MIN_IMAGES} images per set (the estimate is too noisy below); {counts}"
    if n_syn < is_min_images(extractor.classes):
        refused["IS"] = (f"needs at least {is_min_images(extractor.classes)} synthetic images (C = {extractor.classes} "
                         f"classes: IS of n images is at most n); got {n_syn}")
    values: dict[str, float] = {}
    if "IS" not in refused or "FID" not in refused or "KID" not in refused:
        f_syn, p_syn = _embed(extractor, synthetic)
        if "FID" not in refused or "KID" not in refused:
            f_ref, _ = _embed(extractor, reference)
            if "FID" not in refused:
                values["FID"] = fid_from_features(f_syn, f_ref)
            if "KID" not in refused:
                values["KID"], values["KID_std"] = kernel_inception_distance(
                    f_syn, f_ref, n_subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
        if "IS" not in refused:
            splits = max(1, min(is_splits, n_syn // is_min_images(extractor.classes)))
            values["IS"], values["IS_std"] = inception_score(p_syn, splits)
    return DistributionQuality(values, refused, extractor.kind, extractor.comparable, extractor.feature_dim, n_syn, n_ref)


def _embed(extractor: FeatureExtractor, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    feats, probs = [], []
    chunk = 64  # decode lazily-loaded images a chunk at a time
    for start in range(0, len(images), chunk):
        part = [as_float_rgb(images[i]) for i in range(start, min(start + chunk, len(images)))]
        f, p = extractor(part)
        feats.append(f)
        probs.append(p)
    return np.concatenate(feats), np.concatenate(probs)


# --------------------------------------------------------------------------- command line
def register_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``anomalyforge quality`` (and ``anomalyforge quality correlate``) to ``subparsers``."""
    from detect.quality.correlation import register_correlate_cli

    parser = subparsers.add_parser(
        "quality",
        help="SSIM, PSNR, LPIPS, FID, KID and IS of synthetic anomalies (ASBench 4.4); `quality correlate` "
             "relates them to detection results",
        description=(
            "SSIM/PSNR/LPIPS and FID/KID/IS of the synthetic images against real defects (--real; SSIM/PSNR/LPIPS "
            "over synthetic × real pairs), else against their anomaly-free sources (SSIM/PSNR/LPIPS image by image). "
            "FID/KID/IS below their minimum image counts are refused with the reason. "
            "`anomalyforge quality correlate ...` computes Pearson r/p of metrics vs detection results."
        ),
    )
    add_dataset_arguments(parser, required=False)
    parser.add_argument("--by", default=None, metavar="COLUMN", help="metrics per value of this column, e.g. method")
    parser.add_argument("--real", default=None, metavar="REPO_OR_DIR",
                        help="real defects as the reference of every metric: an MVTec AD / BTAD / VisA folder (its defective test "
                             "images), a folder of images, or a dataset with an image column (default: the sources)")
    parser.add_argument("--real-split", default="test", help="split of a --real dataset (default test)")
    parser.add_argument("--features", choices=(*FEATURE_KINDS, "none"), default="inception",
                        help="network for FID/KID/IS: inception (torchvision weights), fid-inception (pt_inception "
                             "weights), efficientnet-lite0 (offline; NOT comparable to published FID), none")
    parser.add_argument("--net", choices=LPIPS_NETS, default="alex", help="LPIPS trunk (default alex)")
    parser.add_argument("--no-lpips", action="store_true", help="skip LPIPS (no AlexNet weights needed)")
    parser.add_argument("--kid-subset-size", type=arguments.integer(2), default=1000, help="images per KID subset (default 1000)")
    parser.add_argument("--seed", type=arguments.seed, default=0, help="seed of the KID subsets (default 0)")
    parser.add_argument("--batch-size", type=arguments.positive, default=16, help="images per forward pass (default 16)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    parser.add_argument("--output", type=Path, default=None, metavar="JSON", help="write the metrics to this JSON file")
    parser.set_defaults(func=guarded(run_cli))
    sub = parser.add_subparsers(dest="quality_command", metavar="{correlate}")
    register_correlate_cli(sub)
    return parser


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of ``anomalyforge quality``; returns the exit code."""
    from detect.quality.anomaly_rows import load_anomaly_rows

    if not args.dataset:
        raise QualityInputError("--dataset REPO_OR_DIR is required (or use the `correlate` subcommand)")
    rows = load_anomaly_rows(args.dataset, revision=args.revision, split=args.split,
                             good_split=args.good_split, sources_dir=args.sources)
    if rows.originals is None and not args.real:
        raise QualityInputError(
            f"{args.dataset} has no anomaly-free sources (no {args.good_split!r} split, or a synth folder without "
            "--sources); without --real (real defects) SSIM/PSNR/LPIPS compare each image with its source"
        )
    scorer = None if args.no_lpips else LpipsScorer(args.net, batch_size=args.batch_size, device=args.device)
    extractor = None
    if args.features != "none":
        from detect.quality.features import FeatureExtractor

        extractor = FeatureExtractor(args.features, batch_size=args.batch_size, device=args.device)
    reference, reference_name = _reference_images(args, rows)

    groups: dict[str, list[int]] = {"all": list(range(len(rows)))}
    if args.by:
        groups = {}
        for i, g in enumerate(rows.column(args.by)):
            groups.setdefault(str(g), []).append(i)
        groups = dict(sorted(groups.items()))
    table: dict[str, dict[str, float]] = {}
    notes: dict[str, dict] = {}
    for name, idx in groups.items():
        images = Subset(rows.images, idx)
        with_lpips = scorer is not None
        if args.real:
            metrics = unpaired_quality(images, reference, scorer=scorer, with_lpips=with_lpips, seed=args.seed).means()
        else:
            metrics = paired_quality(images, Subset(rows.originals, idx), scorer=scorer, with_lpips=with_lpips).means()
        notes[name] = {"reference": reference_name}
        if extractor is not None:
            dist = distribution_quality(images, reference, extractor=extractor,
                                        kid_subset_size=args.kid_subset_size, seed=args.seed)
            metrics.update(dist.as_dict())
            notes[name].update(features=dist.describe(), refused=dist.refusals())
        metrics["n_images"] = float(len(idx))
        table[name] = metrics
    print(format_metrics_table(table, by=args.by or "dataset"))
    print(f"reference: {reference_name}")
    for name, note in notes.items():
        label = "" if name == "all" else f"{name}: "
        if "features" in note:
            print(f"{label}FID/KID/IS with {note['features']}")
        for metric, reason in note.get("refused", {}).items():
            print(f"{label}{metric} not computed: {reason}")
    if extractor is None:
        print("FID/KID/IS: skipped (--features none)")
    elif not extractor.comparable:
        print("note: *_EfficientNetLite0 values use EfficientNet-Lite0 features and are NOT comparable to published FID/KID/IS")
    if args.output is not None:
        payload = {name: {**table[name], **notes[name]} for name in table}
        write_text_atomic(args.output, json.dumps(payload["all"] if not args.by else payload, indent=2) + "\n")
        print(f"wrote {args.output}")
    return 0


def _reference_images(args: argparse.Namespace, rows) -> tuple[Sequence[np.ndarray], str]:
    """The reference images and their description: the real defects of ``--real``, else the sources."""
    from detect.quality.anomaly_rows import load_reference_images

    if args.real:
        real = load_reference_images(args.real, split=args.real_split)
        return real, (f"real defects {args.real} ({len(real)} images; SSIM/PSNR/LPIPS over synthetic × real pairs, "
                      f"at most {MAX_PAIRS})")
    # each source once, not once per anomaly made from it
    seen: dict[str, int] = {}
    ids = rows.columns.get("source_id") or [str(i) for i in range(len(rows))]
    for i, sid in enumerate(ids):
        seen.setdefault(str(sid), i)
    return Subset(rows.originals, list(seen.values())), (f"anomaly-free sources ({len(seen)} images; SSIM/PSNR/LPIPS "
                                                         "of each image against its own source)")


def format_metrics_table(table: dict[str, dict[str, float]], *, by: str) -> str:
    """Markdown table: one row per group, one column per metric."""
    names: list[str] = []
    for metrics in table.values():
        names += [k for k in metrics if k not in names]
    lines = [f"| {by} | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for group, metrics in table.items():
        cells = [_fmt(metrics.get(k)) for k in names]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float) and v.is_integer() and abs(v) >= 1:
        return str(int(v))
    return f"{v:.4g}"


def main(argv: list[str] | None = None) -> int:
    """Run ``quality`` on its own (``python -m detect.quality.metrics --dataset ...``)."""
    return subcommand_main(register_cli, "quality", argv)


if __name__ == "__main__":
    sys.exit(main())
