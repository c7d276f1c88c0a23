"""PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022).

Fit: pretrained CNN features of the anomaly-free images at strides 8 and 16, each locally aggregated
with 3x3 average pooling, the stride-16 map upsampled to stride 8 and concatenated -> one feature
vector per patch. A greedy k-center coreset over all patches (on a seeded random projection, as in
the paper; ``greedy_coreset``, with lazy block updates: 5-8x faster than one pass over all patches
per centre) keeps ``coreset_ratio`` of the patches as the memory bank; the fit records its coverage
radius in the feature space (``coverage_radius``, shown by ``coreset_summary``; one nearest-neighbour
pass over the fit patches, about the selection's own cost; ``benchmarks/coreset.py``).

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
    features: torch.Tensor, size: int, *, projection_dim: int = 128, seed: int = 0, lazy: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """Indices ``(size,)`` of the greedy k-center coreset of ``features`` ``(M, D)``, over all M at once.

    Distances are measured after a seeded Gaussian random projection to ``projection_dim``
    dimensions (Johnson-Lindenstrauss), as PatchCore does. The first centre is drawn with ``seed``;
    each next centre is the point farthest from all chosen. Greedy k-center is a 2-approximation of
    the smallest possible coverage radius in that space.

    ``lazy`` (default) brings a block of points up to date only when its stale largest distance could
    still be the farthest (distances to the chosen centres only shrink, so a stale value bounds the
    true one from above), and then with all centres chosen since in one matrix product: the centres
    of ``lazy=False``, the textbook pass over all M points per centre, at a fraction of the cost
    (``benchmarks/coreset.py``), up to float32 rounding (the two sum distances in another order, so
    near-equal candidates can swap; identical in float64).
    """
    reduced, gen = _projected(features, projection_dim, seed)
    first = int(torch.randint(reduced.shape[0], (1,), generator=gen))
    greedy = _greedy if lazy else _greedy_full
    return _single_threaded(lambda: greedy(reduced, size, first, progress=progress))


def partitioned_coreset(
    features: torch.Tensor, size: int, *, part: int = 4096, projection_dim: int = 128, seed: int = 0,
    progress: bool = False,
) -> torch.Tensor:
    """Indices ``(size,)`` (sorted) of a greedy coreset chosen part by part.

    The M points (in their given order, i.e. patches of a few consecutive images) are cut into
    ``ceil(M / part)`` parts of equal length; each part keeps its share of ``size`` by the same
    greedy k-center selection as ``greedy_coreset``, on the same random projection, blind to the
    other parts. Centres chosen within parts cover the whole set less evenly than one selection
    over all points (a larger coverage radius; ``benchmarks/coreset.py`` measures the cost in
    radius and AUROC). With ``M <= part`` this is exactly ``greedy_coreset``. Deterministic for a
    given ``seed`` whatever the thread count.
    """
    m = features.shape[0]
    size = max(1, min(int(size), m))
    reduced, gen = _projected(features, projection_dim, seed)
    n_parts = max(1, -(-m // max(int(part), 1)))
    if n_parts == 1:
        first = int(torch.randint(m, (1,), generator=gen))
        return _single_threaded(lambda: _greedy(reduced, size, first, progress=progress))
    bounds = [round(i * m / n_parts) for i in range(n_parts + 1)]
    # each part's share of the centres, largest remainders first, so the total is exactly ``size``
    exact = [size * (bounds[i + 1] - bounds[i]) / m for i in range(n_parts)]
    shares = [int(e) for e in exact]
    for i in sorted(range(n_parts), key=lambda i: exact[i] - shares[i], reverse=True)[: size - sum(shares)]:
        shares[i] += 1
    # first centres drawn up front, in part order: the selection does not depend on the threads
    firsts = [int(torch.randint(bounds[i + 1] - bounds[i], (1,), generator=gen)) for i in range(n_parts)]
    threads = torch.get_num_threads()

    def select(i: int) -> torch.Tensor:
        lo, hi = bounds[i], bounds[i + 1]
        return lo + _greedy(reduced[lo:hi].contiguous(), shares[i], firsts[i])

    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    # parts run side by side, each on one thread (see ``_single_threaded``)
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            chosen = list(tqdm(pool.map(select, [i for i in range(n_parts) if shares[i]]),
                               total=sum(1 for v in shares if v), desc="patchcore: coreset", unit="part",
                               disable=not progress, leave=False, mininterval=0.5))
    finally:
        torch.set_num_threads(threads)
    return torch.cat(chosen)


def coverage_radius(features: torch.Tensor, index: torch.Tensor) -> float:
    """The coverage radius of the rows ``index`` of ``features`` ``(M, D)``, in that space (not the
    projection the selection measured in): the largest distance from a row to its nearest kept row."""
    bank = features[index]
    return float(nearest_distance(features, bank).max())


def _projected(features: torch.Tensor, projection_dim: int, seed: int) -> tuple[torch.Tensor, torch.Generator]:
    """``features`` after the seeded random projection (or as they are), and the generator after it."""
    d = features.shape[1]
    gen = torch.Generator(device="cpu").manual_seed(seed)
    if projection_dim and projection_dim < d:
        proj = torch.randn(d, projection_dim, generator=gen) / projection_dim**0.5
        return features @ proj.to(features.device, features.dtype), gen
    return features, gen


def _single_threaded(select):
    """Run ``select()`` with one torch thread: a greedy step is a few small products and reductions,
    and synchronising threads inside one costs more than its arithmetic (``benchmarks/coreset.py``
    measures 1 thread against all)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return select()
    finally:
        torch.set_num_threads(threads)


