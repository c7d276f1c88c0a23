"""PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022).

Fit: pretrained CNN features of the anomaly-free images at strides 8 and 16, each locally aggregated
with 3x3 average pooling, the stride-16 map upsampled to stride 8 and concatenated -> one feature
vector per patch. A greedy k-center coreset over all patches (on a seeded random projection, as in
the paper; ``greedy_coreset``, with lazy block updates: 5-8x faster than one pass over all patches
per centre) keeps ``coreset_ratio`` of the patches as the memory bank; the fit records its coverage
radius in the feature space (``coverage_radius``, shown by ``coreset_summary``): exact by default, with
nearest-neighbour passes only over the fit patches whose nearest centre in the selection's own
bookkeeping leaves them possibly the farthest (2,048 of 373,184 in ``benchmarks/coreset.py``);
``coverage="sample"`` gives a sample's lower bound, ``coverage="off"`` skips it.

Score: distance of every test patch to its nearest memory-bank patch (matrix products in blocks),
upsampled to the working size, Gaussian-smoothed (sigma 4 px); the image score is the map's maximum.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

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
    if lazy:
        return coreset_with_cover(features, size, projection_dim=projection_dim, seed=seed, progress=progress)[0]
    reduced, gen = _projected(features, projection_dim, seed)
    first = int(torch.randint(reduced.shape[0], (1,), generator=gen))
    return _single_threaded(lambda: _greedy_full(reduced, size, first, progress=progress))


def partitioned_coreset(
    features: torch.Tensor, size: int, *, part: int = 4096, projection_dim: int = 128, seed: int = 0,
    progress: bool = False,
) -> torch.Tensor:
    """Indices ``(size,)`` of a greedy coreset chosen part by part.

    The M points (in their given order, i.e. patches of a few consecutive images) are cut into
    ``ceil(M / part)`` parts of equal length; each part keeps its share of ``size`` by the same
    greedy k-center selection as ``greedy_coreset``, on the same random projection, blind to the
    other parts. Centres chosen within parts cover the whole set less evenly than one selection
    over all points (a larger coverage radius; ``benchmarks/coreset.py`` measures the cost in
    radius and AUROC). With ``M <= part`` this is exactly ``greedy_coreset``. Deterministic for a
    given ``seed`` whatever the thread count.
    """
    return coreset_with_cover(features, size, part=part, projection_dim=projection_dim, seed=seed,
                              progress=progress)[0]


def coreset_with_cover(
    features: torch.Tensor, size: int, *, part: int | None = None, projection_dim: int = 128, seed: int = 0,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The coreset of ``greedy_coreset`` (``part=None``) or ``partitioned_coreset`` (``part`` patches
    per part), and its cover: for every row of ``features``, the index of a kept row near it (the
    centre nearest to it in the projection among those the selection measured it against). The
    distance to that row bounds the row's distance to its nearest kept row from above
    (``coverage_radius``)."""
    m = features.shape[0]
    size = max(1, min(int(size), m))
    reduced, gen = _projected(features, projection_dim, seed)
    n_parts = 1 if part is None else max(1, -(-m // max(int(part), 1)))
    if n_parts == 1:
        first = int(torch.randint(m, (1,), generator=gen))
        selected, near = _single_threaded(lambda: _greedy(reduced, size, first, progress=progress))
        return selected, selected[near]
    bounds = [round(i * m / n_parts) for i in range(n_parts + 1)]
    # each part's share of the centres, largest remainders first, so the total is exactly ``size``
    exact = [size * (bounds[i + 1] - bounds[i]) / m for i in range(n_parts)]
    shares = [int(e) for e in exact]
    for i in sorted(range(n_parts), key=lambda i: exact[i] - shares[i], reverse=True)[: size - sum(shares)]:
        shares[i] += 1
    # first centres drawn up front, in part order: the selection does not depend on the threads
    firsts = [int(torch.randint(bounds[i + 1] - bounds[i], (1,), generator=gen)) for i in range(n_parts)]
    threads = torch.get_num_threads()

    def select(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = bounds[i], bounds[i + 1]
        selected, near = _greedy(reduced[lo:hi].contiguous(), shares[i], firsts[i])
        return lo + selected, lo + selected[near]

    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    chosen = [i for i in range(n_parts) if shares[i]]
    # parts run side by side, each on one thread (see ``_single_threaded``)
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            parts = list(tqdm(pool.map(select, chosen), total=len(chosen), desc="patchcore: coreset", unit="part",
                              disable=not progress, leave=False, mininterval=0.5))
    finally:
        torch.set_num_threads(threads)
    index = torch.cat([selected for selected, _ in parts])
    # a part without a centre of its own (fewer centres than parts) is covered by the first kept row
    cover = torch.full((m,), int(index[0]), dtype=torch.long)
    for i, (_, near) in zip(chosen, parts):
        cover[bounds[i] : bounds[i + 1]] = near
    return index, cover


#: rows ``coverage_radius`` measures at a time, in decreasing order of their cover's distance
COVERAGE_BLOCK = 2048

#: fit patches whose nearest distances ``coverage="sample"`` measures
COVERAGE_SAMPLE = 10_000


def coverage_radius(features: torch.Tensor, index: torch.Tensor, cover: torch.Tensor | None = None) -> float:
    """The coverage radius of the rows ``index`` of ``features`` ``(M, D)``, in that space (not the
    projection the selection measured in): the largest distance from a row to its nearest kept row.

    ``cover`` (from ``coreset_with_cover``): for every row the index of one kept row, whose distance
    bounds the row's nearest distance from above. Rows are then measured in decreasing order of that
    bound, ``COVERAGE_BLOCK`` at a time, until the next bound is no larger than the largest nearest
    distance found: no row left can exceed it, so the radius is the one of measuring every row, within
    the rounding bound of ``nearest_distance``. Without ``cover`` every row is measured.
    """
    return bounded_coverage_radius(features, index, cover)[0]


def bounded_coverage_radius(features: torch.Tensor, index: torch.Tensor, cover: torch.Tensor | None,
                            block: int = COVERAGE_BLOCK) -> tuple[float, int]:
    """``coverage_radius`` measuring ``block`` rows at a time, and how many rows it measured."""
    bank = features[index].contiguous()
    bank_sq = (bank * bank).sum(dim=1)
    m = features.shape[0]
    if cover is None:
        return float(nearest_distance(features, bank, bank_sq).max()), m
    bound = torch.cat([(features[s : s + block] - features[cover[s : s + block]]).norm(dim=1)
                       for s in range(0, m, block)])
    order = torch.argsort(bound, descending=True)
    radius, start = float("-inf"), 0
    while start < m and float(bound[order[start]]) > radius:
        rows = order[start : start + block]
        radius = max(radius, float(nearest_distance(features[rows], bank, bank_sq).max()))
        start += rows.shape[0]
    return radius, start


def sample_rows(m: int, n: int, seed: int) -> torch.Tensor:
    """Sorted indices of a seeded uniform sample of ``n`` of ``m`` rows, without replacement."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randperm(m, generator=gen)[:n].sort().values


def sampled_coverage_radius(features: torch.Tensor, index: torch.Tensor, n: int, seed: int) -> float:
    """The largest distance from a row of the seeded ``sample_rows`` to its nearest kept row: a lower
    bound of ``coverage_radius`` (the farthest row may not be in the sample)."""
    rows = sample_rows(features.shape[0], n, seed).to(features.device)
    return float(nearest_distance(features[rows], features[index]).max())


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
            block: int = LAZY_BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy k-center selection of ``size`` rows of ``reduced`` ``(M, d)``, starting at row ``first``:
    the selected rows, and for every row the position among them of its nearest centre so far.

    The rows are cut into blocks; each block keeps the number of centres applied to it and its
    largest squared distance to them, which only shrinks as centres are added, so it is an upper
    bound once stale. The next centre: bring the block with the largest bound up to date (one
    matrix product with all centres chosen since); when it still has the largest bound, its
    farthest row is the farthest of all (ties: the lowest block, then the lowest row, as
    ``torch.argmax`` over all rows would choose), else repeat with the new largest bound. A row's
    nearest centre is among those applied to its block (a stale block's rows may be nearer to a
    later one).
    """
    import heapq

    from tqdm.auto import tqdm

    m = reduced.shape[0]
    size = max(1, min(int(size), m))
    sq = (reduced * reduced).sum(dim=1)
    min_dist = torch.full((m,), float("inf"), device=reduced.device, dtype=reduced.dtype)
    near = torch.zeros(m, dtype=torch.long, device=reduced.device)
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
            new += sq[lo : lo + block, None]
            nearest = new.amin(dim=1)
            # only the rows a new centre came nearer to look for which one (amin is far cheaper than min's indices)
            closer = (nearest < min_dist[lo : lo + block]).nonzero()[:, 0]
            near[lo + closer] = new[closer].argmin(dim=1) + applied[b]
            torch.minimum(min_dist[lo : lo + block], nearest, out=min_dist[lo : lo + block])
            applied[b] = j + 1
            value, where = min_dist[lo : lo + block].max(dim=0)
            farthest[b] = lo + int(where)
            heapq.heapreplace(heap, (-float(value), b))
        nxt = farthest[heap[0][1]]
    return selected, near.cpu()


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

    Rounding, whatever the blocks and the order of summation (u: the dtype's unit roundoff,
    ``g(n) = n u / (1 - n u)``, Q and B the largest query and bank row norms; products in full
    float32, PyTorch's default): a product's ``|b|^2 - 2 q.b`` is within ``E = g(D + 2) (B^2 + 2 Q B)``
    of exact, so the row chosen is at most ``2 E`` farther in squared distance than the nearest, and
    the distance to it, computed directly, is within a factor ``1 +- g(D + 3)``. The largest of the
    distances, against the exact largest R, is in ``[(1 - g(D + 3)) R, (1 + g(D + 3)) sqrt(R^2 + 2 E)]``.
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


#: how the fit measures the coverage radius (``PatchCore``'s ``coverage``)
Coverage = Literal["exact", "sample", "off"]
COVERAGES: tuple[str, ...] = get_args(Coverage)


def _coverage_summary(patches: float, radius: float, measured: float) -> dict[str, Any]:
    """The coverage keys of ``coreset_summary`` from the fit's kept numbers (NaN: unknown)."""
    unknown = {"coverage": None, "coverage_radius": None, "coverage_radius_lower_bound": None,
               "coverage_sample": None}
    if measured != measured:
        return unknown
    if measured == 0:
        return {**unknown, "coverage": "off"}
    if measured >= patches:
        return {**unknown, "coverage": "exact", "coverage_radius": radius}
    return {**unknown, "coverage": "sample", "coverage_radius_lower_bound": radius, "coverage_sample": int(measured)}


class PatchCore(Detector):
    """PatchCore with a seeded greedy coreset memory bank.

    ``backbone``       ``efficientnet_lite0`` (offline default), ``resnet18``, ``wide_resnet50_2``, ...
    ``coreset_ratio``  share of fit patches kept in the memory bank (0 < r <= 1).
    ``max_coreset``    optional cap on the memory-bank size (keeps fitting time bounded).
    ``coreset_part``   ``None`` (default): greedy k-center over all patches at once
                       (``greedy_coreset``, PatchCore's selection); a number of patches: chosen part by
                       part (``partitioned_coreset``; a larger coverage radius, see ``benchmarks/coreset.py``).
    ``coverage``       how the fit measures the memory bank's coverage radius (``coreset_summary``):
                       ``"exact"`` (default; every fit patch accounted for, only those whose cover from
                       the selection could be the farthest measured: ``coverage_radius``), ``"sample"``
                       (``coverage_sample`` seeded fit patches: a lower bound, labelled as one) or ``"off"``.
    ``coverage_sample`` fit patches measured by ``coverage="sample"``.
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
        coverage: Coverage = "exact",
        coverage_sample: int = COVERAGE_SAMPLE,
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
        if coverage not in COVERAGES:
            raise DetectError(f"coverage must be one of {', '.join(COVERAGES)}, got {coverage!r}")
        if isinstance(coverage_sample, bool) or not isinstance(coverage_sample, int) or coverage_sample < 1:
            raise DetectError(f"coverage_sample must be a positive number of fit patches, got {coverage_sample!r}")
        self.coverage = coverage
        self.coverage_sample = coverage_sample
        self.projection_dim = int(projection_dim)
        self.sigma = float(sigma)
        self.extractor = FeatureExtractor(backbone).to(self.device)
        self.memory_bank: torch.Tensor | None = None
        self._bank_sq: torch.Tensor | None = None  # squared row norms of the bank, kept for scoring
        #: fit patches, the coverage radius (exact, or a sample's lower bound) and the fit patches it
        #: accounts for (all: exact; fewer: a sample; 0: not measured); NaN where unknown
        self._coreset_stats = torch.tensor([float("nan")] * 3, dtype=torch.float64)

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "backbone": self.backbone,
            "coreset_ratio": self.coreset_ratio,
            "max_coreset": self.max_coreset,
            "coreset_part": self.coreset_part,
            "coverage": self.coverage,
            "coverage_sample": self.coverage_sample,
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
            m = patches.shape[0]
            if size >= m:
                self.memory_bank = patches
                radius, measured = 0.0, m
            else:
                coreset, cover = coreset_with_cover(patches, size, part=self.coreset_part,
                                                    projection_dim=self.projection_dim, seed=self.seed,
                                                    progress=progress)
                coreset, cover = coreset.to(patches.device), cover.to(patches.device)
                self.memory_bank = patches[coreset].contiguous()
                radius, measured = self._measure_coverage(patches, coreset, cover)
            self._coreset_stats = torch.tensor([float(m), radius, float(measured)], dtype=torch.float64)
            self._bank_sq = None

    def _measure_coverage(self, patches: torch.Tensor, coreset: torch.Tensor,
                          cover: torch.Tensor) -> tuple[float, int]:
        """The coverage radius as ``coverage`` asks, and the fit patches it accounts for (0: none)."""
        if self.coverage == "off":
            return float("nan"), 0
        if self.coverage == "sample" and self.coverage_sample < patches.shape[0]:
            return sampled_coverage_radius(patches, coreset, self.coverage_sample, self.seed), self.coverage_sample
        return coverage_radius(patches, coreset, cover), patches.shape[0]

    def coreset_summary(self) -> dict[str, Any]:
        """Which coreset selection ran, on how many patches, and its coverage radius: the largest
        distance from a fit patch to its nearest memory-bank patch, in the feature space scored in.

        ``coverage`` says how it was measured: ``"exact"`` (``coverage_radius``), ``"sample"`` (then
        ``coverage_radius`` is None and ``coverage_radius_lower_bound`` holds the largest nearest
        distance of ``coverage_sample`` sampled fit patches), ``"off"`` or None (unknown)."""
        if self.memory_bank is None:
            raise NotFittedError("PatchCore has no memory bank; fit it first")
        patches, radius, measured = (float(v) for v in self._coreset_stats)
        bank = int(self.memory_bank.shape[0])
        if patches == patches and bank >= patches:
            selection = "all patches (no selection)"
        elif self.coreset_part is None:
            selection = f"greedy k-center over all patches (random projection to {self.projection_dim} dims)"
        else:
            selection = (f"greedy k-center part by part ({self.coreset_part} patches per part; "
                         "coreset_part=None selects over all patches)")
        return {"selection": selection, "patches": None if patches != patches else int(patches), "bank": bank,
                **_coverage_summary(patches, radius, measured)}

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
            stats = state["coreset_stats"].to(torch.float64)
            if stats.numel() == 2:  # files written before the coverage option: an exact radius when known
                stats = torch.cat([stats, stats[:1] if stats[1] == stats[1] else stats[1:]])
            self._coreset_stats = stats
        self._bank_sq = None

    def _move(self, device: torch.device) -> None:
        self.extractor.to(device)
        if self.memory_bank is not None:
            self.memory_bank = self.memory_bank.to(device)
            self._bank_sq = None
