"""SmoothQuant (Xiao et al., 2022): move activation outliers into the weights, then int8 x int8.

    swap_linear_with_smooth_fq_linear(model, alpha=0.5)   # Linear -> SmoothFakeDynQuantLinear, calibrating
    model.train(); [model(batch) for batch in data]         # records max |x| per input channel
    smooth_fq_linear_to_inference(model)                   # smooth, quantize: int8 dynamic x int8 weights

Per input channel j: s_j = max|X_j|^alpha / max|W_:,j|^(1 - alpha); the layer computes
(x / s) @ (W * s).T exactly in float, and quantizing x / s per token and W * s per output channel loses
much less than quantizing x and W when a few channels of x are large.
"""

from __future__ import annotations

from typing import Iterable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchao.quant_api.configs import int8_dynamic_activation_int8_weight

__all__ = ["SmoothFakeDynQuantLinear", "swap_linear_with_smooth_fq_linear", "smooth_fq_linear_to_inference",
           "get_scale", "set_smooth_fq_attribute"]


def get_scale(act_absmax: torch.Tensor, weight_absmax: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """Smoothing factors s (K,) from per-input-channel maxima of |X| and |W| (both (K,))."""
    act = act_absmax.to(torch.float32).clamp(min=1e-5)
    wt = weight_absmax.to(torch.float32).clamp(min=1e-5)
    return (act.pow(alpha) / wt.pow(1 - alpha)).clamp(min=1e-5)


class SmoothFakeDynQuantLinear(nn.Linear):
    """A Linear that, in training mode, records max |x| per input channel (output computed in float),
    and after ``to_inference()`` runs F.linear(x / s, int8 dynamic quantized W * s, bias)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, alpha: float = 0.5,
                 device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.alpha = alpha
        self.register_buffer("x_running_abs_max", torch.zeros(in_features, dtype=torch.float32, device=device))
        self.register_buffer("smooth_scale", None)
        self.calibrated = False

    @classmethod
    def from_float(cls, linear: nn.Linear, alpha: float = 0.5) -> "SmoothFakeDynQuantLinear":
        new = cls(linear.in_features, linear.out_features, linear.bias is not None, alpha,
                  device=linear.weight.device, dtype=linear.weight.dtype)
        new.weight = linear.weight
        new.bias = linear.bias
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.smooth_scale is None:
            if self.training:
                with torch.no_grad():
                    seen = x.detach().abs().reshape(-1, x.shape[-1]).amax(0).to(torch.float32)
                    torch.maximum(self.x_running_abs_max, seen, out=self.x_running_abs_max)
                    self.calibrated = True
            return F.linear(x, self.weight, self.bias)
        return F.linear(x / self.smooth_scale.to(x.dtype), self.weight, self.bias)

    @torch.no_grad()
    def to_inference(self, scale: Optional[torch.Tensor] = None) -> None:
        """Fold the smoothing factors (default: from the calibration, see get_scale) into the weight and
        quantize it (int8 per output channel; activations int8 per token at run time)."""
        if scale is None:
            if not self.calibrated:
                raise RuntimeError("SmoothFakeDynQuantLinear saw no calibration data: run the model in train() mode first")
            scale = get_scale(self.x_running_abs_max, self.weight.detach().abs().amax(0), self.alpha)
        smoothed = (self.weight.detach().to(torch.float32) * scale).to(self.weight.dtype)
        self.weight = nn.Parameter(int8_dynamic_activation_int8_weight()(smoothed), requires_grad=False)
        self.smooth_scale = scale.to(self.weight.dtype)


def swap_linear_with_smooth_fq_linear(model: nn.Module, skip_fqn_list: Optional[Iterable[str]] = None,
                                      alpha: float = 0.5) -> nn.Module:
    """Replace every nn.Linear (except ``skip_fqn_list``) with a calibrating SmoothFakeDynQuantLinear."""
    skip = set(skip_fqn_list or ())
    for fqn, module in list(model.named_modules()):
        if type(module) is nn.Linear and fqn not in skip:
            parent, _, child = fqn.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child,
                    SmoothFakeDynQuantLinear.from_float(module, alpha))
    if type(model) is nn.Linear and "" not in skip:
        raise ValueError("pass a model that contains the Linear layers, not a bare nn.Linear")
    return model


def smooth_fq_linear_to_inference(model: nn.Module, debug_skip_calibration: bool = False) -> nn.Module:
    """Smooth and quantize every SmoothFakeDynQuantLinear (in place) and put the model in eval mode.

    debug_skip_calibration: quantize layers that saw no data with s = 1 (no smoothing) instead of raising."""
    layers = [m for m in model.modules() if isinstance(m, SmoothFakeDynQuantLinear)]
    if not layers:
        raise ValueError("no SmoothFakeDynQuantLinear in the model: call swap_linear_with_smooth_fq_linear first")
    missing = [m for m in layers if not m.calibrated]
    if missing and not debug_skip_calibration:
        raise RuntimeError(f"{len(missing)} smooth linear layer(s) saw no calibration data; run the model in "
                           "train() mode on calibration batches first")
    for layer in layers:
        layer.to_inference(None if layer.calibrated else torch.ones(layer.in_features, device=layer.weight.device))
    return model.eval()


def set_smooth_fq_attribute(model: nn.Module, attribute_name: str, new_attribute_val) -> None:
    """Set ``attribute_name`` (e.g. "alpha") to ``new_attribute_val`` on every SmoothFakeDynQuantLinear of
    ``model``; raises naming the attribute when the layers do not have it."""
    for fqn, module in model.named_modules():
        if isinstance(module, SmoothFakeDynQuantLinear):
            if not hasattr(module, attribute_name):
                raise AttributeError(f"{fqn}: SmoothFakeDynQuantLinear has no attribute {attribute_name!r}")
            setattr(module, attribute_name, new_attribute_val)