#: rows per block of the lazy greedy selection (128-dimensional float32: 1 MiB, cache-sized)
LAZY_BLOCK = 2048


def _greedy(reduced: torch.Tensor, size: int, first: int, progress: bool = False,
            block: int = LAZY_BLOCK) -> torch.Tensor:
    """Greedy k-center selection of ``size`` rows of ``reduced`` ``(M, d)``, starting at row ``first``.

    The rows are cut into blocks; each block keeps the number of centres applied to it and its
    largest squared distance to them, which only shrinks as centres are added, so it is an upper
    bound once stale. The next centre: bring the block with the largest bound up to date (one
    matrix product with all centres chosen since); when it still has the largest bound, its
    farthest row is the farthest of all (ties: the lowest block, then the lowest row, as
    ``torch.argmax`` over all rows would choose), else repeat with the new largest bound.
    """
    import heapq

    from tqdm.auto import tqdm

    m = reduced.shape[0]
    size = max(1, min(int(size), m))
    sq = (reduced * reduced).sum(dim=1)
    min_dist = torch.full((m,), float("inf"), device=reduced.device, dtype=reduced.dtype)
    centres = torch.empty(size, reduced.shape[1], device=reduced.device, dtype=reduced.dtype)
    centres_sq = torch.empty(size, device=reduced.device, dtype=reduced.dtype)
    selected = torch.empty(size, dtype=torch.long)
    starts = list(range(0, m, block))
    applied = [0] * len(starts)
    farthest = [0] * len(starts)
    heap = [(-float("inf"), b) for b in range(len(starts))]  # (-bound, block): the largest bound first
    nxt = first
    for j in tqdm(range(size), desc="patchcore: coreset", unit="centre", disable=not progress,
                  leave=False, mininterval=0.5):
        selected[j], centres[j], centres_sq[j] = nxt, reduced[nxt], sq[nxt]
        if j + 1 == size:
            break
        while applied[heap[0][1]] < j + 1:  # the largest bound is stale: bring its block up to date
            b = heap[0][1]
            lo = starts[b]
            rows = reduced[lo : lo + block]
            # squared distances |x|^2 - 2 x.c + |c|^2 to the centres chosen since the last update
            new = torch.addmm(centres_sq[applied[b] : j + 1], rows, centres[applied[b] : j + 1].T, alpha=-2.0)
            torch.minimum(min_dist[lo : lo + block], (new + sq[lo : lo + block, None]).amin(dim=1),
                          out=min_dist[lo : lo + block])
            applied[b] = j + 1
            value, where = min_dist[lo : lo + block].max(dim=0)
            farthest[b] = lo + int(where)
            heapq.heapreplace(heap, (-float(value), b))
        nxt = farthest[heap[0][1]]
    return selected


