"""Intrinsic quality metrics of synthetic anomalies (ASBench section 4.4).

Paired metrics, each synthetic image against the anomaly-free original it was made from:
``SSIM`` (scikit-image ``structural_similarity``, higher = closer), ``PSNR`` in dB
(``peak_signal_noise_ratio``; ``inf`` for an unchanged image) and ``LPIPS`` (AlexNet, lower = closer).

Distribution metrics, the synthetic set against a reference set (real anomalies when available,
else the anomaly-free sources): ``FID`` (Fréchet distance of Inception pool features), ``KID``
(unbiased MMD² with the cubic polynomial kernel, mean ± std over random subsets) and ``IS``
(Inception Score of the synthetic set, mean ± std over splits). The FID/KID/IS mathematics is here
(:func:`frechet_distance`, :func:`kernel_inception_distance`, :func:`inception_score`); features come
from :mod:`detect.quality.features`.

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
from typing import TYPE_CHECKING
from pathlib import Path

import numpy as np

from detect.errors import MetricInputError, QualityInputError
from detect.quality.diversity import LpipsScorer, Subset, add_dataset_arguments, as_float_rgb
from detect.quality.names import FEATURE_KINDS, LPIPS_NETS

if TYPE_CHECKING:  # torch, scipy and scikit-image load when a metric runs, so ``--help`` starts at once
    from detect.quality.features import FeatureExtractor
from detect.runtime import guarded, subcommand_main
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

    ``comparable`` is False for the EfficientNet-Lite0 features: the names then carry the suffix
    ``_EfficientNetLite0`` and the values cannot be compared with published FID/KID/IS.
    """

    fid: float
    kid: float
    kid_std: float
    inception_score: float
    inception_score_std: float
    features: str
    comparable: bool

    def as_dict(self) -> dict[str, float]:
        """Metric name -> value (``FID``, ``KID``, ``KID_std``, ``IS``, ``IS_std``, suffixed when not comparable)."""
        sfx = "" if self.comparable else "_EfficientNetLite0"
        return {f"FID{sfx}": self.fid, f"KID{sfx}": self.kid, f"KID_std{sfx}": self.kid_std,
                f"IS{sfx}": self.inception_score, f"IS_std{sfx}": self.inception_score_std}


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
    """FID, KID and IS of ``synthetic`` images against ``reference`` images.

    Args:
        synthetic, reference: images (any dtype/layout ``as_float_rgb`` accepts), ≥ 2 each.
        extractor: a ready :class:`FeatureExtractor`; else one of kind ``features`` is built.
        kid_subsets, kid_subset_size, seed: KID subsets (seeded draw).
        is_splits: parts for the IS mean/std.
    """
    if len(synthetic) < 2 or len(reference) < 2:
        raise QualityInputError(f"FID/KID need at least 2 images per set, got {len(synthetic)} and {len(reference)}")
    if extractor is None:
        from detect.quality.features import FeatureExtractor

        extractor = FeatureExtractor(features)  # type: ignore[arg-type]
    f_syn, p_syn = _embed(extractor, synthetic)
    f_ref, _ = _embed(extractor, reference)
    kid, kid_std = kernel_inception_distance(f_syn, f_ref, n_subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    is_mean, is_std = inception_score(p_syn, is_splits)
    return DistributionQuality(fid_from_features(f_syn, f_ref), kid, kid_std, is_mean, is_std,
                               extractor.kind, extractor.comparable)


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
            "Paired SSIM/PSNR/LPIPS of each synthetic image against its anomaly-free source, and FID/KID/IS of "
            "the synthetic images against a reference set (--real dataset of real anomalies, else the sources). "
            "`anomalyforge quality correlate ...` computes Pearson r/p of metrics vs detection results."
        ),
    )
    add_dataset_arguments(parser, required=False)
    parser.add_argument("--by", default=None, metavar="COLUMN", help="metrics per value of this column, e.g. method")
    parser.add_argument("--real", default=None, metavar="REPO_OR_DIR",
                        help="real anomalies as the FID/KID reference: a folder of images (e.g. MVTec AD's test/<defect>/), "
                             "or a dataset with an image column (default reference: the anomaly-free sources)")
    parser.add_argument("--real-split", default="test", help="split of a --real dataset (default test)")
    parser.add_argument("--features", choices=(*FEATURE_KINDS, "none"), default="inception",
                        help="network for FID/KID/IS: inception (torchvision weights), fid-inception (pt_inception "
                             "weights), efficientnet-lite0 (offline; NOT comparable to published FID), none")
    parser.add_argument("--net", choices=LPIPS_NETS, default="alex", help="LPIPS trunk (default alex)")
    parser.add_argument("--no-lpips", action="store_true", help="skip LPIPS (no AlexNet weights needed)")
    parser.add_argument("--kid-subset-size", type=int, default=1000, help="images per KID subset (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the KID subsets (default 0)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
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
    if rows.originals is None:
        raise QualityInputError(
            f"{args.dataset} has no anomaly-free sources (no {args.good_split!r} split, or a synth folder without "
            "--sources); SSIM/PSNR/LPIPS compare each image with its source"
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
    for name, idx in groups.items():
        images = Subset(rows.images, idx)
        originals = Subset(rows.originals, idx)
        metrics = paired_quality(images, originals, scorer=scorer, with_lpips=scorer is not None).means()
        if extractor is not None and len(idx) >= 2:
            metrics.update(distribution_quality(images, reference, extractor=extractor,
                                                kid_subset_size=args.kid_subset_size, seed=args.seed).as_dict())
        metrics["n_images"] = float(len(idx))
        table[name] = metrics
    print(format_metrics_table(table, by=args.by or "dataset"))
    print(f"FID/KID reference: {reference_name}" if extractor is not None else "FID/KID/IS: skipped (--features none)")
    if extractor is not None and not extractor.comparable:
        print("note: *_EfficientNetLite0 values use EfficientNet-Lite0 features and are NOT comparable to published FID/KID/IS")
    if args.output is not None:
        payload = table["all"] if not args.by else table
        write_text_atomic(args.output, json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.output}")
    return 0


def _reference_images(args: argparse.Namespace, rows) -> tuple[Sequence[np.ndarray], str]:
    from detect.quality.anomaly_rows import load_reference_images

    if args.real:
        real = load_reference_images(args.real, split=args.real_split)
        return real, f"real anomalies {args.real} ({len(real)} images)"
    # each source once, not once per anomaly made from it
    seen: dict[str, int] = {}
    ids = rows.columns.get("source_id") or [str(i) for i in range(len(rows))]
    for i, sid in enumerate(ids):
        seen.setdefault(str(sid), i)
    return Subset(rows.originals, list(seen.values())), f"anomaly-free sources ({len(seen)} images)"


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
