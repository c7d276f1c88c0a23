"""PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022).

Fit: pretrained CNN features of the anomaly-free images at strides 8 and 16, each locally aggregated
with 3x3 average pooling, the stride-16 map upsampled to stride 8 and concatenated -> one feature
vector per patch. A greedy k-center coreset (on a seeded random projection, as in the paper; chosen
part by part, ``partitioned_coreset``, so 476 images fit in seconds rather than minutes) keeps
``coreset_ratio`` of the patches as the memory bank.

Score: distance of every test patch to its nearest memory-bank patch (matrix products in blocks),
upsampled to the working size, Gaussian-smoothed (sigma 4 px); the image score is the map's maximum.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from detect.detectors.backbones import FeatureExtractor
from detect.detectors.detector import Detector, gaussian_blur
from detect.errors import DetectError, NotFittedError


def patch_features(extractor: FeatureExtractor, images: torch.Tensor) -> torch.Tensor:
    """Locally aware patch features ``(N, D, H/8, W/8)`` for float32 images ``(N, C, H, W)``."""
    f8, f16 = extractor(images)
    f8 = F.avg_pool2d(f8, 3, stride=1, padding=1)
    f16 = F.avg_pool2d(f16, 3, stride=1, padding=1)
    f16 = F.interpolate(f16, size=f8.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([f8, f16], dim=1)


def greedy_coreset(
    features: torch.Tensor, size: int, *, projection_dim: int = 128, seed: int = 0, chunk: int = 16384,
    progress: bool = False, with_radius: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, float]:
    """Indices ``(size,)`` of the exact greedy k-center coreset of ``features`` ``(M, D)``; with
    ``with_radius``, also its coverage radius: the largest distance (in the projected space) from a
    point to its nearest chosen centre.

    Distances are measured after a seeded Gaussian random projection to ``projection_dim``
    dimensions (Johnson-Lindenstrauss), which keeps the selection fast for wide backbones. The
    first centre is drawn with ``seed``; each next centre is the point farthest from all chosen.
    Cost: ``size`` passes over all M points (PatchCore's own selection; see ``partitioned_coreset``
    for the fast one).
    """
    reduced, gen = _projected(features, projection_dim, seed)
    first = int(torch.randint(reduced.shape[0], (1,), generator=gen))
    selected, radius = _greedy(reduced, size, first, chunk=chunk, progress=progress)
    return (selected, radius) if with_radius else selected


def partitioned_coreset(
    features: torch.Tensor, size: int, *, part: int = 4096, projection_dim: int = 128, seed: int = 0,
    progress: bool = False, with_radius: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, float]:
    """Indices ``(size,)`` (sorted) of a greedy coreset chosen part by part; with ``with_radius``,
    also a bound on its coverage radius: the largest radius of a part (every point is at most that
    far from a centre of its own part, so at least that close to the whole coreset).

    The M points (in their given order, i.e. patches of a few consecutive images) are cut into
    ``ceil(M / part)`` parts of equal length; each part keeps its share of ``size`` by the same
    greedy k-center selection as ``greedy_coreset``, on the same random projection. Each greedy step
    then scans ``part`` points that stay in the CPU cache instead of all M, so the cost falls by
    about ``M / part`` (476 images at 224 x 224: 24 min -> seconds), at a cost: centres chosen within
    parts cover the whole set less evenly (a larger coverage radius), which can lower localisation;
    ``benchmarks/patchcore_coreset.py`` measures both selections. With ``M <= part`` this is
    exactly ``greedy_coreset``. Deterministic for a given ``seed`` whatever the thread count.
    """
    m = features.shape[0]
    size = max(1, min(int(size), m))
    reduced, gen = _projected(features, projection_dim, seed)
    n_parts = max(1, -(-m // max(int(part), 1)))
    if n_parts == 1:
        first = int(torch.randint(m, (1,), generator=gen))
        selected, radius = _greedy(reduced, size, first, progress=progress)
        return (selected, radius) if with_radius else selected
    bounds = [round(i * m / n_parts) for i in range(n_parts + 1)]
    # each part's share of the centres, largest remainders first, so the total is exactly ``size``
    exact = [size * (bounds[i + 1] - bounds[i]) / m for i in range(n_parts)]
    shares = [int(e) for e in exact]
    for i in sorted(range(n_parts), key=lambda i: exact[i] - shares[i], reverse=True)[: size - sum(shares)]:
        shares[i] += 1
    # first centres drawn up front, in part order: the selection does not depend on the threads
    firsts = [int(torch.randint(bounds[i + 1] - bounds[i], (1,), generator=gen)) for i in range(n_parts)]
    threads = torch.get_num_threads()

    def select(i: int) -> tuple[torch.Tensor, float]:
        lo, hi = bounds[i], bounds[i + 1]
        selected, radius = _greedy(reduced[lo:hi].contiguous(), shares[i], firsts[i])
        return lo + selected, radius

    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    # one greedy step is a small matrix-vector product: synchronising several threads inside it
    # costs more than the arithmetic (measured 3.5 ms vs 0.2 ms per step on 2 busy cores), so each
    # part runs single-threaded and the parts run side by side
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            chosen = list(tqdm(pool.map(select, [i for i in range(n_parts) if shares[i]]),
                               total=sum(1 for v in shares if v), desc="patchcore: coreset", unit="part",
                               disable=not progress, leave=False, mininterval=0.5))
    finally:
        torch.set_num_threads(threads)
    selected = torch.cat([c for c, _ in chosen])
    return (selected, max(r for _, r in chosen)) if with_radius else selected


def _projected(features: torch.Tensor, projection_dim: int, seed: int) -> tuple[torch.Tensor, torch.Generator]:
    """``features`` after the seeded random projection (or as they are), and the generator after it."""
    d = features.shape[1]
    gen = torch.Generator(device="cpu").manual_seed(seed)
    if projection_dim and projection_dim < d:
        proj = torch.randn(d, projection_dim, generator=gen) / projection_dim**0.5
        return features @ proj.to(features.device, features.dtype), gen
    return features, gen


def _greedy(reduced: torch.Tensor, size: int, first: int, chunk: int = 16384,
            progress: bool = False) -> tuple[torch.Tensor, float]:
    """Greedy k-center selection of ``size`` rows of ``reduced`` ``(M, d)``, starting at row ``first``,
    and its coverage radius (largest distance from a row to its nearest selected row)."""
    from tqdm.auto import tqdm

    m = reduced.shape[0]
    size = max(1, min(int(size), m))
    selected = torch.empty(size, dtype=torch.long)
    selected[0] = first
    # squared distances through |x|^2 - 2 x.c + |c|^2: one matrix-vector product per new centre
    sq = (reduced * reduced).sum(dim=1)
    min_dist = torch.full((m,), float("inf"), device=reduced.device, dtype=reduced.dtype)
    last = first
    # the pass after the last centre is chosen gives the coverage radius
    for i in tqdm(range(1, size + 1), desc="patchcore: coreset", unit="centre", disable=not progress,
                  leave=False, mininterval=0.5):
        for s in range(0, m, chunk):
            part = sq[s : s + chunk] - 2.0 * (reduced[s : s + chunk] @ reduced[last]) + sq[last]
            min_dist[s : s + chunk] = torch.minimum(min_dist[s : s + chunk], part)
        if i == size:
            break
        last = int(torch.argmax(min_dist))
        selected[i] = last
    return selected, float(min_dist.max().clamp_min(0.0).sqrt())


def nearest_distance(queries: torch.Tensor, bank: torch.Tensor, bank_sq: torch.Tensor | None = None,
                     max_elements: int = 1 << 22) -> torch.Tensor:
    """Euclidean distance ``(Q,)`` from each query ``(Q, D)`` to its nearest row of ``bank`` ``(M, D)``.

    The nearest row is found with one matrix product per block (``|b|^2 - 2 q.b``, no square roots
    over the whole block); the distance to it is then computed directly, so it is as exact as
    ``torch.cdist``. Blocks hold at most ``max_elements`` distances (16 MiB), whatever Q and M are.
    ``bank_sq``: the bank's squared row norms, when the caller keeps them.
    """
    if bank_sq is None:
        bank_sq = (bank * bank).sum(dim=1)
    q_chunk = max(1, min(queries.shape[0], max_elements // max(bank.shape[0], 1)))
    b_chunk = max(1, min(bank.shape[0], max_elements // q_chunk))
    nearest = torch.empty(queries.shape[0], dtype=torch.long, device=queries.device)
    for qs in range(0, queries.shape[0], q_chunk):
        q = queries[qs : qs + q_chunk]
        best = torch.full((q.shape[0],), float("inf"), device=q.device, dtype=q.dtype)
        for bs in range(0, bank.shape[0], b_chunk):
            scores = torch.addmm(bank_sq[bs : bs + b_chunk], q, bank[bs : bs + b_chunk].T, alpha=-2.0)
            value, index = scores.min(dim=1)
            better = value < best
            best = torch.where(better, value, best)
            nearest[qs : qs + q_chunk] = torch.where(better, index + bs, nearest[qs : qs + q_chunk])
    return (queries - bank[nearest]).norm(dim=1)


class PatchCore(Detector):
    """PatchCore with a seeded greedy coreset memory bank.

    ``backbone``       ``efficientnet_lite0`` (offline default), ``resnet18``, ``wide_resnet50_2``, ...
    ``coreset_ratio``  share of fit patches kept in the memory bank (0 < r <= 1).
    ``max_coreset``    optional cap on the memory-bank size (keeps fitting time bounded).
    ``coreset_part``   patches per part of the coreset selection (``partitioned_coreset``); ``None``
                       selects over all patches at once (``greedy_coreset``, about 400x slower on
                       476 images at 224 x 224).
    ``sigma``          Gaussian smoothing of the map in working-size pixels.
    """

    name = "patchcore"

    def __init__(
        self,
        *,
        backbone: str = "efficientnet_lite0",
        coreset_ratio: float = 0.1,
        max_coreset: int | None = None,
        coreset_part: int | None = 4096,
        projection_dim: int = 128,
        sigma: float = 4.0,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        if not 0.0 < coreset_ratio <= 1.0:
            raise DetectError(f"coreset_ratio must be in (0, 1], got {coreset_ratio}")
        self.backbone = backbone
        self.coreset_ratio = float(coreset_ratio)
        self.max_coreset = max_coreset
        if coreset_part is not None and int(coreset_part) < 1:
            raise DetectError(f"coreset_part must be a positive number of patches or None, got {coreset_part}")
        self.coreset_part = None if coreset_part is None else int(coreset_part)
        self.projection_dim = int(projection_dim)
        self.sigma = float(sigma)
        self.extractor = FeatureExtractor(backbone).to(self.device)
        self.memory_bank: torch.Tensor | None = None
        self._bank_sq: torch.Tensor | None = None  # squared row norms of the bank, kept for scoring
        #: fit patches and coverage radius of the selection (NaN when every patch is kept or unknown)
        self._coreset_stats = torch.tensor([float("nan"), float("nan")], dtype=torch.float64)

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "backbone": self.backbone,
            "coreset_ratio": self.coreset_ratio,
            "max_coreset": self.max_coreset,
            "coreset_part": self.coreset_part,
            "projection_dim": self.projection_dim,
            "sigma": self.sigma,
        }

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        return patch_features(self.extractor, images)

    streams_fit = True

    def _fit(self, batches, progress: bool = False) -> None:
        with torch.no_grad():
            chunks = []
            for batch in batches:
                f = self._features(batch)
                chunks.append(f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]))
            patches = torch.cat(chunks)
            del chunks
            size = int(round(self.coreset_ratio * patches.shape[0]))
            if self.max_coreset is not None:
                size = min(size, int(self.max_coreset))
            radius = 0.0
            if size >= patches.shape[0]:
                self.memory_bank = patches
            elif self.coreset_part is None:
                idx, radius = greedy_coreset(patches, size, projection_dim=self.projection_dim, seed=self.seed,
                                             progress=progress, with_radius=True)
                self.memory_bank = patches[idx.to(patches.device)].contiguous()
            else:
                idx, radius = partitioned_coreset(patches, size, part=self.coreset_part,
                                                  projection_dim=self.projection_dim, seed=self.seed,
                                                  progress=progress, with_radius=True)
                self.memory_bank = patches[idx.to(patches.device)].contiguous()
            self._coreset_stats = torch.tensor([float(patches.shape[0]), radius], dtype=torch.float64)
            self._bank_sq = None

    def coreset_summary(self) -> dict[str, Any]:
        """Which coreset selection ran, on how many patches, and its coverage radius (in the projected
        space the selection measures; for the part-by-part selection an upper bound)."""
        if self.memory_bank is None:
            raise NotFittedError("PatchCore has no memory bank; fit it first")
        patches, radius = (float(v) for v in self._coreset_stats)
        bank = int(self.memory_bank.shape[0])
        if patches == patches and bank >= patches:
            selection = "all patches (no selection)"
        elif self.coreset_part is None:
            selection = "exact greedy k-center"
        else:
            selection = f"greedy k-center part by part ({self.coreset_part} patches per part; coreset_part=None for exact)"
        return {"selection": selection, "patches": None if patches != patches else int(patches), "bank": bank,
                "coverage_radius": None if radius != radius else radius,
                "radius_is_bound": self.coreset_part is not None and selection.startswith("greedy k-center part")}

    def _score_batch(self, images: torch.Tensor) -> torch.Tensor:
        if self.memory_bank is None:
            raise NotFittedError("PatchCore has no memory bank; fit it first")
        f = self._features(images)
        b, d, h, w = f.shape
        if self._bank_sq is None:
            self._bank_sq = (self.memory_bank * self.memory_bank).sum(dim=1)
        dist = nearest_distance(f.permute(0, 2, 3, 1).reshape(-1, d), self.memory_bank, self._bank_sq)
        maps = dist.view(b, 1, h, w)
        maps = F.interpolate(maps, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return gaussian_blur(maps, self.sigma)

    def _state(self) -> dict[str, torch.Tensor]:
        return {"memory_bank": self.memory_bank, "coreset_stats": self._coreset_stats}

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.memory_bank = state["memory_bank"].to(self.device)
        if "coreset_stats" in state:  # files written before it was kept: unknown
            self._coreset_stats = state["coreset_stats"].to(torch.float64)
        self._bank_sq = None

    def _move(self, device: torch.device) -> None:
        self.extractor.to(device)
        if self.memory_bank is not None:
            self.memory_bank = self.memory_bank.to(device)
            self._bank_sq = None