def _greedy_full(reduced: torch.Tensor, size: int, first: int, chunk: int = 16384,
                 progress: bool = False) -> torch.Tensor:
    """The textbook greedy k-center loop: one pass over all M rows per centre (``_greedy`` without
    its lazy updates; kept to check and time it against)."""
    from tqdm.auto import tqdm

    m = reduced.shape[0]
    size = max(1, min(int(size), m))
    selected = torch.empty(size, dtype=torch.long)
    sq = (reduced * reduced).sum(dim=1)
    min_dist = torch.full((m,), float("inf"), device=reduced.device, dtype=reduced.dtype)
    nxt = first
    for j in tqdm(range(size), desc="patchcore: coreset", unit="centre", disable=not progress,
                  leave=False, mininterval=0.5):
        selected[j] = nxt
        for s in range(0, m, chunk):
            part = sq[s : s + chunk] - 2.0 * (reduced[s : s + chunk] @ reduced[nxt]) + sq[nxt]
            min_dist[s : s + chunk] = torch.minimum(min_dist[s : s + chunk], part)
        nxt = int(torch.argmax(min_dist))
    return selected


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
    ``coreset_part``   ``None`` (default): greedy k-center over all patches at once
                       (``greedy_coreset``, PatchCore's selection); a number of patches: chosen part by
                       part (``partitioned_coreset``; a larger coverage radius, see ``benchmarks/coreset.py``).
    ``sigma``          Gaussian smoothing of the map in working-size pixels.
    """

    name = "patchcore"

    def __init__(
        self,
        *,
        backbone: str = "efficientnet_lite0",
        coreset_ratio: float = 0.1,
        max_coreset: int | None = None,
        coreset_part: int | None = None,
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
            if size >= patches.shape[0]:
                self.memory_bank = patches
                radius = 0.0
            else:
                if self.coreset_part is None:
                    coreset = greedy_coreset(patches, size, projection_dim=self.projection_dim, seed=self.seed,
                                             progress=progress)
                else:
                    coreset = partitioned_coreset(patches, size, part=self.coreset_part,
                                                  projection_dim=self.projection_dim, seed=self.seed,
                                                  progress=progress)
                self.memory_bank = patches[coreset.to(patches.device)].contiguous()
                radius = coverage_radius(patches, coreset.to(patches.device))
            self._coreset_stats = torch.tensor([float(patches.shape[0]), radius], dtype=torch.float64)
            self._bank_sq = None

    def coreset_summary(self) -> dict[str, Any]:
        """Which coreset selection ran, on how many patches, and its coverage radius: the largest
        distance from a fit patch to its nearest memory-bank patch, in the feature space scored in."""
        if self.memory_bank is None:
            raise NotFittedError("PatchCore has no memory bank; fit it first")
        patches, radius = (float(v) for v in self._coreset_stats)
        bank = int(self.memory_bank.shape[0])
        if patches == patches and bank >= patches:
            selection = "all patches (no selection)"
        elif self.coreset_part is None:
            selection = f"greedy k-center over all patches (random projection to {self.projection_dim} dims)"
        else:
            selection = (f"greedy k-center part by part ({self.coreset_part} patches per part; "
                         "coreset_part=None selects over all patches)")
        return {"selection": selection, "patches": None if patches != patches else int(patches), "bank": bank,
                "coverage_radius": None if radius != radius else radius}

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
