"""OpenCV's ``seamlessClone`` of a rectangular patch as a torch Poisson solve, on any device.

``seamless_clone(destination, patch, mixed)`` solves what ``cv2.seamlessClone`` solves for a
mask that is a full rectangle (NSA's patches) inside a larger mask image, following
``modules/photo/src/seamless_cloning*.cpp`` (OpenCV 4.x/5.x) step by step:

* the region of interest (ROI) is the mask's bounding rectangle; its 1-pixel frame is the
  Dirichlet boundary, taken from the destination;
* the mask inside the ROI is eroded three times by a 3x3 kernel; OpenCV erodes the ROI as a view
  of the whole mask, so the zeros around the ROI eat 3 pixels from every side;
* forward-difference gradients of destination and patch; the guidance field is the
  destination's gradient outside the eroded mask and, inside it, the patch's (normal clone) or,
  per channel and pixel, the patch's when ``|gx - gy|`` of the patch exceeds the destination's,
  else the destination's (mixed clone: OpenCV's criterion, not the gradient's magnitude);
* its divergence (backward differences) minus the Laplacian of the frame is the right-hand side
  of the 5-point Poisson equation on the interior, solved exactly by a 2-D DST-I (through FFTs of
  the odd extension, as OpenCV does) divided by the eigenvalues ``2 cos(pi i/(w-1)) +
  2 cos(pi j/(h-1)) - 4``;
* the solution is clamped to [0, 255] and *truncated* to an integer (OpenCV's cast, not a
  rounding); the frame keeps the destination's values.

Arithmetic is float32 as in OpenCV; the FFTs differ from OpenCV's in rounding only (below 1e-3
of a level from the exact solution at patch sizes up to 100 pixels), so a value within that of
an integer (flat regions solve to exact integers) may truncate to either neighbour, by the CPU's
summation order: at most one level apart, and only there (tests/test_batched.py asserts it
against ``poisson_solution`` in float64).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

#: OpenCV erodes the clone mask 3 times with a 3x3 kernel before mixing the gradients
_ERODED = 3


def _dst1(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Unnormalised DST-I along ``dim``: ``y_k = sum_n x_n sin(pi (n+1)(k+1) / (N+1))``.

    Computed as OpenCV's ``Cloning::dst``: the FFT of the odd extension ``[0, x, 0, -x reversed]``
    of length ``2N + 2``, whose imaginary part is ``-2 y``."""
    x = x.movedim(dim, -1)
    n = x.shape[-1]
    zero = torch.zeros(x.shape[:-1] + (1,), dtype=x.dtype, device=x.device)
    odd = torch.cat([zero, x, zero, -x.flip(-1)], dim=-1)
    y = torch.fft.rfft(odd, dim=-1).imag[..., 1 : n + 1] * -0.5
    return y.movedim(-1, dim)


@lru_cache(maxsize=512)
def _eigenvalues(h: int, w: int, device: torch.device) -> torch.Tensor:
    """float32 ``(h-2, w-2)``: the 5-point Laplacian's eigenvalues for a ``h x w`` ROI, in
    OpenCV's arithmetic (``2.0f * (float)cos(double)``, summed in float32). Cached per size and
    device (a size search renders the same boxes often); never written."""
    fx = (2.0 * torch.cos(torch.arange(1, w - 1, dtype=torch.float64) * (math.pi / (w - 1)))).float()
    fy = (2.0 * torch.cos(torch.arange(1, h - 1, dtype=torch.float64) * (math.pi / (h - 1)))).float()
    return (fx[None, :] + fy[:, None] - 4.0).to(device)


def _forward_x(a: torch.Tensor) -> torch.Tensor:
    """``a[..., x+1] - a[..., x]`` with OpenCV's reflected border in the last column."""
    return torch.cat([a[..., 1:] - a[..., :-1], a[..., -2:-1] - a[..., -1:]], dim=-1)


def _forward_y(a: torch.Tensor) -> torch.Tensor:
    return _forward_x(a.transpose(-1, -2)).transpose(-1, -2)


def seamless_clone(destination: torch.Tensor, patch: torch.Tensor, mixed: bool) -> torch.Tensor:
    """``cv2.seamlessClone`` restricted to the ROI of a full-rectangle mask.

    ``destination``, ``patch``: float32 ``(C, h, w)`` holding 8-bit values (integers in
    [0, 255]) of the ROI, ``h, w >= 3``; ``mixed``: ``MIXED_CLONE`` instead of ``NORMAL_CLONE``.
    Returns float32 ``(C, h, w)`` integers in [0, 255]: the frame is ``destination``'s, the
    interior the truncated Poisson solution. Channels are solved together (one FFT batch) but
    independently; the result of one call depends only on its inputs.
    """
    out = destination.clone()
    out[:, 1:-1, 1:-1] = torch.floor(poisson_solution(destination, patch, mixed).clamp(0.0, 255.0))
    return out


def poisson_solution(destination: torch.Tensor, patch: torch.Tensor, mixed: bool) -> torch.Tensor:
    """The Poisson solution on the ROI's interior ``(C, h-2, w-2)`` before clamping and
    truncation, in the inputs' precision (float32 as OpenCV; float64 gives the exact solution
    of the same system to ~1e-12)."""
    _, h, w = destination.shape
    inside = torch.zeros((h, w), dtype=destination.dtype, device=destination.device)
    inside[_ERODED : h - _ERODED, _ERODED : w - _ERODED] = 1.0
    outside = 1.0 - inside
    dgx, dgy = _forward_x(destination), _forward_y(destination)
    pgx, pgy = _forward_x(patch), _forward_y(patch)
    if mixed:
        take = (pgx - pgy).abs() > (dgx - dgy).abs()
        pgx, pgy = torch.where(take, pgx, dgx), torch.where(take, pgy, dgy)
    gx = dgx * outside + pgx * inside
    gy = dgy * outside + pgy * inside
    # divergence on the interior: backward differences of the guidance field
    div = (gx[:, 1:-1, 1:-1] - gx[:, 1:-1, :-2]) + (gy[:, 1:-1, 1:-1] - gy[:, :-2, 1:-1])
    # minus the Laplacian of the frame alone (interior zero): the frame neighbours of each pixel
    frame = torch.zeros_like(destination)
    frame[:, 0], frame[:, -1], frame[:, :, 0], frame[:, :, -1] = (
        destination[:, 0], destination[:, -1], destination[:, :, 0], destination[:, :, -1]
    )
    rhs = div - (frame[:, :-2, 1:-1] + frame[:, 2:, 1:-1] + frame[:, 1:-1, :-2] + frame[:, 1:-1, 2:])
    spectrum = _dst1(_dst1(rhs, -1), -2) / _eigenvalues(h, w, destination.device).to(destination.dtype)
    return _dst1(_dst1(spectrum, -1), -2) * (4.0 / ((w - 1) * (h - 1)))
