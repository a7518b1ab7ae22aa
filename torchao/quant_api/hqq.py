"""HQQ (half-quadratic quantization, Badri & Shaji 2023) and a least-squares finish: calibration-free
scales and zero points that lower the weight's reconstruction error.

Per group of ``g`` input features, W ~ (q - z) * s with codes q = clamp(round(W / s + z)). Two steps
alternate, both closed-form fits of (s, z) for fixed codes followed by re-rounding:

* half-quadratic steps (the paper): fit (s, z) to W - E, where E = shrink_p(W - W_r, beta) is the
  generalized soft threshold of the current error (p < 1: robust to outliers), beta <- kappa * beta;
* least-squares steps (p = 2): fit (s, z) to W itself, i.e. W ~ s * q + b by linear regression, which
  can only lower the squared error (the fit is optimal for fixed codes, rounding is optimal for fixed
  (s, z)), and leaves each group's error with zero mean.

They run from round-to-nearest's min-max grid, from two clipped grids (90% and 80% of the range), and
from the half-quadratic result; per group the iterate with the lowest squared error is kept, round-to-
nearest's grids included, so no group ends worse than round-to-nearest. By default the zero point is a float (ZeroPointDomain.FLOAT, the form
of the int4 kernels): with 2^b levels a grid that must hold 0 exactly wastes part of a level, and the
reference ``hqq`` package (float zero point, zero-only half-quadratic steps) beats an integer zero point
in weight error at 4 bits. ``integer_zero=True`` keeps z an integer (the form of GPTQ-style checkpoints):
it is rounded after every fit and s re-fitted. Measured in ``benchmarks/hqq_vs_reference.py`` and
``benchmarks/eval_quality.py`` (RESULTS.md).
"""

from __future__ import annotations

from typing import Tuple

import torch

from torchao.qtensor.primitives import round_to_grid
from torchao.quant_api.weight_format import IntFormat

__all__ = ["hqq_quantize", "choose_qparams_and_quantize_affine_hqq"]

CLIP_RATIOS = (1.0, 0.9, 0.8)  # starting grids: the full range (round-to-nearest's), then clipped
_TINY = torch.finfo(torch.float32).tiny


def _shrink(x: torch.Tensor, beta: float, p: float) -> torch.Tensor:
    """The l_p proximal operator (generalized soft threshold) of the paper, elementwise."""
    return torch.sign(x) * torch.relu(x.abs() - (1.0 / beta) * x.abs().clamp(min=1e-8).pow(p - 1))


class _BestPerGroup:
    """The lowest-squared-error (q, s, z) seen so far for each row of ``w`` (G, g)."""

    def __init__(self, w: torch.Tensor, q: torch.Tensor, s: torch.Tensor, z: torch.Tensor):
        self.w = w
        self.q, self.s, self.z = q, s, z
        self.err = self.error(q, s, z)

    def error(self, q, s, z) -> torch.Tensor:
        return (self.w - (q - z) * s).pow(2).sum(1, keepdim=True)

    def offer(self, q, s, z) -> None:
        err = self.error(q, s, z)
        better = err < self.err
        self.err = torch.where(better, err, self.err)
        self.q, self.s, self.z = (torch.where(better, new, old) for new, old in ((q, self.q), (s, self.s), (z, self.z)))


