"""HQQ (half-quadratic quantization, Badri & Shaji 2023): calibration-free zero points (and scales).

Minimizes sum |W - dequant(quant(W))|^p (p < 1, robust to outliers) over the zero point by splitting
with an auxiliary error term E and alternating two closed-form steps per group:

    E <- shrink_p(W - W_r, beta)                       (generalized soft threshold)
    z <- mean(q - (W - E) / s)                          (zero point in "q space", a float)
    q <- clamp(round(W / s + z)), beta <- kappa * beta

keeping the best (lowest |W - W_r|^p) iterate. ``optimize_scale`` also rescales s by least squares
between the dequantized grid and W - E each step. The result uses a float zero point: W ~ (q - z) * s.
"""

from __future__ import annotations

from typing import Tuple

import torch

from torchao.quant_api.weight_format import IntFormat

__all__ = ["hqq_quantize"]


def _shrink(x: torch.Tensor, beta: float, p: float) -> torch.Tensor:
    return torch.sign(x) * torch.relu(x.abs() - (1.0 / beta) * x.abs().clamp(min=1e-8).pow(p - 1))


def hqq_quantize(
    weight: torch.Tensor,
    fmt: IntFormat,
    group_size: int,
    iters: int = 20,
    p: float = 0.7,
    beta: float = 10.0,
    kappa: float = 1.01,
    optimize_scale: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """HQQ on ``weight`` (N, K), groups of ``group_size`` along K, asymmetric ``fmt``.

    Returns (q (N, K) int32 in [quant_min, quant_max], scale (N, K // g) float32, zero (N, K // g) float32)
    with W ~ (q - zero) * scale; the min-max (round-to-nearest) start is never beaten by a worse result.
    """
    if fmt.sym:
        raise ValueError("HQQ optimizes a zero point: use an asymmetric format")
    n, k = weight.shape
    w = weight.detach().to(torch.float32).reshape(n * k // group_size, group_size)
    lo, hi = w.amin(1, keepdim=True), w.amax(1, keepdim=True)
    scale = ((hi - lo) / (fmt.quant_max - fmt.quant_min)).clamp(min=1e-8)
    zero = fmt.quant_min - lo / scale

    def quant(s, z):
        return torch.clamp(torch.round(w / s + z), fmt.quant_min, fmt.quant_max)

    def error(q, s, z):
        return (w - (q - z) * s).abs().pow(p).sum(1, keepdim=True)

    q = quant(scale, zero)
    best_err = error(q, scale, zero)
    best = (q, scale, zero)
    for _ in range(iters):
        w_r = (q - zero) * scale
        e = _shrink(w - w_r, beta, p)
        target = w - e
        if optimize_scale:
            centered = q - (q.mean(1, keepdim=True))
            scale = ((centered * (target - target.mean(1, keepdim=True))).sum(1, keepdim=True)
                     / centered.pow(2).sum(1, keepdim=True).clamp(min=1e-12)).clamp(min=1e-8)
        zero = (q - target / scale).mean(1, keepdim=True)
        q = quant(scale, zero)
        beta *= kappa
        err = error(q, scale, zero)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = tuple(torch.where(better, new, old) for new, old in zip((q, scale, zero), best))
    q, scale, zero = best
    groups = k // group_size
    return q.reshape(n, k).to(torch.int32), scale.reshape(n, groups), zero.reshape(n, groups)
