"""Dual TV-L1 optical flow in torch, batched over frame pairs, on the CPU or a CUDA device.

The algorithm is the one OpenCV's ``cv2.optflow.DualTVL1OpticalFlow`` implements: Zach, Pock and Bischof's
duality-based TV-L1 ("A duality based approach for realtime TV-L1 optical flow", DAGM 2007) with the refinements of
Wedel et al. ("An improved algorithm for TV-L1 optical flow", 2009) as described by Sanchez, Meinhardt-Llopis and
Facciolo ("TV-L1 optical flow estimation", IPOL 2013), whose code OpenCV's is based on. Per pyramid level, coarsest
first:

* ``warps`` times: warp ``I1`` and its centred gradient by the current flow (bicubic), linearise the data term
  around it (``rho = I1w + grad I1w . (u - u0) - I0``);
* up to ``outer_iterations`` times: a ``median_filtering`` x ``median_filtering`` median filter on the flow; then
  up to ``inner_iterations`` times: the thresholding step for ``v`` (lambda * theta), the primal update
  ``u = v + theta * div p`` and the dual update ``p = (p + tau/theta grad u) / (1 + tau/theta |grad u|)``;
* both loops stop once the squared change of ``u`` summed over the level falls to ``epsilon^2 x pixels``;
* the flow is upsampled (bilinear) to the next finer level and multiplied by ``1 / scale_step``.

What is matched to OpenCV so that the two agree to a small fraction of a pixel (``tests/extractors/test_tvl1_torch``,
``benchmarks/flow.py``): the pyramid sizes (rounded, and the pyramid stops before a level under 16 pixels), its
bilinear resampling with OpenCV's pixel-centre mapping and clamped borders (``torch.nn.functional.interpolate``
floors the sizes and would differ), bicubic warping with a = -0.75 and zero outside the image at coordinates
quantised to 1/32 pixel as ``cv2.remap`` does, the finite differences at the image borders, replicated borders of
the median filter, and the stopping rule per pair. What is not: OpenCV accumulates the stopping sum in single
precision pixel after pixel, torch sums pairwise, so a pair can stop one iteration apart.

Each pair in a batch runs its own iterations: a pair that has met the stopping rule is frozen while the others go
on, so a batch gives every pair the flow it gets alone (up to float rounding of batched kernels).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# cv2.remap quantises coordinates to 1/INTER_TAB_SIZE pixel (INTER_BITS = 5) before interpolating
_REMAP_SUBPIXELS = 32
# the pyramid ends before a level narrower or lower than this (OpenCV's rule)
_MIN_LEVEL_SIZE = 16
# the median filter's [B, H, W, k*k] window copy is made for at most this many pixels at a time
_MEDIAN_CHUNK_PIXELS = 1 << 22


def tvl1_flow(i0: torch.Tensor, i1: torch.Tensor, *, tau: float = 0.25, lambda_: float = 0.15, theta: float = 0.3,
              nscales: int = 5, warps: int = 5, epsilon: float = 0.01, inner_iterations: int = 30,
              outer_iterations: int = 10, scale_step: float = 0.8, gamma: float = 0.0,
              median_filtering: int = 5) -> torch.Tensor:
    """Dual TV-L1 flow from ``i0`` to ``i1``.

    Args:
        i0, i1: ``[B, H, W]`` grayscale frames, uint8 or float in [0, 255], on any device; ``H, W >= 3``.
        The rest: OpenCV's parameters of the same names, with its defaults (``lambda_`` is ``lambda``).

    Returns:
        ``[B, H, W, 2]`` float32 flow ``(dx, dy)`` in pixels, on the frames' device.
    """
    if i0.shape != i1.shape or i0.dim() != 3:
        raise ValueError(f"tvl1_flow: frames must be two [B, H, W] tensors of one shape, got {tuple(i0.shape)} and "
                         f"{tuple(i1.shape)}")
    if min(i0.shape[1:]) < 3:
        raise ValueError(f"tvl1_flow: frames of {tuple(i0.shape[1:])} pixels are too small (3 x 3 at least)")
    if gamma != 0:
        raise NotImplementedError("tvl1_flow: gamma != 0 (the illumination term) is not implemented; the feature "
                                  "pipelines use OpenCV's default gamma = 0")
    if nscales < 1 or warps < 1 or not 0 < scale_step < 1:
        raise ValueError(f"tvl1_flow: needs nscales >= 1, warps >= 1 and 0 < scale_step < 1 (got {nscales}, "
                         f"{warps}, {scale_step})")
    pyramid0, pyramid1 = [i0.float()], [i1.float()]
    for size in pyramid_levels(*i0.shape[1:], nscales=nscales, scale_step=scale_step)[1:]:
        pyramid0.append(_resize_linear(pyramid0[-1], size, 1 / scale_step))
        pyramid1.append(_resize_linear(pyramid1[-1], size, 1 / scale_step))

    b, (h, w) = i0.shape[0], pyramid0[-1].shape[1:]
    u1 = i0.new_zeros((b, h, w), dtype=torch.float32)
    u2 = torch.zeros_like(u1)
    for level in range(len(pyramid0) - 1, -1, -1):
        u1, u2 = _one_level(pyramid0[level], pyramid1[level], u1, u2, lambda_ * theta, tau / theta, theta,
                            epsilon * epsilon * pyramid0[level][0].numel(), warps, outer_iterations,
                            inner_iterations, median_filtering)
        if level:
            size = pyramid0[level - 1].shape[1:]
            scale = (u1.shape[1] / size[0], u1.shape[2] / size[1])
            u1 = _resize_linear(u1, size, scale) * (1 / scale_step)
            u2 = _resize_linear(u2, size, scale) * (1 / scale_step)
    return torch.stack([u1, u2], dim=-1)


def _one_level(i0, i1, u1, u2, l_t: float, taut: float, theta: float, scaled_epsilon: float, warps: int,
               outer_iterations: int, inner_iterations: int, median_filtering: int):
    b, h, w = i0.shape
    i1x, i1y = _centred_gradient(i1)
    p11, p12, p21, p22 = (torch.zeros_like(u1) for _ in range(4))
    ys = torch.arange(h, dtype=torch.float32, device=i0.device).view(1, h, 1)
    xs = torch.arange(w, dtype=torch.float32, device=i0.device).view(1, 1, w)
    for _ in range(warps):
        i1w, i1wx, i1wy = _remap_cubic(torch.stack([i1, i1x, i1y], 1), xs + u1, ys + u2).unbind(1)
        grad = i1wx * i1wx + i1wy * i1wy
        rho_c = i1w - i1wx * u1 - i1wy * u2 - i0
        active = torch.ones(b, dtype=torch.bool, device=i0.device)  # error = +inf at the start of each warp
        for _ in range(outer_iterations):
            if not active.any():
                break
            if median_filtering > 1:
                u1 = _where(active, _median(u1, median_filtering), u1)
                u2 = _where(active, _median(u2, median_filtering), u2)
            for _ in range(inner_iterations):
                if not active.any():
                    break
                v1, v2 = _threshold(i1wx, i1wy, u1, u2, grad, rho_c, l_t)
                new_u1 = v1 + theta * _divergence(p11, p12)
                new_u2 = v2 + theta * _divergence(p21, p22)
                error = ((new_u1 - u1).square() + (new_u2 - u2).square()).sum(dim=(1, 2))
                u1, u2 = _where(active, new_u1, u1), _where(active, new_u2, u2)
                u1x, u1y = _forward_gradient(u1)
                u2x, u2y = _forward_gradient(u2)
                ng1 = 1 + taut * torch.hypot(u1x, u1y)
                ng2 = 1 + taut * torch.hypot(u2x, u2y)
                p11, p12 = _where(active, (p11 + taut * u1x) / ng1, p11), _where(active, (p12 + taut * u1y) / ng1, p12)
                p21, p22 = _where(active, (p21 + taut * u2x) / ng2, p21), _where(active, (p22 + taut * u2y) / ng2, p22)
                active = active & (error > scaled_epsilon)
    return u1, u2


def _where(active: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """``new`` for the pairs still iterating, ``old`` for the converged ones (``active`` is ``[B]``)."""
    return torch.where(active.view(-1, 1, 1), new, old)


def _threshold(i1wx, i1wy, u1, u2, grad, rho_c, l_t: float):
    """The thresholding step TH: ``v = u + d`` with ``d`` from where ``rho(u)`` lies against ``l_t |grad I1w|^2``."""
    rho = rho_c + (i1wx * u1 + i1wy * u2)
    lt_grad = l_t * grad
    fi = torch.where(rho < -lt_grad, l_t,
                     torch.where(rho > lt_grad, -l_t,
                                 torch.where(grad > torch.finfo(torch.float32).eps, -rho / grad, 0.0)))
    return u1 + fi * i1wx, u2 + fi * i1wy


def _centred_gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences; at the borders half the one-sided difference (OpenCV's ``centeredGradient``)."""
    pad = F.pad(x[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    return (0.5 * (pad[:, 1:-1, 2:] - pad[:, 1:-1, :-2]), 0.5 * (pad[:, 2:, 1:-1] - pad[:, :-2, 1:-1]))


def _forward_gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences, zero in the last column (``dx``) and the last row (``dy``)."""
    return F.pad(x[:, :, 1:] - x[:, :, :-1], (0, 1)), F.pad(x[:, 1:] - x[:, :-1], (0, 0, 0, 1))


def _divergence(v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
    """Backward differences with the field taken as zero before the first row and column (the adjoint of
    :func:`_forward_gradient`, as OpenCV's ``divergence``)."""
    return (v1 - F.pad(v1[:, :, :-1], (1, 0))) + (v2 - F.pad(v2[:, :-1], (0, 0, 1, 0)))


def _median(x: torch.Tensor, k: int) -> torch.Tensor:
    """``k x k`` median with replicated borders (``cv2.medianBlur``), in chunks of rows to bound memory."""
    r = k // 2
    pad = F.pad(x[:, None], (r, r, r, r), mode="replicate")[:, 0]
    rows = max(1, _MEDIAN_CHUNK_PIXELS // (x.shape[0] * x.shape[2] * k * k))
    out = torch.empty_like(x)
    for y in range(0, x.shape[1], rows):
        part = pad[:, y:y + min(rows, x.shape[1] - y) + 2 * r].unfold(1, k, 1).unfold(2, k, 1)
        out[:, y:y + part.shape[1]] = part.reshape(*part.shape[:3], k * k).median(dim=-1).values
    return out


def _resize_linear(x: torch.Tensor, size: tuple[int, int], scale: float | tuple[float, float]) -> torch.Tensor:
    """``cv2.resize(..., INTER_LINEAR)`` of ``[B, H, W]`` to ``size``: source coordinate ``(d + 0.5) * scale - 0.5``
    (``scale`` = source / destination pixel, one or per axis), clamped to the image (replicated border)."""
    sy, sx = (scale, scale) if isinstance(scale, (int, float)) else scale
    for dim, n_out, s in ((1, size[0], sy), (2, size[1], sx)):
        n_in = x.shape[dim]
        src = (torch.arange(n_out, dtype=torch.float64, device=x.device) + 0.5) * s - 0.5
        i0 = torch.floor(src)
        frac = (src - i0).float()
        i0 = i0.long()
        frac = torch.where(i0 < 0, 0.0, frac)
        i0 = i0.clamp(min=0)
        frac = torch.where(i0 >= n_in - 1, 0.0, frac)
        i0 = i0.clamp(max=n_in - 1)
        i1 = (i0 + 1).clamp(max=n_in - 1)
        shape = [1, 1, 1]
        shape[dim] = n_out
        frac = frac.view(shape)
        x = x.index_select(dim, i0) * (1 - frac) + x.index_select(dim, i1) * frac
    return x


def _remap_cubic(images: torch.Tensor, map_x: torch.Tensor, map_y: torch.Tensor) -> torch.Tensor:
    """``cv2.remap(..., INTER_CUBIC, BORDER_CONSTANT 0)`` of ``[B, C, H, W]`` at pixel coordinates ``[B, H, W]``."""
    h, w = images.shape[2:]
    qx = torch.round(map_x * _REMAP_SUBPIXELS) / _REMAP_SUBPIXELS
    qy = torch.round(map_y * _REMAP_SUBPIXELS) / _REMAP_SUBPIXELS
    grid = torch.stack([qx * (2 / (w - 1)) - 1, qy * (2 / (h - 1)) - 1], dim=-1)
    return F.grid_sample(images, grid, mode="bicubic", padding_mode="zeros", align_corners=True)


def pyramid_levels(height: int, width: int, *, nscales: int, scale_step: float) -> list[tuple[int, int]]:
    """The level sizes :func:`tvl1_flow` (and OpenCV) use for a ``height x width`` frame, finest first."""
    sizes = [(height, width)]
    for _ in range(1, nscales):
        size = (round(sizes[-1][0] * scale_step), round(sizes[-1][1] * scale_step))
        if min(size) < _MIN_LEVEL_SIZE:
            break
        sizes.append(size)
    return sizes


def default_batch_pairs(height: int, width: int, device: torch.device, budget_bytes: int | None = None) -> int:
    """How many pairs of ``height x width`` to batch: about 40 float maps per pair must fit ``budget_bytes``
    (default: a quarter of the free CUDA memory, 1 GiB on the CPU)."""
    if budget_bytes is None:
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            budget_bytes = free // 4
        else:
            budget_bytes = 1 << 30
    return max(1, min(256, int(budget_bytes // (40 * 4 * height * width))))