class _Grid:
    """Fits and rounding for one weight's groups ``w`` (G, g) float32 in ``fmt``."""

    def __init__(self, w: torch.Tensor, fmt: IntFormat, integer_zero: bool, fit_scale: bool):
        self.w, self.qmin, self.qmax = w, fmt.quant_min, fmt.quant_max
        self.integer_zero, self.fit_scale = integer_zero, fit_scale

    def codes(self, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The nearest codes (as floats): quantize_affine's rounding for integer zero points."""
        if self.integer_zero:
            return round_to_grid(self.w, s, z, self.qmin, self.qmax)
        return torch.clamp(torch.round(self.w / s + z), self.qmin, self.qmax)

    def min_max(self, ratio: float, integer_zero: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """(s, z) (G, 1) spanning ``ratio`` of each group's range about its middle; with an integer zero
        point the range is first widened to hold 0 (at ratio 1: round-to-nearest's grid)."""
        lo, hi = self.w.amin(1, keepdim=True), self.w.amax(1, keepdim=True)
        if integer_zero:
            lo, hi = lo.clamp(max=0), hi.clamp(min=0)
        mid, half = (hi + lo) / 2, (hi - lo) * ratio / 2
        s = (2 * half / (self.qmax - self.qmin)).clamp(min=_TINY)
        z = self.qmin - (mid - half) / s
        if integer_zero:
            z = torch.clamp(torch.round(z), self.qmin, self.qmax)
        return s, z

    def fit(self, target: torch.Tensor, q: torch.Tensor, s: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Least-squares (s, z) with target ~ (q - z) * s for fixed codes q (s kept where the codes of a
        group are all equal, or when scales are not fitted)."""
        if self.fit_scale:
            s = _scale_fit(q - q.mean(1, keepdim=True), target, s)
        z = (q - target / s).mean(1, keepdim=True)
        if self.integer_zero:
            z = torch.clamp(torch.round(z), self.qmin, self.qmax)
            if self.fit_scale:
                s = _scale_fit(q - z, target, s)
        return s, z


def _scale_fit(codes: torch.Tensor, target: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Least-squares s with target ~ codes * s per row; the old s where that is not positive."""
    spread = codes.pow(2).sum(1, keepdim=True)
    fitted = (codes * target).sum(1, keepdim=True) / spread.clamp(min=1e-12)
    return torch.where((spread > 0) & (fitted > 0), fitted, s)


def hqq_quantize(
    weight: torch.Tensor,
    fmt: IntFormat,
    group_size: int,
    iters: int = 20,
    p: float = 0.7,
    beta: float = 10.0,
    kappa: float = 1.01,
    optimize_scale: bool = True,
    integer_zero: bool = False,
    refine_iters: int = 10,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """HQQ + least squares on ``weight`` (N, K), groups of ``group_size`` along K, asymmetric ``fmt``.

    ``iters`` half-quadratic steps (``p``, ``beta``, ``kappa`` as in the paper), then up to
    ``refine_iters`` least-squares steps from each start. ``optimize_scale=False``: the scale stays
    round-to-nearest's and only the zero point moves (the paper's setting, the clipped starts skipped).

    Returns (q (N, K) int32 in [quant_min, quant_max], scale (N, K // g) float32 > 0, zero (N, K // g)
    float32; integers in [quant_min, quant_max] when ``integer_zero``) with W ~ (q - zero) * scale; per
    group the squared error is at most round-to-nearest's (with an integer zero point, and with a float
    one unless ``integer_zero``).
    """
    if fmt.sym:
        raise ValueError("HQQ optimizes a zero point: use an asymmetric format")
    n, k = weight.shape
    w = weight.detach().to(torch.float32).reshape(n * k // group_size, group_size)
    grid = _Grid(w, fmt, integer_zero, optimize_scale)
    starts = [grid.min_max(ratio, integer_zero) for ratio in (CLIP_RATIOS if optimize_scale else CLIP_RATIOS[:1])]
    s, z = starts[0]
    q = grid.codes(s, z)
    best = _BestPerGroup(w, q, s, z)
    if not integer_zero:  # an integer zero point is a float one too: never worse than either rounding
        rtn_s, rtn_z = grid.min_max(1.0, True)
        best.offer(grid.codes(rtn_s, rtn_z), rtn_s, rtn_z)
    for _ in range(iters):
        s, z = grid.fit(w - _shrink(w - (q - z) * s, beta, p), q, s)
        q = grid.codes(s, z)
        best.offer(q, s, z)
        beta *= kappa
    for s, z in starts + [(best.s, best.z)]:
        q = grid.codes(s, z)
        for _ in range(refine_iters):
            s, z = grid.fit(w, q, s)
            q, previous = grid.codes(s, z), q
            best.offer(q, s, z)
            if torch.equal(q, previous):
                break
    groups = k // group_size
    return best.q.reshape(n, k).to(torch.int32), best.s.reshape(n, groups), best.z.reshape(n, groups)


def choose_qparams_and_quantize_affine_hqq(tensor: torch.Tensor, nbits: int = 4, group_size: int = 64,
                                           optimize: bool = True, axis: int = 1,
                                           compute_dtype: torch.dtype = torch.float16, device=None,
                                           verbose: bool = False, raw_output: bool = False):
    """The seed era's HQQ primitive: (W_q uint8 (N, K), scale, zero (N, K // group_size) in
    ``compute_dtype``, shape) with W ~ (W_q - zero) * scale (a float zero point); ``optimize=False`` is
    round-to-nearest. Groups run along the input dimension (``axis=1``, the only
    one supported); ``verbose`` and ``raw_output`` are accepted for the old signature."""
    del verbose, raw_output
    if axis != 1:
        raise ValueError(f"choose_qparams_and_quantize_affine_hqq: only axis=1 (groups along in_features), got {axis}")
    weight = tensor if device is None else tensor.to(device)
    fmt = IntFormat.for_bits(nbits)
    steps = dict(iters=20, refine_iters=10) if optimize else dict(iters=0, refine_iters=0)
    q, scale, zero = hqq_quantize(weight, fmt, group_size, optimize_scale=optimize, **steps)
    return q.to(torch.uint8), scale.to(compute_dtype), zero.to(compute_dtype), tuple(tensor.shape)
