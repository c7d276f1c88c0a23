"""The size search of ``sizing.fit`` run for a whole batch: every anomaly renders and is measured
together on the device; the same ``Steering`` policy and ``sizing.correct`` step as the numpy
path then correct each knob on the CPU (so every device takes the numpy path's steps for the
same measured areas).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ..sizing import Correction, Steering, correct


@dataclass(frozen=True)
class Rendered:
    """One anomaly's final window: every change lies in ``[oy:oy+h, ox:ox+w]``.

    ``output`` float32 ``(h, w, C)`` quantised values; ``changed`` bool ``(h, w)``; ``knob``,
    ``attempt`` and ``steps`` where the size search stopped; ``info`` what the renderer reported
    for that render (e.g. the patch box), for the record.
    """

    oy: int
    ox: int
    output: torch.Tensor
    changed: torch.Tensor
    knob: float
    attempt: int
    steps: int
    info: dict[str, Any]


@dataclass(frozen=True)
class Renders:
    """What a batch renderer returns for the anomalies ``idx`` of one step (``n = len(idx)``)."""

    area: np.ndarray  # (n,) changed pixels
    oy: np.ndarray  # (n,) window top
    ox: np.ndarray  # (n,) window left
    output: torch.Tensor | list  # n windows (h, w, C), quantised
    changed: torch.Tensor | list  # n bool windows (h, w)
    info: list[dict[str, Any]] | None = None


def _render_by_bucket(render: Callable[[np.ndarray, np.ndarray, np.ndarray], Renders], idx: np.ndarray,
                      knob: np.ndarray, attempt: np.ndarray, bucket: np.ndarray):
    """``(area, oy, ox, outputs, changed, infos)`` of the anomalies ``idx`` (sorted by bucket),
    one ``render`` call per bucket."""
    area = np.zeros(len(idx))
    oy, ox = np.zeros(len(idx), np.int64), np.zeros(len(idx), np.int64)
    outputs: list[Any] = [None] * len(idx)
    changed: list[Any] = [None] * len(idx)
    infos: list[dict[str, Any]] = [{} for _ in idx]
    for group in np.split(np.arange(len(idx)), np.flatnonzero(np.diff(bucket[idx])) + 1):
        r = render(idx[group], knob[idx[group]], attempt[idx[group]])
        area[group], oy[group], ox[group] = r.area, r.oy, r.ox
        for k, j in enumerate(group):
            outputs[j], changed[j] = r.output[k], r.changed[k]
            if r.info is not None:
                infos[j] = r.info[k]
    return area, oy, ox, outputs, changed, infos


def _corrections(idx: np.ndarray, area: np.ndarray, knob: np.ndarray, target: np.ndarray, lo: np.ndarray,
                 hi: np.ndarray, k_low: np.ndarray, k_high: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                 sized: np.ndarray, steering: Steering) -> Correction:
    """The next knob and bracket of the anomalies ``idx`` after measuring ``area``, as arrays."""
    # one anomaly at a time on Python floats: numpy's vectorised power is not bit-identical
    # to the scalar one, and the numpy path's steps must be reproduced exactly
    # (anomalies without a size bin keep their natural knob, which may lie outside the
    # bracket, e.g. DRAEM's -1 for "the thresholded noise": no step is taken for them)
    steps = [
        correct(float(knob[i]), float(a), float(target[i]), float(lo[i]), float(hi[i]), float(k_low[i]),
                float(k_high[i]), lower=float(lower[i]), upper=float(upper[i]), steering=steering)
        if sized[i] else Correction(float(knob[i]), float(k_low[i]), float(k_high[i]), False)
        for i, a in zip(idx, area)
    ]
    return Correction(
        np.array([c.knob for c in steps]), np.array([c.k_low for c in steps]),
        np.array([c.k_high for c in steps]), np.array([bool(c.stuck) for c in steps], bool),
    )


def steer_batch(
    render: Callable[[np.ndarray, np.ndarray, np.ndarray], Renders],
    *,
    target: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    start: Callable[[np.ndarray, np.ndarray], np.ndarray],
    lower: np.ndarray,
    upper: np.ndarray,
    steering: Steering,
    attempts: int,
    sized: np.ndarray | None = None,
    natural: np.ndarray | None = None,
    bucket: np.ndarray | None = None,
) -> list[Rendered | None]:
    """Bring every anomaly of a batch into its pixel range ``[lo, hi]`` around ``target``.

    ``render(idx, knob, attempt)`` renders the anomalies ``idx`` (numpy indices) at their knobs
    and placement attempts. ``start(idx, attempt)`` gives each attempt's first knob. Anomalies
    with ``sized[i]`` False (no size bin) render at ``natural[i]`` and only need a changed pixel.
    ``bucket`` groups anomalies of similar size into separate renders, so small ones do not pay
    for the window of the largest. Returns, per anomaly, the in-bin render closest to the target
    of the first attempt that had one, or ``None`` when no attempt did (``sizing.fit`` semantics).
    """
    b = len(target)
    sized = np.ones(b, bool) if sized is None else sized
    natural = np.ones(b) if natural is None else natural
    bucket = np.zeros(b, np.int64) if bucket is None else bucket
    attempt = np.zeros(b, np.int64)
    everyone = np.arange(b)
    knob = np.where(sized, np.minimum(np.maximum(start(everyone, attempt), lower), upper), natural)
    k_low, k_high = (np.array(v, np.float64) for v in steering.bracket(lower, upper))
    step = np.zeros(b, np.int64)
    first_in_bin = np.full(b, -1, np.int64)
    found_area = np.full(b, -1.0)
    found: list[Rendered | None] = [None] * b
    active = np.ones(b, bool)
    while active.any():
        idx = np.flatnonzero(active)
        idx = idx[np.argsort(bucket[idx], kind="stable")]
        area, oy, ox, outputs, changed, infos = _render_by_bucket(render, idx, knob, attempt, bucket)
        t, l, h = target[idx], lo[idx], hi[idx]
        s = sized[idx]
        ok = np.where(s, (l <= area) & (area <= h), area > 0)
        closer = np.abs(area - t) < np.abs(found_area[idx] - t)
        for j in np.flatnonzero(ok & ((found_area[idx] < 0) | (s & closer))):
            i = int(idx[j])
            found_area[i] = area[j]
            found[i] = Rendered(
                int(oy[j]), int(ox[j]), outputs[j].clone(), changed[j].clone(),
                float(knob[i]), int(attempt[i]), int(step[i] + 1), infos[j],
            )
        first = np.where(ok & (first_in_bin[idx] < 0), step[idx], first_in_bin[idx])
        first_in_bin[idx] = first
        if steering.refine_steps is None:
            spent = ok & (step[idx] >= steering.max_steps // 2)
        else:
            spent = ok & (step[idx] - first >= steering.refine_steps)
        accepted = np.where(s, steering.accept(area, t, l, h) | spent, ok)
        corr = _corrections(idx, area, knob, target, lo, hi, k_low, k_high, lower, upper, sized, steering)
        step[idx] += 1
        exhausted = np.where(s, corr.stuck | (step[idx] >= steering.max_steps), True) & ~accepted
        has_found = found_area[idx] >= 0
        done = accepted | (exhausted & has_found)
        retry = exhausted & ~has_found
        knob[idx] = np.where(s, corr.knob, knob[idx])
        k_low[idx], k_high[idx] = corr.k_low, corr.k_high
        retry_idx = idx[retry]
        attempt[retry_idx] += 1
        gave_up = retry_idx[attempt[retry_idx] >= attempts]
        retry_idx = retry_idx[attempt[retry_idx] < attempts]
        if len(retry_idx):
            fresh = np.minimum(np.maximum(start(retry_idx, attempt[retry_idx]), lower[retry_idx]), upper[retry_idx])
            knob[retry_idx] = np.where(sized[retry_idx], fresh, natural[retry_idx])
            k_low[retry_idx], k_high[retry_idx] = steering.bracket(lower[retry_idx], upper[retry_idx])
            step[retry_idx] = 0
            first_in_bin[retry_idx] = -1
        active[idx[done]] = False
        active[gave_up] = False
    return found
