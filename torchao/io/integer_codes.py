"""Integer weights as the engine formats (GPTQ, AutoRound, compressed-tensors) hold them, and back.

Those formats store unsigned codes c in [0, 2^b) and integer zero points z (symmetric weights: z = 2^(b-1)),
the value being (c - z) * scale per group of G input features. ``integer_codes`` turns an
AffineQuantizedTensor into that form, refusing (UnsupportedExport, naming the layer) what the form cannot
hold without changing values: float zero points, float8, non-2-D or transposed weights, bit widths the
format lacks. ``weight_from_codes`` builds our tensor from it, in the kernel layout for the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn

from torchao.qtensor import AffineQuantizedTensor, ZeroPointDomain
from torchao.qtensor.primitives import FLOAT8_DTYPES
from torchao.quant_api.weight_format import IntFormat, quantized_weight

__all__ = ["UnsupportedExport", "IntegerScheme", "IntegerWeight", "integer_codes", "scheme_of_model",
           "weight_from_codes"]


class UnsupportedExport(ValueError):
    """A weight cannot be stored in the requested format without changing its values; nothing was written."""


@dataclass(frozen=True)
class IntegerScheme:
    """bits; group_size (-1: one group per row); sym; act_quant: the dynamic activation quantizer (None:
    weight-only)."""

    bits: int
    group_size: int
    sym: bool
    act_quant: Optional[str] = None


@dataclass
class IntegerWeight:
    """codes (N, K) and zeros (N, K/G) int32 in [0, 2^b); scale (N, K/G) float."""

    codes: torch.Tensor
    zeros: torch.Tensor
    scale: torch.Tensor
    scheme: IntegerScheme


def integer_codes(fqn: str, weight: AffineQuantizedTensor, fmt_name: str, bits: Sequence[int],
                  act_quants: Sequence[Optional[str]] = (None,)) -> IntegerWeight:
    """The codes of one weight (see the module docstring)."""
    spec = weight.spec
    where = f"{fqn}.weight {tuple(spec.shape)}"
    if spec.target_dtype in FLOAT8_DTYPES or spec.act_quant not in act_quants:
        kinds = "weight-only integer weights" if tuple(act_quants) == (None,) else \
            f"integer weights with activation quantization {list(act_quants)}"
        raise UnsupportedExport(f"{where}: the {fmt_name} format holds {kinds}; this one is {spec.target_dtype} with "
                                f"activation quantization {spec.act_quant!r}")
    if spec.zero_point_domain == ZeroPointDomain.FLOAT:
        raise UnsupportedExport(
            f"{where}: has a float zero point (ZeroPointDomain.FLOAT), which the {fmt_name} format cannot hold "
            "without re-rounding; quantize with Int4WeightOnlyConfig(zero_point_domain=ZeroPointDomain.INT) "
            "(or IntxWeightOnlyConfig, GPTQ, AutoRound)")
    if len(spec.shape) != 2 or spec.transposed or spec.group_size is None:
        raise UnsupportedExport(f"{where}: the {fmt_name} format holds 2-D weights quantized in groups along K")
    width = spec.bits
    sym = spec.zero_point_domain == ZeroPointDomain.NONE
    offset = 2 ** (width - 1) if sym else -spec.quant_min  # to unsigned codes (signed ranges move up)
    if width not in bits or spec.quant_min + offset < 0 or spec.quant_max + offset >= 2**width:
        raise UnsupportedExport(f"{where}: {width}-bit range [{spec.quant_min}, {spec.quant_max}] is not one of the "
                                f"{fmt_name} format's unsigned {list(bits)}-bit ranges")
    int_data, scale, zero_point = weight.get_plain()
    n, k = spec.shape
    groups = k // spec.group_size
    codes = int_data.to(torch.int32) + offset
    if sym:
        zeros = torch.full((n, groups), offset, dtype=torch.int32, device=codes.device)
    else:
        zeros = zero_point.reshape(n, groups).to(torch.int32) + offset
    group_size = -1 if spec.group_size == k else spec.group_size
    return IntegerWeight(codes, zeros, scale.reshape(n, groups), IntegerScheme(width, group_size, sym, spec.act_quant))


def quantized_linears(model: nn.Module) -> Dict[str, nn.Module]:
    return {fqn: m for fqn, m in model.named_modules() if isinstance(getattr(m, "weight", None), AffineQuantizedTensor)}


def scheme_of_model(model: nn.Module, fmt_name: str, bits: Sequence[int],
                    act_quants: Sequence[Optional[str]] = (None,)) -> IntegerScheme:
    """The one scheme every quantized Linear of ``model`` has (UnsupportedExport naming the layers that
    differ or cannot be stored)."""
    schemes: Dict[str, IntegerScheme] = {}
    for fqn, module in quantized_linears(model).items():
        if not isinstance(module, nn.Linear):
            raise UnsupportedExport(f"{fqn}: a quantized {type(module).__name__}; the {fmt_name} format holds "
                                    "quantized nn.Linear layers only (leave it in float)")
        schemes[fqn] = integer_codes(fqn, module.weight, fmt_name, bits, act_quants).scheme
    if not schemes:
        raise UnsupportedExport(f"the model has no quantized Linear layer to store in the {fmt_name} format")
    distinct = sorted(set(schemes.values()), key=repr)
    if len(distinct) > 1:
        examples = {s: next(f for f, t in schemes.items() if t == s) for s in distinct}
        raise UnsupportedExport(f"the {fmt_name} format has one bits / group_size / sym for the whole model; this "
                                f"one mixes {', '.join(f'{s} ({f})' for s, f in examples.items())}")
    return distinct[0]


def weight_from_codes(codes: torch.Tensor, zeros: Optional[torch.Tensor], scale: torch.Tensor, scheme: IntegerScheme,
                      dtype: torch.dtype, device: torch.device) -> AffineQuantizedTensor:
    """Our tensor for unsigned codes (N, K), zero points (N, K/G; None: symmetric, z = 2^(b-1)) and scales
    (N, K/G): asymmetric weights keep an integer zero point, symmetric ones become signed."""
    k = codes.shape[1]
    group = k if scheme.group_size == -1 else scheme.group_size
    fmt = IntFormat.for_bits(scheme.bits, sym=scheme.sym)
    shift = 2 ** (scheme.bits - 1) if scheme.sym else -fmt.quant_min  # back from unsigned codes
    zero_point = None if scheme.sym else (zeros - shift).to(torch.float32).to(device)
    return quantized_weight((codes - shift).to(fmt.storage_dtype).to(device), scale.to(dtype).contiguous().to(device),
                            zero_point, fmt, group, dtype, act_quant=scheme.act_quant)
